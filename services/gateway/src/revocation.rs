//! Whether a console-issued token (one with a `token_id`) may still be used.
//!
//! The contracts service is the authority; asking it on every request would
//! put a database read in front of each completion, so answers are kept a
//! few seconds. A revocation made through this gateway takes effect here at
//! once; one made through another gateway within `FRESH_FOR`. Revocation is
//! final, so a refused token is remembered for good. While the contracts
//! service cannot be reached, a token already known to be usable stays
//! usable and an unknown one gets 503: the same availability the rest of
//! authentication has.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reservoir_domain::TenantId;
use reservoir_proto::v1::ApiTokenRef;
use reservoir_proto::v1::contract_service_client::ContractServiceClient;
use reservoir_runtime::InternalChannel;
use tonic::Code;
use uuid::Uuid;

use crate::error::ApiError;

/// How long a "usable" answer is trusted.
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// How long asking the contracts service may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Past this many remembered tokens, the memory starts over (asking again
/// costs one call per token).
const REMEMBERED_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy)]
enum Known {
    Usable { checked: Instant },
    Refused,
}

/// A token as its claims name it: an id is good only for its own tenant.
type Key = (TenantId, Uuid);

#[derive(Default)]
pub struct Revocations {
    known: Mutex<HashMap<Key, Known>>,
}

impl Revocations {
    fn recall(&self, key: &Key) -> Option<Known> {
        self.known.lock().ok()?.get(key).copied()
    }

    fn remember(&self, key: Key, known: Known) {
        if let Ok(mut map) = self.known.lock() {
            if map.len() >= REMEMBERED_MAX {
                map.clear();
            }
            map.insert(key, known);
        }
    }

    /// Records that `tenant`'s token `id` was revoked through this gateway.
    pub fn revoked(&self, tenant: &TenantId, id: Uuid) {
        self.remember((tenant.clone(), id), Known::Refused);
    }

    /// Ok when `tenant`'s token `id` is neither revoked nor unknown.
    pub async fn check(
        &self,
        contracts: &ContractServiceClient<InternalChannel>,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<(), ApiError> {
        let refused = || ApiError::unauthorized("the token has been revoked");
        let key = (tenant.clone(), id);
        let stale = match self.recall(&key) {
            Some(Known::Refused) => return Err(refused()),
            Some(Known::Usable { checked }) if checked.elapsed() < FRESH_FOR => return Ok(()),
            Some(Known::Usable { .. }) => true,
            None => false,
        };
        let mut request = tonic::Request::new(ApiTokenRef { tenant_id: tenant.to_string(), id: id.to_string() });
        request.set_timeout(ASK_TIMEOUT);
        match contracts.clone().get_api_token(request).await {
            Ok(reply) if reply.get_ref().revoked_at.is_none() => {
                self.remember(key, Known::Usable { checked: Instant::now() });
                Ok(())
            }
            Ok(_) => {
                self.remember(key, Known::Refused);
                Err(refused())
            }
            Err(status) if status.code() == Code::NotFound => {
                self.remember(key, Known::Refused);
                Err(ApiError::unauthorized("the token is not one this platform issued"))
            }
            Err(status) if stale => {
                tracing::warn!(error = %status.message(), "token revocations unavailable; trusting the last answer");
                Ok(())
            }
            Err(status) => Err(status.into()),
        }
    }
}
