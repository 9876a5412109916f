-- The SLA's TTFT target of a request is its tier's base plus prompt tokens /
-- the model's measured prefill rate: calibration records the rate here.
-- 0: not measured yet (the target is the base alone).
ALTER TABLE contracts.models ADD COLUMN prefill_tokens_per_s INTEGER NOT NULL DEFAULT 0
    CHECK (prefill_tokens_per_s >= 0);
