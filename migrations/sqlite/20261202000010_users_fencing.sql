-- Issue 7: the row carries what a resumed operation needs and what fences it.
-- version: bumped by every write; leases are taken conditioned on the version that was read.
-- rotation_grace_secs: the grace the rotation in progress keeps for the key it replaces.
-- secret_pending: 1 while the current key's secret has reached no caller (recovery finished
-- the operation whose answer was lost); the next PUT carries it once.
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rotation_grace_secs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN secret_pending BIGINT NOT NULL DEFAULT 0;

-- The recovery claim walks work in due order (the back-off time, else the last change): one
-- partial index over the rows that can be due at all (a pending step or a retired key).
CREATE INDEX users_due ON users ((COALESCE(next_attempt_at, updated_at)))
    WHERE step <> 'idle' OR retired_key_delete_after IS NOT NULL;
