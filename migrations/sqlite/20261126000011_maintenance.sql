-- One-time data upgrades a release runs once per database (recorded so they are not
-- repeated at every start-up), e.g. `sealing-binding-v2`: re-sealing PATs and keys sealed
-- before they were bound to their base URL, upstream user and key slot.
CREATE TABLE maintenance (
    name    TEXT   NOT NULL PRIMARY KEY,
    done_at BIGINT NOT NULL
);
