//! Bearer-token authentication. Tokens are JWTs signed with HS256 (a shared
//! secret) or RS256 (verified with a configured public key); `aud`, `iss`,
//! `exp` and `sub` are required and checked, only the configured algorithm is
//! accepted (so `alg: none` and algorithm swaps fail). A bad token is an
//! error, never an anonymous caller.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reservoir_domain::{Role, TenantId};
use reservoir_runtime::config::AuthConfig;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest `sub` claim accepted.
const SUBJECT_LEN_MAX: usize = 200;

/// Claims of a Reservoir token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The tenant id for tenant tokens; the operator's name for admin tokens.
    pub sub: String,
    pub role: String,
    pub aud: String,
    pub iss: String,
    pub exp: u64,
    pub iat: u64,
    /// Set on tokens issued from the tenant console: the id under which the
    /// contracts service keeps the token, so that it can be revoked. Tokens
    /// from the identity provider or `reservoir token` have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    /// The console-issued token's id, to be checked against revocations.
    pub token_id: Option<uuid::Uuid>,
    /// When the token expires, in Unix seconds.
    pub expires_at: u64,
}

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn from_config(auth: &AuthConfig) -> anyhow::Result<Self> {
        let (key, algorithm) = match &auth.rs256_public_key_pem_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                (DecodingKey::from_rsa_pem(&pem).context("RS256 public key")?, Algorithm::RS256)
            }
            None => (DecodingKey::from_secret(hs256_secret(auth)?.as_bytes()), Algorithm::HS256),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&auth.audience]);
        validation.set_issuer(&[&auth.issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 30;
        Ok(Self { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidAudience => "the token is not meant for this platform (audience)",
                ErrorKind::InvalidIssuer => "the token was issued by an unknown issuer",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::InvalidAlgorithm => "the token is signed with an algorithm this platform does not accept",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, aud, iss, sub)",
                _ => "the token is malformed",
            };
            ApiError::unauthorized(why)
        })?;
        let role: Role = data.claims.role.parse().map_err(|_| ApiError::unauthorized("the token's role is unknown"))?;
        let sub = &data.claims.sub;
        if sub.is_empty() || sub.len() > SUBJECT_LEN_MAX || sub.chars().any(char::is_control) {
            return Err(ApiError::unauthorized("the token's subject must be 1 to 200 printable characters"));
        }
        let token_id = match &data.claims.token_id {
            None => None,
            Some(id) => Some(
                uuid::Uuid::parse_str(id).map_err(|_| ApiError::unauthorized("the token's token_id is malformed"))?,
            ),
        };
        Ok(Caller { subject: data.claims.sub, role, token_id, expires_at: data.claims.exp })
    }
}

impl Caller {
    /// The tenant this caller acts as; only tenant tokens name one.
    pub fn tenant(&self) -> Result<TenantId, ApiError> {
        if self.role != Role::Tenant {
            return Err(ApiError::forbidden("this endpoint is for tenant tokens"));
        }
        self.subject.parse().map_err(|e| ApiError::unauthorized(format!("the token's subject: {e}")))
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin { Ok(()) } else { Err(ApiError::forbidden("this endpoint needs an admin token")) }
    }
}

/// Signs tokens with the key the gateway verifies with.
pub struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
    audience: String,
    issuer: String,
}

impl Signer {
    /// The signer `auth` configures; `None` when tokens are verified with an
    /// RS256 public key whose private half this platform does not hold.
    pub fn from_config(auth: &AuthConfig) -> anyhow::Result<Option<Self>> {
        let (key, algorithm) = match (&auth.rs256_public_key_pem_file, &auth.rs256_private_key_pem_file) {
            (Some(_), Some(private)) => {
                let pem = std::fs::read(private).with_context(|| format!("reading {}", private.display()))?;
                (EncodingKey::from_rsa_pem(&pem).context("RS256 private key")?, Algorithm::RS256)
            }
            (Some(_), None) => return Ok(None),
            (None, _) => (EncodingKey::from_secret(hs256_secret(auth)?.as_bytes()), Algorithm::HS256),
        };
        Ok(Some(Self { key, algorithm, audience: auth.audience.clone(), issuer: auth.issuer.clone() }))
    }

    /// A token for `subject` as `role`, valid until `expires_at` (Unix
    /// seconds), carrying `token_id` when the token is a managed one.
    pub fn sign(
        &self,
        subject: &str,
        role: Role,
        expires_at: u64,
        token_id: Option<uuid::Uuid>,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: subject.to_owned(),
            role: role.to_string(),
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
            iat: SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
            exp: expires_at,
            token_id: token_id.map(|id| id.to_string()),
        };
        Ok(jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)?)
    }
}

/// Signs tokens for local use (`reservoir token`), with the same keys the
/// gateway verifies with, valid for `auth.token_ttl_s`.
pub fn mint(auth: &AuthConfig, subject: &str, role: Role) -> anyhow::Result<String> {
    let signer = Signer::from_config(auth)?
        .ok_or_else(|| anyhow::anyhow!("RS256 is configured: set auth.rs256_private_key_pem_file to sign tokens"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    signer.sign(subject, role, now + auth.token_ttl_s, None)
}

/// The HS256 secret: configured, or read from the secret file, which is
/// created with 256 random bits on first use.
pub fn hs256_secret(auth: &AuthConfig) -> anyhow::Result<String> {
    if let Some(secret) = &auth.hs256_secret {
        anyhow::ensure!(secret.len() >= 32, "auth.hs256_secret must be at least 32 bytes");
        return Ok(secret.clone());
    }
    read_or_create_secret(&auth.hs256_secret_file)
}

/// The secret in `path`, created there (mode 0600) with 256 random bits when
/// the file does not exist yet.
pub fn read_or_create_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(secret) = std::fs::read_to_string(path) {
        let secret = secret.trim().to_owned();
        anyhow::ensure!(secret.len() >= 32, "{} holds fewer than 32 bytes", path.display());
        return Ok(secret);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    match write_private(path, &secret) {
        Ok(()) => Ok(secret),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let theirs = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Ok(theirs.trim().to_owned())
        }
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(content.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)
}
