-- Contracts service: tenants, models, the price catalog and reservations.
-- Only the contracts service reads or writes this schema.
CREATE SCHEMA IF NOT EXISTS contracts;

CREATE TABLE contracts.tenants (
    id          TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    currency    CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE contracts.models (
    id                     TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    capacity_tokens_per_s  INTEGER NOT NULL CHECK (capacity_tokens_per_s >= 0),
    headroom               NUMERIC(6, 5) NOT NULL DEFAULT 0.10 CHECK (headroom >= 0 AND headroom < 1),
    prompt_weight          NUMERIC(12, 6) NOT NULL DEFAULT 0.25 CHECK (prompt_weight >= 0),
    completion_weight      NUMERIC(12, 6) NOT NULL DEFAULT 1 CHECK (completion_weight >= 0),
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every catalog edit is a new immutable version. The document is the pricing
-- crate's `Catalog` as JSON, every decimal a string (exact, never a float).
CREATE TABLE contracts.catalog_versions (
    version     BIGINT PRIMARY KEY CHECK (version > 0),
    document    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  TEXT NOT NULL
);

CREATE TABLE contracts.reservations (
    id                   UUID PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES contracts.tenants (id),
    model_id             TEXT NOT NULL REFERENCES contracts.models (id),
    rate_tokens_per_s    INTEGER NOT NULL CHECK (rate_tokens_per_s > 0),
    tier                 TEXT NOT NULL CHECK (tier IN ('standard', 'premium', 'enterprise')),
    term                 TEXT NOT NULL CHECK (term IN ('hourly', 'month', 'half_year')),
    starts_at            TIMESTAMPTZ NOT NULL,
    ends_at              TIMESTAMPTZ CHECK (ends_at > starts_at),
    allow_burst          BOOLEAN NOT NULL DEFAULT TRUE,
    catalog_version      BIGINT NOT NULL REFERENCES contracts.catalog_versions (version),
    currency             CHAR(3) NOT NULL,
    price_per_hour       NUMERIC NOT NULL CHECK (price_per_hour >= 0),
    total_for_term       NUMERIC CHECK (total_for_term >= 0),
    quote                JSONB NOT NULL,
    idempotency_key      TEXT CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- sha256 of the request's fields: a reused key with other fields is refused.
    request_fingerprint  TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at         TIMESTAMPTZ,
    cancelled_by         TEXT,
    cancel_reason        TEXT,
    -- Committed terms end at ends_at; only hourly may be open-ended.
    CHECK (term = 'hourly' OR ends_at IS NOT NULL),
    CHECK ((cancelled_at IS NULL) = (cancelled_by IS NULL)),
    UNIQUE (tenant_id, idempotency_key)
);

-- The capacity check reads every live reservation of one model.
CREATE INDEX reservations_by_model ON contracts.reservations (model_id, starts_at)
    WHERE cancelled_at IS NULL OR cancelled_at > starts_at;
CREATE INDEX reservations_by_tenant ON contracts.reservations (tenant_id, created_at DESC);
