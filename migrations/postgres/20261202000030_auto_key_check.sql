-- Keys the upstream may mint with every new app (docs/upstream.md, "Auto-created keys").
-- Per tenant: whether provisioning looks for them after each app create ('always', the
-- default; 'learn'; 'never').
ALTER TABLE tenants ADD COLUMN auto_key_check TEXT NOT NULL DEFAULT 'always';

-- What was learnt per upstream account (base URL and user id; no secret), shared by every
-- tenant on it, for the 'learn' policy: app creates in a row whose look found no minted key,
-- and when one was last seen (ms since the epoch).
CREATE TABLE upstream_accounts (
    account                TEXT   NOT NULL PRIMARY KEY,
    auto_key_clean_checks  BIGINT NOT NULL DEFAULT 0,
    auto_key_last_seen_at  BIGINT
);
