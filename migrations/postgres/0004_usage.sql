-- Control plane, usage: per tenant and UTC hour, what its clients did (added up
-- by the broker through `ControlStore::add_usage`). No foreign key to tenants:
-- a usage report that arrives after a tenant was deleted must not fail the batch,
-- and the hours of a deleted tenant stay for billing.
-- Keep in step with migrations/sqlite/0004_usage.sql.

CREATE TABLE usage (
    tenant_id          TEXT NOT NULL,
    hour               TIMESTAMPTZ NOT NULL,   -- start of the UTC hour
    connection_seconds BIGINT NOT NULL,
    messages_in        BIGINT NOT NULL,
    messages_out       BIGINT NOT NULL,
    bytes_in           BIGINT NOT NULL,
    bytes_out          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hour)
);
