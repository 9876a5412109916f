-- API tokens a tenant issues from the console. The gateway signs each one
-- (a JWT whose `token_id` claim is this row's id); this table is what makes
-- it revocable: a token whose row is missing, revoked or past its expiry is
-- refused. The token itself is never stored, so it is shown only once.
CREATE TABLE contracts.api_tokens (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES contracts.tenants (id),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL CHECK (expires_at > created_at),
    revoked_at  TIMESTAMPTZ CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);

CREATE INDEX api_tokens_by_tenant ON contracts.api_tokens (tenant_id, created_at DESC);
