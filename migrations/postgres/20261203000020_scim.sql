-- SCIM 2.0 (docs/scim.md): a tenant's SCIM settings, its bearer tokens, and the SCIM user
-- resources its identity provider manages. Types follow 20261126000001 (BIGINT unix ms, TEXT
-- ids with COLLATE "C", JSON TEXT); booleans are 0/1 (BIGINT), as in 20261202000040.

-- A tenant's settings; no row means the defaults (core's `ScimConfig::default_for`).
CREATE TABLE scim_configs (
    tenant_id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    external_id_from  TEXT   NOT NULL,
    on_deactivate     TEXT   NOT NULL,
    scope_profile     TEXT   NULL,
    profile_attribute TEXT   NULL,
    updated_at        BIGINT NULL
);

-- Bearer tokens: only the SHA-256 of the secret (hex) is kept; it is looked up globally (the
-- request names no tenant), so it is unique across the service.
CREATE TABLE scim_tokens (
    id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id  TEXT   COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    hash       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NULL,
    created_by TEXT   NOT NULL
);
CREATE INDEX scim_tokens_tenant ON scim_tokens (tenant_id, created_at);

-- SCIM users. `attributes` is the JSON of core's `ScimAttributes` (userName included); the
-- other attribute columns are derived from it on every write, for the database to enforce
-- and search: user_name_key (the case-folded userName), scim_external_id (`externalId`),
-- email_key (core's `email_key`, searched by substring) and active. external_id is the
-- provisioning record the user drives (fixed at creation). A deleted row stays (hidden)
-- until its deprovisioning is synced, then the sync removes it.
CREATE TABLE scim_users (
    id               TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id        TEXT   COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id      TEXT   COLLATE "C" NOT NULL,
    user_name_key    TEXT   COLLATE "C" NOT NULL,
    scim_external_id TEXT   COLLATE "C" NULL,
    attributes       TEXT   NOT NULL, -- JSON object
    email_key        TEXT   NOT NULL,
    active           BIGINT NOT NULL,
    profile          TEXT   NULL,
    deleted          BIGINT NOT NULL DEFAULT 0,
    version          BIGINT NOT NULL,
    synced_version   BIGINT NOT NULL,
    sync_error       TEXT   NULL,
    sync_attempts    BIGINT NOT NULL DEFAULT 0,
    next_sync_at     BIGINT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- userName (case-insensitively) and the provisioning external id are unique among a tenant's
-- users that are not deleted: the database decides races between concurrent creates.
CREATE UNIQUE INDEX scim_users_user_name ON scim_users (tenant_id, user_name_key)
    WHERE deleted = 0;
-- Every SCIM user of a provisioning record, deleted ones included until their deletion is
-- synced (and the row removed): a person deleted and created again waits for that (409).
CREATE UNIQUE INDEX scim_users_external_id ON scim_users (tenant_id, external_id);
-- Listing a tenant's users in id order (SCIM paging), and the `externalId eq` filter.
CREATE INDEX scim_users_tenant ON scim_users (tenant_id, id) WHERE deleted = 0;
CREATE INDEX scim_users_scim_external_id ON scim_users (tenant_id, scim_external_id)
    WHERE deleted = 0 AND scim_external_id IS NOT NULL;
-- The sync claim walks unsynced rows, oldest change first; at rest almost every row is
-- synced, so the partial index stays small.
CREATE INDEX scim_users_unsynced ON scim_users (updated_at, id)
    WHERE version <> synced_version;
