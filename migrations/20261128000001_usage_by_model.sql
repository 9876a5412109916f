-- The portal's pool charts read one model's usage over time, every tenant
-- together (UsageSeries); without this index that is a scan of every record.
CREATE INDEX usage_by_model ON metering.usage_records (model_id, finished_at) INCLUDE (class, weighted_tokens);
