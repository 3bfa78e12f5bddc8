//! A faithful simulator of the Clarifai v2 REST subset the provisioner uses (apps, app-specific
//! keys, scopes), with fault injection, for tests, benchmarks and the demo.
//!
//! Behaviour follows `docs/upstream.md`. Where the upstream is unconfirmed, the
//! simulator chooses, and documents the choice here:
//!
//! | case | answer |
//! |---|---|
//! | duplicate app id | HTTP 409, `40010` DATABASE_DUPLICATE_KEY |
//! | invalid app id, unknown or internal scope, bad key request | HTTP 400, `11102` CONN_INVALID_REQUEST |
//! | broken JSON body | HTTP 400, `11100` CONN_BAD_REQUEST_FORMAT |
//! | missing/malformed `Authorization` | HTTP 401, `11102` |
//! | unknown token | HTTP 401, `11009` CONN_KEY_NOT_FOUND |
//! | missing app or key, or a user id the PAT cannot act for | HTTP 404, `11101` CONN_DOES_NOT_EXIST |
//! | app key on a PAT-only route | HTTP 403, `11007` CONN_INSUFFICIENT_SCOPES |
//! | ListScopes with any key (upstream: session token only) | HTTP 401, `11008` CONN_KEY_INVALID |
//! | rate limit (per account, token bucket, default 15/s) | HTTP 429, `"code": "CONN_THROTTLED"` (a string, as the docs show; numeric on request), no `Retry-After` |
//! | `per_page` above 1000 | clamped to 1000 |
//! | PostApps / PostKeys with several items | accepted, all or nothing |
//! | PostApps auto-creating a key | no by default; with `--auto-app-key` ([`SimConfig::auto_app_key`], or `PUT /_sim/auto_app_key` at run time) each new app gets a key with every grantable scope and no marker, as the portal does |
//! | deprecated scopes on a key | accepted; internal and unknown ones are refused |
//! | narrowly scoped PAT on PAT routes | accepted (depending scopes are advisory upstream) |
//! | an app's default workflow | echoed; `Universal` from `clarifai/main` when not given |
//!
//! Routes and shapes match what the official python JSON client (`clarifai-grpc`) sends:
//! GET fields as query parameters, a JSON body on DELETE. `scripts/fidelity/run.sh` checks it.
//!
//! Served under `/v2`: PostApps, GetApp (also `/v2/app` for an app key), ListApps (also
//! `/v2/apps`), DeleteApp, PostKeys, GetKey, ListKeys, ListAppKeys, DeleteKey, MyScopes
//! (`/v2/myscopes`, `/v2/my_scopes`, `/v2/users/{uid}/apps/{app_id}/myscopes`), MyScopesUser,
//! MyScopesRoot, GetUser, ListScopes (always refused). Anything else: 404 with a status body.
//!
//! Faults ([`Faults`]) apply to `/v2` only. Admin routes, without auth and never faulted:
//! `GET /_sim/state`, `GET`/`PUT /_sim/faults` (a [`Faults`] JSON, missing fields default),
//! `GET /_sim/stats` (`{requests, faults: FaultCounts, rate_limit_per_sec}`) and
//! `PUT /_sim/rate_limit` (`{"per_sec": 15}` or `{"per_sec": null}`), `GET`/`PUT /_sim/auto_app_key`
//! (`{"enabled": true}`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use clarifai_sim::{Account, Faults, SimConfig, Simulator};
//!
//! let sim = Simulator::start(SimConfig {
//!     accounts: vec![Account::new("acme", "pat-123")],
//!     ..SimConfig::default()
//! })
//! .await?;
//! let base = sim.base_url(); // point the client here
//! sim.set_faults(Faults::mixed(0.2, 7)); // 20% of requests fail, reproducibly
//! # let _ = base;
//! sim.stop().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod admin;
mod auth;
pub mod config;
pub mod errors;
mod faults;
pub mod keys;
mod ratelimit;
mod routes;
mod shared;
pub mod state;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use chrono::Utc;
use serde_json::{Value, json};

pub use config::{Account, FaultCounts, Faults, SimConfig};
pub use faults::HTML_503;
pub use keys::SimKey;
pub use state::SimApp;

use shared::{Shared, lock};

