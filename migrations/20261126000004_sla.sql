-- SLA service: what every contract got per window, incidents, maintenance,
-- credits and webhooks. Only the SLA service reads or writes this schema;
-- it reads usage through the metering service, never its tables.
CREATE SCHEMA IF NOT EXISTS sla;

-- Scheduled maintenance of a model's pool: excluded from availability and
-- shown as maintenance on the status page.
CREATE TABLE sla.maintenance (
    id          UUID PRIMARY KEY,
    model_id    TEXT NOT NULL,
    starts_at   TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ NOT NULL CHECK (ends_at > starts_at),
    note        TEXT NOT NULL CHECK (length(note) BETWEEN 1 AND 2000),
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at TIMESTAMPTZ
);
CREATE INDEX maintenance_by_model ON sla.maintenance (model_id, starts_at) WHERE cancelled_at IS NULL;

-- One row per contract and window that had eligible traffic (a window
-- without a row had none, and is good). Recomputing a window writes the
-- same row: every column is a function of metering's figures and the
-- contract's terms.
CREATE TABLE sla.windows (
    contract_id                 UUID NOT NULL,
    window_start                TIMESTAMPTZ NOT NULL,
    window_s                    INTEGER NOT NULL CHECK (window_s > 0),
    tenant_id                   TEXT NOT NULL,
    model_id                    TEXT NOT NULL,
    tier                        TEXT NOT NULL CHECK (tier IN ('standard', 'premium', 'enterprise')),
    eligible_requests           BIGINT NOT NULL CHECK (eligible_requests >= 0),
    platform_errors             BIGINT NOT NULL CHECK (platform_errors >= 0),
    ttft_missed                 BIGINT NOT NULL CHECK (ttft_missed >= 0),
    ttft_ms_p50                 INTEGER,
    ttft_ms_p95                 INTEGER,
    decode_tokens_per_s_median  NUMERIC,
    demand_weighted_tokens      NUMERIC NOT NULL,
    delivered_weighted_tokens   NUMERIC NOT NULL,
    -- Why the window is bad; empty when it is good.
    reasons                     TEXT[] NOT NULL,
    -- Overlaps a scheduled maintenance: shown, not counted.
    in_maintenance              BOOLEAN NOT NULL,
    PRIMARY KEY (contract_id, window_start)
);
CREATE INDEX windows_by_tenant ON sla.windows (tenant_id, window_start);
CREATE INDEX windows_by_model ON sla.windows (model_id, window_start);

-- One row per model and ended window: the pool's state, for uptime, the
-- status page and pool incidents.
CREATE TABLE sla.pool_windows (
    model_id            TEXT NOT NULL,
    window_start        TIMESTAMPTZ NOT NULL,
    window_s            INTEGER NOT NULL CHECK (window_s > 0),
    contracts_measured  INTEGER NOT NULL CHECK (contracts_measured >= 0),
    contracts_bad       INTEGER NOT NULL CHECK (contracts_bad BETWEEN 0 AND contracts_measured),
    -- Fewest healthy workers seen while the window ran; NULL: not observed.
    workers_live        INTEGER CHECK (workers_live >= 0),
    state               TEXT NOT NULL CHECK (state IN ('operational', 'degraded', 'outage', 'maintenance')),
    reasons             TEXT[] NOT NULL,
    PRIMARY KEY (model_id, window_start)
);

-- Healthy workers per model sampled while a window runs (fewest kept).
CREATE TABLE sla.worker_samples (
    model_id      TEXT NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    workers_live  INTEGER NOT NULL CHECK (workers_live >= 0),
    PRIMARY KEY (model_id, window_start)
);

-- Where the job stands: windows before `measured_until` have been measured.
CREATE TABLE sla.job_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    measured_until    TIMESTAMPTZ NOT NULL,
    -- Records stored at or after this instant may not be measured yet.
    recorded_watermark TIMESTAMPTZ NOT NULL
);

