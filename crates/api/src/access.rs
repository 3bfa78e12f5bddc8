//! One access-log line and the HTTP metrics per request.
//!
//! The line goes to the log target `provisioner::access` with the method, the route template
//! (`/v1/tenants/{tenant_id}/users/{external_id}`, never the path with its ids), the status,
//! the duration, the request id, the W3C trace id and the tenant the caller was authorized for (recorded by the
//! auth extractors; empty before authentication). Probes (`/healthz`, `/readyz`) log at debug.
//! Metrics: `provisioner_http_requests_total{route,method,status}` and
//! `provisioner_http_request_duration_seconds{route,method}`; a path no route matches counts
//! as the route `unmatched`, so callers cannot grow the label set.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};

use provisioner_core::trace::TraceContext;

use crate::request_id::RequestId;

/// The log target of access lines.
pub const ACCESS_TARGET: &str = "provisioner::access";

/// The tenant a request was authorized for, in the request extensions.
#[derive(Clone, Debug)]
pub(crate) struct AuthorizedTenant(pub String);

/// Notes the tenant a request was authorized for, for its access line.
pub(crate) fn note_tenant(req: &HttpRequest, tenant: &str) {
    req.extensions_mut()
        .insert(AuthorizedTenant(tenant.to_owned()));
}

/// Logs and counts every request (outside the request-id middleware, so the id is known).
pub async fn access_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let res = next.call(req).await;
    let elapsed = started.elapsed();
    let (status, route, request_id, trace_id, tenant) = match &res {
        Ok(r) => {
            let rq = r.request();
            (
                r.status().as_u16(),
                rq.match_pattern(),
                rq.extensions().get::<RequestId>().map(|r| r.0.clone()),
                rq.extensions()
                    .get::<TraceContext>()
                    .map(|t| t.trace_id().to_owned()),
                rq.extensions()
                    .get::<AuthorizedTenant>()
                    .map(|t| t.0.clone()),
            )
        }
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            None,
            None,
            None,
            None,
        ),
    };
    let route = route.unwrap_or_else(|| String::from("unmatched"));
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let request_id = request_id.unwrap_or_default();
    let trace_id = trace_id.unwrap_or_default();
    let tenant = tenant.unwrap_or_default();
    if matches!(route.as_str(), "/healthz" | "/readyz") {
        tracing::debug!(target: ACCESS_TARGET, method = %method, route = %route, status, duration_ms, request_id = %request_id, trace_id = %trace_id, tenant = %tenant, "request");
    } else {
        tracing::info!(target: ACCESS_TARGET, method = %method, route = %route, status, duration_ms, request_id = %request_id, trace_id = %trace_id, tenant = %tenant, "request");
    }
    // Only standard methods become label values; callers cannot grow the label set.
    let method = match method.as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_owned(),
        _ => String::from("other"),
    };
    metrics::counter!(
        "provisioner_http_requests_total",
        "route" => route.clone(),
        "method" => method.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        "provisioner_http_request_duration_seconds",
        "route" => route,
        "method" => method
    )
    .record(elapsed.as_secs_f64());
    res
}
