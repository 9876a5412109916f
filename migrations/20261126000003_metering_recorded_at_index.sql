-- The SLA asks which windows records stored since an instant touched (late
-- records after an outage): find them by storage time.
CREATE INDEX usage_by_recorded_at ON metering.usage_records (recorded_at) WHERE class = 'reserved';
