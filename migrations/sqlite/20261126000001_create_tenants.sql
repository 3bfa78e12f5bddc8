-- Tenants (enterprise customers) and their named scope profiles.
--
-- Portability: the service reads and writes through sqlx's `Any` driver, which carries only
-- integers, floats, text and blobs. So timestamps are BIGINT unix milliseconds (UTC), ids are
-- TEXT, sealed secrets are BLOB (AES-256-GCM ciphertext, never plaintext), and structured
-- values (app defaults, rate limit, scope sets) are JSON documents in TEXT columns, parsed
-- and validated by the storage crate on every read.
--
-- Enumerated values (status) are plain TEXT without CHECK constraints: adding a variant in
-- core must not require rebuilding the table (SQLite cannot alter a CHECK); rows that do not
-- parse are reported as storage failures instead.
--
-- SQLite compares TEXT with the BINARY collation (byte order of UTF-8), which is the order
-- the API's keyset pagination promises; the PostgreSQL schema uses COLLATE "C" to match.

CREATE TABLE tenants (
    id                    TEXT    NOT NULL PRIMARY KEY,
    display_name          TEXT    NOT NULL,
    status                TEXT    NOT NULL,
    base_url              TEXT    NOT NULL,
    upstream_user_id      TEXT    NOT NULL,
    -- The tenant's PAT sealed under the master key (associated data `pat:<tenant>`).
    pat_sealed            BLOB    NOT NULL,
    -- SHA-256 of the PAT, hex: shown instead of the PAT.
    pat_fingerprint       TEXT    NOT NULL,
    app_defaults          TEXT    NOT NULL, -- JSON object
    rate_limit            TEXT    NOT NULL, -- JSON object
    allowed_scopes        TEXT    NOT NULL, -- JSON array of scope names
    -- Not a foreign key to scope_profiles: core validates it, and a profile may be replaced
    -- or deleted independently (core decides what that means for the default).
    default_scope_profile TEXT    NULL,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL
);

CREATE TABLE scope_profiles (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    scopes     TEXT   NOT NULL, -- JSON array of scope names
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- Names are unique within a tenant; the tenant id leads the key (and so every look-up).
    PRIMARY KEY (tenant_id, name)
);
