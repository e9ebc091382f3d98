-- Control plane, usage reports of the scale-out gateways (a JetStream stream):
-- per stream, the sequence of the last report folded into `usage`, written in
-- the same transaction as the usage it added, so a report delivered again
-- (the control plane died before acknowledging it) is not counted twice.
-- Keep in step with migrations/postgres/0007_usage_reports.sql.

CREATE TABLE usage_reports (
    stream        TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL
);
