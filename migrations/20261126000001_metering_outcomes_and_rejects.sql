-- Metering as its own service: interrupted requests, the catalog version a
-- request was priced under, and records the database refused, kept aside.
ALTER TABLE metering.usage_records DROP CONSTRAINT usage_records_outcome_check;
ALTER TABLE metering.usage_records ADD CONSTRAINT usage_records_outcome_check
    CHECK (outcome IN ('ok', 'shed', 'client_cancelled', 'platform_error', 'interrupted'));

-- 0: unknown (records written before versions were recorded).
ALTER TABLE metering.usage_records ADD COLUMN catalog_version INTEGER NOT NULL DEFAULT 0
    CHECK (catalog_version >= 0);

-- The SLA reads windows by contract and start time.
CREATE INDEX usage_by_contract_start ON metering.usage_records (contract_id, started_at)
    WHERE class = 'reserved';

-- A record that could not be stored (invalid, or refused by a constraint)
-- is kept here with its reason, as it was sent, instead of blocking the
-- records behind it. Kept once per distinct record.
CREATE TABLE metering.rejected_records (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    record       BYTEA NOT NULL,
    fingerprint  TEXT GENERATED ALWAYS AS (md5(record)) STORED UNIQUE,
    rejected_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
