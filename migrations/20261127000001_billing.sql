-- Billing: invoices with their lines, credit notes, credit balances and the
-- yearly invoice number sequences. Only the billing service reads or
-- writes this schema. Amounts are NUMERIC, exact.
CREATE SCHEMA IF NOT EXISTS billing;

-- A period run: started, and finished once every tenant has its draft. A
-- run that crashed is finished by the next one (each tenant is its own
-- transaction, so a rerun picks up where it stopped).
CREATE TABLE billing.runs (
    period       TEXT PRIMARY KEY CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    started_at   TIMESTAMPTZ NOT NULL,
    started_by   TEXT NOT NULL,
    finished_at  TIMESTAMPTZ
);

CREATE TABLE billing.invoices (
    id                     UUID PRIMARY KEY,
    tenant_id              TEXT NOT NULL,
    period                 TEXT NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    currency               CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                 TEXT NOT NULL CHECK (status IN ('draft', 'finalized', 'void')),
    held                   BOOLEAN NOT NULL DEFAULT FALSE,
    held_reason            TEXT NOT NULL DEFAULT '',
    number_year            INTEGER,
    number_sequence        BIGINT CHECK (number_sequence > 0),
    number                 TEXT UNIQUE,
    subtotal               NUMERIC NOT NULL,
    total                  NUMERIC NOT NULL CHECK (total >= 0),
    credit_balance_before  NUMERIC NOT NULL CHECK (credit_balance_before >= 0),
    credit_balance_after   NUMERIC NOT NULL CHECK (credit_balance_after >= 0),
    computed_at            TIMESTAMPTZ NOT NULL,
    finalize_after         TIMESTAMPTZ NOT NULL,
    finalized_at           TIMESTAMPTZ,
    finalized_by           TEXT,
    voided_at              TIMESTAMPTZ,
    voided_by              TEXT,
    void_reason            TEXT NOT NULL DEFAULT '',
    -- A draft has no number; finalized and void invoices keep theirs.
    CHECK ((status = 'draft') = (number IS NULL)),
    CHECK ((number IS NULL) = (number_sequence IS NULL) AND (number IS NULL) = (number_year IS NULL)),
    CHECK ((status = 'void') = (voided_at IS NOT NULL)),
    UNIQUE (number_year, number_sequence)
);
-- One live invoice per tenant and month (a void one may be replaced).
CREATE UNIQUE INDEX invoices_one_live ON billing.invoices (tenant_id, period) WHERE status <> 'void';
CREATE INDEX invoices_by_period ON billing.invoices (period, id);
CREATE INDEX invoices_due ON billing.invoices (finalize_after) WHERE status = 'draft' AND NOT held;

CREATE TABLE billing.invoice_lines (
    invoice_id       UUID NOT NULL REFERENCES billing.invoices (id) ON DELETE CASCADE,
    line_no          INTEGER NOT NULL CHECK (line_no >= 0),
    kind             TEXT NOT NULL CHECK (kind IN ('reservation', 'burst', 'spot', 'late_usage', 'sla_credit',
                                                   'credit_applied', 'credit_carried')),
    description      TEXT NOT NULL,
    contract_id      UUID,
    model_id         TEXT,
    catalog_version  BIGINT,
    quantity         NUMERIC NOT NULL,
    unit             TEXT NOT NULL CHECK (unit IN ('second', 'million_weighted_tokens', 'money')),
    tiers            JSONB NOT NULL,
    usage_from       TIMESTAMPTZ NOT NULL,
    usage_to         TIMESTAMPTZ NOT NULL,
    -- The month whose usage a burst, spot or late usage line bills, and the
    -- class: what later runs count as already billed.
    usage_period     TEXT,
    usage_class      TEXT CHECK (usage_class IN ('burst', 'spot')),
    weighted_tokens  NUMERIC,
    source           TEXT,
    amount_exact     NUMERIC NOT NULL,
    amount           NUMERIC NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);
CREATE INDEX invoice_lines_usage ON billing.invoice_lines (usage_period) WHERE usage_class IS NOT NULL;

-- Which live invoice took each SLA credit: a credit is taken off once.
CREATE TABLE billing.applied_credits (
    credit_id   UUID PRIMARY KEY,
    invoice_id  UUID NOT NULL REFERENCES billing.invoices (id) ON DELETE CASCADE
);

-- The credit a tenant holds, moved only by finalizing an invoice.
CREATE TABLE billing.credit_balances (
    tenant_id   TEXT PRIMARY KEY,
    currency    CHAR(3) NOT NULL,
    balance     NUMERIC NOT NULL CHECK (balance >= 0),
    updated_at  TIMESTAMPTZ NOT NULL
);

-- The last number used per year; its row is locked while a number is taken.
CREATE TABLE billing.number_sequences (
    year  INTEGER PRIMARY KEY,
    last  BIGINT NOT NULL CHECK (last >= 0)
);

CREATE TABLE billing.credit_notes (
    id               UUID PRIMARY KEY,
    invoice_id       UUID NOT NULL REFERENCES billing.invoices (id),
    tenant_id        TEXT NOT NULL,
    currency         CHAR(3) NOT NULL,
    amount           NUMERIC NOT NULL CHECK (amount > 0),
    reason           TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    issued_at        TIMESTAMPTZ NOT NULL,
    issued_by        TEXT NOT NULL,
    idempotency_key  TEXT CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    UNIQUE (invoice_id, idempotency_key)
);
CREATE INDEX credit_notes_by_tenant ON billing.credit_notes (tenant_id, issued_at);

-- Events for the signed webhooks, written with the change that made them
-- and handed to the SLA service's deliverer (which dedupes on the id).
CREATE TABLE billing.outbox (
    id            UUID PRIMARY KEY,
    type          TEXT NOT NULL CHECK (type IN ('invoice.finalized', 'credit_note.issued')),
    tenant_id     TEXT NOT NULL,
    payload       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    published_at  TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON billing.outbox (created_at) WHERE published_at IS NULL;

-- The SLA service delivers billing's events too.
ALTER TABLE sla.events DROP CONSTRAINT events_type_check;
ALTER TABLE sla.events ADD CONSTRAINT events_type_check CHECK (type IN (
    'incident.opened', 'incident.updated', 'incident.resolved', 'credit.issued',
    'invoice.finalized', 'credit_note.issued'));
