-- Signed webhooks (docs/webhooks.md): a tenant's endpoints, the events written through the
-- outbox, one delivery per event and endpoint, and the attempts of each delivery. Types
-- follow 20261126000001 (BIGINT unix ms, TEXT ids with COLLATE "C", JSON TEXT); booleans are
-- 0/1 (BIGINT), as in 20261202000040.

-- A tenant's endpoints. event_types is a JSON array of event type names (core's
-- `EventType::as_str`; empty: every type). secrets is a JSON array of
-- {"sealed": base64 of the sealed `whsec_...`, "created_at": ms, "expires_at": ms | null},
-- the current secret last. failing_since: since when every attempt failed.
CREATE TABLE webhook_endpoints (
    id              TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id       TEXT   COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url             TEXT   NOT NULL,
    description     TEXT   NULL,
    event_types     TEXT   NOT NULL, -- JSON array of type names
    enabled         BIGINT NOT NULL,
    disabled_reason TEXT   NULL,
    secrets         TEXT   NOT NULL, -- JSON array, see above
    failing_since   BIGINT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
-- Listing a tenant's endpoints oldest first; the outbox's look-up of a tenant's endpoints.
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at, id);

-- Events written through the outbox, in the transaction of the change they describe. body is
-- the exact body every delivery sends (core's `OutboxEvent::body`): signatures cover it.
CREATE TABLE webhook_events (
    id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY, -- msg_ + UUID v7: time-ordered
    tenant_id  TEXT   COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    data       TEXT   NOT NULL, -- JSON
    body       TEXT   NOT NULL
);
CREATE INDEX webhook_events_tenant ON webhook_events (tenant_id, id);

-- One event's delivery to one endpoint. A pending delivery is due when next_attempt_at is
-- unset or past; a worker claims it by moving next_attempt_at to the end of its claim.
CREATE TABLE webhook_deliveries (
    event_id        TEXT   COLLATE "C" NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id     TEXT   COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id       TEXT   COLLATE "C" NOT NULL,
    event_type      TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NULL,
    last_status     BIGINT NULL,
    last_error      TEXT   NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
-- The claim walks pending deliveries, earliest due first; at rest almost every delivery is
-- delivered or failed, so the partial index stays small.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries
    ((COALESCE(next_attempt_at, created_at)), event_id, endpoint_id) WHERE status = 'pending';
-- A tenant's deliveries, newest event first (event ids are time-ordered).
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, event_id DESC, endpoint_id);
-- One endpoint's deliveries: its listing, requeues, and the cascade of its deletion.
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, event_id DESC);

-- Each attempt of a delivery (1 for the first), kept with it.
CREATE TABLE webhook_attempts (
    event_id    TEXT   COLLATE "C" NOT NULL,
    endpoint_id TEXT   COLLATE "C" NOT NULL,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    status_code BIGINT NULL,
    error       TEXT   NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id, attempt),
    FOREIGN KEY (event_id, endpoint_id)
        REFERENCES webhook_deliveries (event_id, endpoint_id) ON DELETE CASCADE
);