-- An incident: consecutive bad windows of one contract, or of one model's
-- pool. At most one is open per contract and per pool.
CREATE TABLE sla.incidents (
    id            UUID PRIMARY KEY,
    scope         TEXT NOT NULL CHECK (scope IN ('contract', 'pool')),
    contract_id   UUID,
    tenant_id     TEXT,
    model_id      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    -- Start of the first bad window, start of the last one.
    started_at    TIMESTAMPTZ NOT NULL,
    last_bad_at   TIMESTAMPTZ NOT NULL CHECK (last_bad_at >= started_at),
    resolved_at   TIMESTAMPTZ,
    reasons       TEXT[] NOT NULL,
    postmortem    TEXT,
    CHECK ((scope = 'contract') = (contract_id IS NOT NULL AND tenant_id IS NOT NULL)),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE UNIQUE INDEX one_open_incident_per_contract ON sla.incidents (contract_id)
    WHERE scope = 'contract' AND status = 'open';
CREATE UNIQUE INDEX one_open_incident_per_pool ON sla.incidents (model_id)
    WHERE scope = 'pool' AND status = 'open';
CREATE INDEX incidents_by_tenant ON sla.incidents (tenant_id, started_at);
CREATE INDEX incidents_by_model ON sla.incidents (model_id, started_at);

-- An incident's timeline: what the job saw and what admins wrote.
CREATE TABLE sla.incident_updates (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  UUID NOT NULL REFERENCES sla.incidents (id),
    at           TIMESTAMPTZ NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('opened', 'updated', 'resolved', 'note')),
    message      TEXT NOT NULL CHECK (length(message) BETWEEN 1 AND 4000),
    author       TEXT NOT NULL
);
CREATE INDEX incident_updates_by_incident ON sla.incident_updates (incident_id, id);

-- One row per contract and closed period: what was decided, credit or not.
-- The primary key makes closing exactly once, however many closers race.
CREATE TABLE sla.period_results (
    contract_id          UUID NOT NULL,
    period               TEXT NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    tenant_id            TEXT NOT NULL,
    model_id             TEXT NOT NULL,
    tier                 TEXT NOT NULL,
    windows_in_term      BIGINT NOT NULL,
    maintenance_windows  BIGINT NOT NULL,
    bad_windows          BIGINT NOT NULL,
    availability         NUMERIC NOT NULL,
    target               NUMERIC NOT NULL,
    share                NUMERIC NOT NULL CHECK (share BETWEEN 0 AND 1),
    closed_at            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (contract_id, period)
);

-- A credit owed for a period whose availability fell below the target.
CREATE TABLE sla.credits (
    id            UUID PRIMARY KEY,
    contract_id   UUID NOT NULL,
    period        TEXT NOT NULL,
    tenant_id     TEXT NOT NULL,
    model_id      TEXT NOT NULL,
    tier          TEXT NOT NULL,
    availability  NUMERIC NOT NULL,
    target        NUMERIC NOT NULL,
    share         NUMERIC NOT NULL CHECK (share > 0 AND share <= 1),
    -- The exact reservation fee of the period the share applies to.
    fee           NUMERIC NOT NULL CHECK (fee >= 0),
    amount        NUMERIC NOT NULL CHECK (amount >= 0),
    currency      CHAR(3) NOT NULL,
    -- The bad windows: [{"window_start": .., "reasons": [..]}, ..].
    evidence      JSONB NOT NULL,
    issued_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (contract_id, period),
    FOREIGN KEY (contract_id, period) REFERENCES sla.period_results (contract_id, period)
);
CREATE INDEX credits_by_tenant ON sla.credits (tenant_id, period);

-- Periods closed for every contract.
CREATE TABLE sla.closed_periods (
    period     TEXT PRIMARY KEY,
    closed_at  TIMESTAMPTZ NOT NULL,
    closed_by  TEXT NOT NULL
);

-- Webhook endpoints: a tenant's (its contracts' events) or an admin's (pool events).
CREATE TABLE sla.webhook_endpoints (
    id           UUID PRIMARY KEY,
    tenant_id    TEXT,
    url          TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    secret       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at   TIMESTAMPTZ
);
CREATE INDEX webhook_endpoints_by_tenant ON sla.webhook_endpoints (tenant_id) WHERE deleted_at IS NULL;

-- Events, written in the transaction that made them happen (an outbox).
CREATE TABLE sla.events (
    id          UUID PRIMARY KEY,
    type        TEXT NOT NULL CHECK (type IN ('incident.opened', 'incident.updated', 'incident.resolved', 'credit.issued')),
    -- NULL: a pool event, for admin endpoints.
    tenant_id   TEXT,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- One delivery per event and endpoint, retried with backoff until it lands.
CREATE TABLE sla.deliveries (
    event_id         UUID NOT NULL REFERENCES sla.events (id),
    endpoint_id      UUID NOT NULL REFERENCES sla.webhook_endpoints (id),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    last_status      INTEGER,
    last_error       TEXT,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX deliveries_due ON sla.deliveries (next_attempt_at) WHERE delivered_at IS NULL;
