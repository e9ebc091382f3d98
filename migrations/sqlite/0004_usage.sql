-- Control plane, usage: per tenant and UTC hour, what its clients did (added up
-- by the broker through `ControlStore::add_usage`). No foreign key to tenants:
-- a usage report that arrives after a tenant was deleted must not fail the batch,
-- and the hours of a deleted tenant stay for billing.
-- Keep in step with migrations/postgres/0004_usage.sql.

CREATE TABLE usage (
    tenant_id          TEXT NOT NULL,
    hour               TEXT NOT NULL,          -- start of the UTC hour, always written the same way
    connection_seconds INTEGER NOT NULL,
    messages_in        INTEGER NOT NULL,
    messages_out       INTEGER NOT NULL,
    bytes_in           INTEGER NOT NULL,
    bytes_out          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, hour)
);
