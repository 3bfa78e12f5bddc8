-- Issue 7: a commit-ordered audit cursor. UUID v7 ids are made before commit, so paging by id
-- can skip an event whose transaction commits late. Each event now records the transaction
-- that wrote it (`txid`) and an insertion sequence (`seq`); a listing shows only events of
-- transactions older than every transaction still running (pg_snapshot_xmin), ordered by
-- (txid, seq): no event can later appear before a position already handed out.
ALTER TABLE audit_events ADD COLUMN seq BIGSERIAL;
ALTER TABLE audit_events
    ADD COLUMN txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX audit_events_commit_order ON audit_events (txid, seq);
CREATE INDEX audit_events_tenant_commit_order ON audit_events (tenant_id, txid, seq);
