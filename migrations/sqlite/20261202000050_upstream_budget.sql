-- The upstream's request budget shared by every replica (docs/architecture.md, "One upstream
-- budget"): per account (base URL and user id; no secret), the most recent grants, oldest
-- first, as microseconds on the database's clock separated by commas (at most the account's
-- rate of them).
CREATE TABLE upstream_budget (
    account  TEXT NOT NULL PRIMARY KEY,
    grants   TEXT NOT NULL DEFAULT ''
);
