-- Issue 7: a commit-ordered audit cursor. UUID v7 ids are made before commit, so paging by id
-- could skip an event that commits late. SQLite has one writer at a time, so an insertion
-- sequence is commit order: `seq` is set by a trigger to one more than the largest so far.
ALTER TABLE audit_events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE audit_events SET seq = rowid;
CREATE TRIGGER audit_events_seq AFTER INSERT ON audit_events
BEGIN
    UPDATE audit_events SET seq = (SELECT MAX(seq) FROM audit_events) + 1
    WHERE rowid = NEW.rowid;
END;
CREATE INDEX audit_events_commit_order ON audit_events (seq);
CREATE INDEX audit_events_tenant_commit_order ON audit_events (tenant_id, seq);
