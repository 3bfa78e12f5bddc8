-- Optimistic concurrency on tenant rows: every update is conditioned on the version it read
-- and increments it, so a slow read-modify-write (replacing the PAT verifies it upstream for
-- seconds) cannot silently undo a concurrent change such as a suspension. Existing rows start
-- at 1.
ALTER TABLE tenants ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
