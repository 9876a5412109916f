-- Metering: one usage record per request. Only the scheduler's metering
-- service reads or writes this schema.
CREATE SCHEMA IF NOT EXISTS metering;

CREATE TABLE metering.usage_records (
    -- Unique: a retried write of the same request is skipped, never counted twice.
    request_id              TEXT PRIMARY KEY CHECK (length(request_id) BETWEEN 1 AND 128),
    tenant_id               TEXT NOT NULL,
    contract_id             UUID,
    model_id                TEXT NOT NULL,
    class                   TEXT NOT NULL CHECK (class IN ('reserved', 'burst', 'spot')),
    outcome                 TEXT NOT NULL CHECK (outcome IN ('ok', 'shed', 'client_cancelled', 'platform_error')),
    prompt_tokens           INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    cached_prompt_tokens    INTEGER NOT NULL CHECK (cached_prompt_tokens BETWEEN 0 AND prompt_tokens),
    completion_tokens       INTEGER NOT NULL CHECK (completion_tokens >= 0),
    weighted_tokens         NUMERIC NOT NULL CHECK (weighted_tokens >= 0),
    demand_weighted_tokens  NUMERIC NOT NULL CHECK (demand_weighted_tokens >= 0),
    queue_ms                INTEGER NOT NULL CHECK (queue_ms >= 0),
    ttft_ms                 INTEGER CHECK (ttft_ms >= 0),
    total_ms                INTEGER NOT NULL CHECK (total_ms >= 0),
    worker_id               TEXT NOT NULL,
    started_at              TIMESTAMPTZ NOT NULL,
    finished_at             TIMESTAMPTZ NOT NULL CHECK (finished_at >= started_at),
    recorded_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (class = 'spot' OR contract_id IS NOT NULL)
);

CREATE INDEX usage_by_tenant ON metering.usage_records (tenant_id, finished_at);
CREATE INDEX usage_by_contract ON metering.usage_records (contract_id, finished_at) WHERE contract_id IS NOT NULL;
