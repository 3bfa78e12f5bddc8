-- End users' provisioning records: one row per (tenant, external id), holding the durable
-- intent (status + step), the sealed current key, a retired key awaiting deletion, and the
-- lease of the operation in progress.
--
-- Types follow 20261126000001 (BIGINT unix ms, TEXT ids, BYTEA sealed secrets, JSON TEXT).

CREATE TABLE users (
    tenant_id                TEXT   COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id              TEXT   COLLATE "C" NOT NULL, -- byte order, see 20261126000001
    app_id                   TEXT   NOT NULL,
    status                   TEXT   NOT NULL,
    step                     TEXT   NOT NULL,
    generation               BIGINT NOT NULL,
    scopes                   TEXT   NOT NULL, -- JSON array of scope names
    -- The current key: all five columns are set together, or none is.
    key_sealed               BYTEA   NULL,
    key_fingerprint          TEXT   NULL,
    key_scopes               TEXT   NULL,     -- JSON array of scope names
    key_generation           BIGINT NULL,
    key_created_at           BIGINT NULL,
    -- A key replaced by rotation, deleted upstream after delete_after: all or none.
    retired_key_sealed       BYTEA   NULL,
    retired_key_fingerprint  TEXT   NULL,
    retired_key_delete_after BIGINT NULL,
    display_name             TEXT   NULL,
    metadata                 TEXT   NOT NULL, -- JSON object of strings
    -- The lease: owner and expiry are set together, or neither is.
    lease_owner              TEXT   NULL,
    lease_expires_at         BIGINT NULL,
    last_error               TEXT   NULL,
    attempts                 BIGINT NOT NULL DEFAULT 0,
    next_attempt_at          BIGINT NULL,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL,
    -- The database, not the application, guarantees one row per (tenant, external id):
    -- concurrent provisioning calls race on this key and exactly one insert wins.
    PRIMARY KEY (tenant_id, external_id),
    CHECK ((key_sealed IS NULL AND key_fingerprint IS NULL AND key_scopes IS NULL
            AND key_generation IS NULL AND key_created_at IS NULL)
        OR (key_sealed IS NOT NULL AND key_fingerprint IS NOT NULL AND key_scopes IS NOT NULL
            AND key_generation IS NOT NULL AND key_created_at IS NOT NULL)),
    CHECK ((retired_key_sealed IS NULL AND retired_key_fingerprint IS NULL
            AND retired_key_delete_after IS NULL)
        OR (retired_key_sealed IS NOT NULL AND retired_key_fingerprint IS NOT NULL
            AND retired_key_delete_after IS NOT NULL)),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

-- App ids are derived from (tenant, external id) and must never collide within a tenant.
CREATE UNIQUE INDEX users_tenant_app_id ON users (tenant_id, app_id);

-- Listing a tenant's users of one status in external-id order (keyset pagination).
CREATE INDEX users_tenant_status ON users (tenant_id, status, external_id);

-- Exceptions to "tenant id leads every index": the leaked-key look-up (POST /v1/keys/lookup)
-- is global, by fingerprint of the current or the retired key.
CREATE INDEX users_key_fingerprint ON users (key_fingerprint)
    WHERE key_fingerprint IS NOT NULL;
CREATE INDEX users_retired_key_fingerprint ON users (retired_key_fingerprint)
    WHERE retired_key_fingerprint IS NOT NULL;

-- Also global: the recovery scan looks across all tenants for pending steps whose retry time
-- has come and for retired keys whose grace period ended. Partial indexes keep them small:
-- at rest almost every row is idle with no retired key.
CREATE INDEX users_pending_next_attempt ON users (next_attempt_at)
    WHERE step <> 'idle';
CREATE INDEX users_retired_key_delete_after ON users (retired_key_delete_after)
    WHERE retired_key_delete_after IS NOT NULL;
