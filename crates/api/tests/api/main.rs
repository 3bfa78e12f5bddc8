//! HTTP-level tests of the API over core's in-memory fakes (one test binary).

mod auth;
mod docs;
mod helpers;
mod idempotency;
mod isolation;
mod jobs;
mod jwks;
mod openapi;
mod problems;
mod reconcile;
mod scim;
mod scim_admin;
mod scim_discovery;
mod server;
mod tenants;
mod users;
mod webhooks;