/// A cheap, cloneable handle to a running simulator.
#[derive(Clone)]
pub struct Simulator {
    shared: web::Data<Shared>,
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a free port, inside the caller's tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a simulator on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        let workers = config.workers.max(1);
        let shared = web::Data::new(Shared::new(config));
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let data = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(from_fn(faults::inject))
                .configure(routes::configure)
                .configure(admin::configure)
                .default_service(web::to(routes::not_found))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Simulator {
            shared,
            addr,
            handle,
        })
    }

    /// `http://HOST:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the injected faults (a seed restarts the fault RNG).
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared.faults).set(faults);
    }

    /// The injected faults in force.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).faults()
    }

    /// Changes the per-account rate limit (`None` or `Some(0)`: off).
    pub fn set_rate_limit(&self, per_sec: Option<u32>) {
        lock(&self.shared.limiter).set(per_sec);
    }

    /// Whether creating an app also mints a key on it (see [`SimConfig::auto_app_key`]).
    pub fn set_auto_app_key(&self, enabled: bool) {
        self.shared.state().auto_app_key = enabled;
    }

    /// Sends `CONN_THROTTLED` as the number 11005 instead of the string name.
    pub fn set_throttle_code_numeric(&self, numeric: bool) {
        self.shared
            .throttle_code_numeric
            .store(numeric, Ordering::Relaxed);
    }

    /// Adds (or replaces, by PAT) an account.
    pub fn add_account(&self, account: Account) {
        self.shared.state().add_account(account);
    }

    /// Revokes a PAT, as its owner would in the portal; returns whether it existed.
    pub fn revoke_pat(&self, pat: &str) -> bool {
        self.shared.state().revoke_pat(pat)
    }

    /// A user's apps, ordered by id.
    pub fn apps(&self, user_id: &str) -> Vec<SimApp> {
        let state = self.shared.state();
        state
            .apps
            .get(user_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A user's app keys, in creation order.
    pub fn keys(&self, user_id: &str) -> Vec<SimKey> {
        self.shared.state().keys_where(user_id, |_| true)
    }

    /// The `traceparent` headers of the last requests on `/v2` that had one, oldest first.
    pub fn traceparents(&self) -> Vec<String> {
        crate::shared::lock(&self.shared.traceparents)
            .iter()
            .cloned()
            .collect()
    }

    /// Requests seen on `/v2` routes (admin routes excluded).
    pub fn request_count(&self) -> u64 {
        self.shared.request_count()
    }

    /// Injected faults by kind, and rate-limit refusals.
    pub fn fault_counts(&self) -> FaultCounts {
        self.shared.fault_counts()
    }

    /// Everything, as `GET /_sim/state` shows it.
    pub fn state_json(&self) -> Value {
        admin::state_json(&self.shared)
    }

    /// Creates (or replaces) an app out of band, as a human in the portal would. No validation.
    pub fn insert_app(&self, user_id: &str, app_id: &str, metadata: Value) {
        let now = Utc::now();
        let app = SimApp {
            id: app_id.to_owned(),
            name: app_id.to_owned(),
            user_id: user_id.to_owned(),
            description: String::new(),
            metadata,
            default_workflow: json!({"id": "Empty", "app_id": "main", "user_id": "clarifai"}),
            visibility: json!({"gettable": 10}),
            created_at: now,
            modified_at: now,
        };
        let mut state = self.shared.state();
        let apps = state.apps.entry(user_id.to_owned()).or_default();
        apps.insert(app_id.to_owned(), app);
    }

    /// Creates a key on an app out of band and returns its id (the secret). No validation.
    pub fn insert_key(
        &self,
        user_id: &str,
        app_id: &str,
        scopes: &[&str],
        description: &str,
    ) -> String {
        let mut state = self.shared.state();
        let id = errors::hex32(&mut state.ids);
        state.store_key(SimKey {
            id: id.clone(),
            user_id: user_id.to_owned(),
            description: description.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            endpoints: Vec::new(),
            app_ids: vec![app_id.to_owned()],
            created_at: Utc::now(),
            expires_at: None,
        });
        id
    }

    /// Deletes an app and its keys out of band; `false` if the user had no such app.
    pub fn remove_app(&self, user_id: &str, app_id: &str) -> bool {
        self.shared.state().delete_app(user_id, app_id).is_ok()
    }

    /// Deletes a key out of band; `false` if the user had no such key.
    pub fn remove_key(&self, user_id: &str, key_id: &str) -> bool {
        self.shared.state().delete_key(user_id, key_id).is_ok()
    }

    /// Stops the server without waiting for open requests (hangs included).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
