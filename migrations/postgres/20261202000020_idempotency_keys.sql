-- Idempotency-Key records (API.md, "Retries and Idempotency-Key"): one per (caller's sub,
-- key), kept 24 h (expires_at; the recovery pass deletes expired ones).
-- bound_*: the operation the key started (the user and the key generation its intent
-- created), written in the intent's own transaction, so a retry after a lost answer decides
-- from that user's row. claim_*: the request working on the key before it is bound (a
-- repeat waits while it is live). response_*: the 2xx/4xx answer, replayed to repeats; a
-- secret it carried is sealed (bound to subject, key and created_at), never in the body.
CREATE TABLE idempotency_keys (
    subject                TEXT   NOT NULL,
    idem_key               TEXT   NOT NULL,
    operation              TEXT   NOT NULL,
    target                 TEXT   NOT NULL,
    request_hash           TEXT   NOT NULL,
    bound_tenant_id        TEXT   NULL,
    bound_external_id      TEXT   NULL,
    bound_generation       BIGINT NULL,
    claim_owner            TEXT   NULL,
    claim_expires_at       BIGINT NULL,
    response_status        BIGINT NULL,
    response_body          TEXT   NULL,
    response_secret_sealed BYTEA   NULL,
    created_at             BIGINT NOT NULL,
    expires_at             BIGINT NOT NULL,
    PRIMARY KEY (subject, idem_key),
    CHECK ((bound_tenant_id IS NULL AND bound_external_id IS NULL AND bound_generation IS NULL)
        OR (bound_tenant_id IS NOT NULL AND bound_external_id IS NOT NULL
            AND bound_generation IS NOT NULL)),
    CHECK ((claim_owner IS NULL) = (claim_expires_at IS NULL)),
    CHECK ((response_status IS NULL) = (response_body IS NULL))
);

-- The clean-up of expired records.
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
