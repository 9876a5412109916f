-- Hourly usage per model and class, every tenant together: what the pool
-- served over time, for the portal's charts (UsageSeries). Kept by the same
-- statement that stores each batch of records (only the records it
-- stores), so reading a month is 720 rows, not every record.
CREATE TABLE metering.usage_hourly (
    model_id         TEXT NOT NULL,
    hour             TIMESTAMPTZ NOT NULL,
    class            TEXT NOT NULL CHECK (class IN ('reserved', 'burst', 'spot')),
    requests         BIGINT NOT NULL CHECK (requests >= 0),
    weighted_tokens  NUMERIC NOT NULL CHECK (weighted_tokens >= 0),
    PRIMARY KEY (model_id, hour, class)
);

INSERT INTO metering.usage_hourly (model_id, hour, class, requests, weighted_tokens)
SELECT model_id, date_trunc('hour', finished_at, 'UTC'), class, count(*), sum(weighted_tokens)
FROM metering.usage_records
GROUP BY 1, 2, 3;
