-- Issue 7: a commit-ordered audit cursor. UUID v7 ids are made before commit, so paging by id
-- can skip an event whose transaction commits late. Every transaction that writes audit events
-- takes one transaction-level advisory lock just before its audit insert (always its last
-- statement), so audit writers commit one at a time, and `seq` (drawn from its sequence after
-- the lock) is commit order. The lock is held only from that insert to the commit.
ALTER TABLE audit_events ADD COLUMN seq BIGSERIAL;
CREATE INDEX audit_events_commit_order ON audit_events (seq);
CREATE INDEX audit_events_tenant_commit_order ON audit_events (tenant_id, seq);
