-- Bulk onboarding jobs (docs/api.md, "Bulk onboarding"). A job is one `users:batch` request;
-- each user of the batch is an item, claimed by workers under a lease (lease_owner,
-- lease_expires_at) and provisioned through the same crash-safe steps as a single PUT. An
-- item's outcome and the job's counters are written in one transaction; the job ends
-- (finished_at) when no item is pending. Booleans are 0/1. Keyed by the job's UUID v7 (ordered
-- by creation), not by tenant: GET /v1/jobs/{job_id} names no tenant.
CREATE TABLE jobs (
    id               TEXT NOT NULL PRIMARY KEY,
    tenant_id        TEXT   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status           TEXT   NOT NULL,
    total            BIGINT NOT NULL,
    done             BIGINT NOT NULL DEFAULT 0,
    failed           BIGINT NOT NULL DEFAULT 0,
    cancelled        BIGINT NOT NULL DEFAULT 0,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    created_by       TEXT   NOT NULL,
    request_id       TEXT,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX jobs_tenant ON jobs (tenant_id, id);

CREATE TABLE job_items (
    job_id           TEXT   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx              BIGINT NOT NULL,
    tenant_id        TEXT   NOT NULL,
    external_id      TEXT   NOT NULL,
    request          TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    error_code       TEXT,
    error_detail     TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    PRIMARY KEY (job_id, idx)
);
-- The claim walks pending items in batch order across jobs.
CREATE INDEX job_items_pending ON job_items (idx, job_id) WHERE status = 'pending';
-- A job's end and its cancel look up its pending (or failed) items.
CREATE INDEX job_items_job_status ON job_items (job_id, status);
