-- Key-age policies: a scope profile may bound its users' key age (seconds; NULL: never) and
-- say how long a key the policy replaces stays valid; a user records the profile its scopes
-- came from (NULL: explicit scopes), so the policy finds its keys.
ALTER TABLE scope_profiles ADD COLUMN max_key_age_secs BIGINT NULL;
ALTER TABLE scope_profiles ADD COLUMN rotation_grace_secs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN profile TEXT NULL;
-- The policy's scan: a tenant's active users of one profile, oldest key first.
CREATE INDEX users_profile_key_age ON users (tenant_id, profile, key_created_at)
    WHERE status = 'active' AND profile IS NOT NULL;
