-- The append-only audit log. Events are written in the same transaction as the state change
-- they describe (audit fails closed), and hold no secrets.
--
-- No foreign key to tenants: events must outlive the tenant they describe (a deleted
-- tenant's history stays readable). No updated_at either: rows are never changed; `at` is
-- the event time.

CREATE TABLE audit_events (
    -- UUID v7 as lowercase hyphenated text: its byte order is its time order, so the
    -- primary key is also the pagination order.
    id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    at         BIGINT NOT NULL, -- unix ms, UTC
    actor      TEXT   NOT NULL,
    tenant_id  TEXT   COLLATE "C" NULL,
    action     TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    request_id TEXT   NULL
);

-- One tenant's events in id (time) order.
CREATE INDEX audit_events_tenant_id ON audit_events (tenant_id, id);
