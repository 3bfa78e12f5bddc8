//! Provisioner's REST API (actix-web): routing, JWT auth, JSON <-> domain, RFC 9457 problem
//! details, request ids, caller rate limit and the OpenAPI 3.1 document; and the SCIM 2.0
//! endpoints for identity providers ([`scim`], under `/scim/v2/{tenant_id}`).
//!
//! Handlers are thin: permission extractors ([`auth::TenantAccess`], [`auth::Global`]), a
//! validated body, `TryFrom` into a core command, one call to
//! [`provisioner_core::service::Provisioner`], and a `XxxOut` answer. Errors are mapped in one
//! place, [`problem`]. The binary calls [`server`]; tests can build the same app in process
//! with [`ApiApp::build`].
#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod body;
pub mod dto;
pub mod idempotency;
mod openapi;
pub mod problem;
pub mod ratelimit;
pub mod request_id;
pub mod routes;
pub mod scim;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpServer, middleware, web};
use provisioner_core::service::Provisioner;
use tracing_actix_web::TracingLogger;

pub use auth::{AuthConfig, AuthConfigError, Claims, JwtVerifier, mint_hs256};
pub use openapi::openapi;

/// What every handler gets: the service and the token verifier.
#[derive(Clone)]
pub struct ApiState {
    /// The use cases.
    pub service: Provisioner,
    /// Verifies bearer tokens.
    pub verifier: Arc<JwtVerifier>,
}

/// HTTP server settings.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Largest request body in bytes (default 1 MiB); larger answers 413.
    pub body_limit_bytes: usize,
    /// Requests per second per token `sub` (default 100; 0 turns the limit off).
    pub caller_rate_limit_per_sec: u32,
    /// Worker threads (0: actix's default, one per core).
    pub workers: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1 << 20,
            caller_rate_limit_per_sec: 100,
            workers: 0,
            shutdown_timeout_secs: 30,
        }
    }
}

/// The application: state, settings and the caller limiter shared by every worker.
#[derive(Clone)]
pub struct ApiApp {
    state: web::Data<ApiState>,
    limiter: web::Data<ratelimit::CallerLimiter>,
    openapi_json: web::Data<String>,
    body_limit: usize,
}

impl ApiApp {
    /// Prepares the app (the OpenAPI document is rendered once, here).
    pub fn new(state: ApiState, settings: &HttpSettings) -> Self {
        let doc = openapi().to_json().unwrap_or_else(|_| String::from("{}"));
        Self {
            state: web::Data::new(state),
            limiter: web::Data::new(ratelimit::CallerLimiter::new(
                settings.caller_rate_limit_per_sec,
            )),
            openapi_json: web::Data::new(doc),
            body_limit: settings.body_limit_bytes,
        }
    }

    /// The full actix `App`: middleware, routes, extractor error handlers, 404/405 problems.
    pub fn build(
        self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        let limit = self.body_limit;
        App::new()
            .app_data(self.state)
            .app_data(self.limiter)
            .app_data(self.openapi_json)
            .configure(|cfg| body::extractor_configs(cfg, limit))
            .configure(routes::configure)
            // SCIM for identity providers: its own token, error format and extractor errors.
            .configure(scim::configure)
            .default_service(web::to(routes::not_found))
            // Every answer: never sniffed as another type, never stored by a cache (answers
            // carry secrets, tenants' data and per-caller views; a handler may say otherwise).
            .wrap(
                middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Cache-Control", "no-store")),
            )
            .wrap(TracingLogger::<request_id::RootSpan>::new())
            .wrap(middleware::from_fn(request_id::request_id_middleware))
            .wrap(middleware::from_fn(access::access_middleware))
    }
}

/// Binds the full app to `listener` and returns the (not yet awaited) server.
pub fn server(
    listener: std::net::TcpListener,
    state: ApiState,
    settings: HttpSettings,
) -> std::io::Result<actix_web::dev::Server> {
    let app = ApiApp::new(state, &settings);
    // Signals are the binary's to handle (SIGTERM and SIGINT alike, gracefully): actix's own
    // handling would stop at once on SIGINT.
    let mut server = HttpServer::new(move || app.clone().build())
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs)
        .listen(listener)?;
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    Ok(server.run())
}
