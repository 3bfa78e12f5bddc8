//! Request ids and the per-request root span.
//!
//! The outermost middleware, [`request_id_middleware`], picks the request id (a valid incoming
//! `x-request-id`: 1-128 characters of `[A-Za-z0-9._:-]`, else a new UUID v4), stores it in the
//! request extensions, echoes it in the `x-request-id` response header and writes it into every
//! problem body. [`RootSpan`] builds the `tracing-actix-web` root span with `request_id`,
//! `http.route` and an empty `tenant.id` that the auth extractors record. Headers and bodies are
//! never recorded.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use provisioner_core::trace::{self, TraceContext};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::RootSpanBuilder;

use crate::problem::{Problem, render};

/// Name of the W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Name of the request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the current request, in the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id of `req` (set by the middleware; a fresh one if the middleware is absent).
    pub fn of(req: &HttpRequest) -> String {
        req.extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(new_id)
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether an incoming id may be echoed: 1-128 of `[A-Za-z0-9._:-]`.
pub fn is_valid_request_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Assigns the request id, echoes it, and puts it into problem bodies.
pub async fn request_id_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| is_valid_request_id(s))
        .map(str::to_owned)
        .unwrap_or_else(new_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    // The caller's trace (W3C `traceparent`), or a new one: logged, and passed on to the
    // upstream calls the request makes.
    let trace = req
        .headers()
        .get(TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .unwrap_or_else(TraceContext::generate);
    req.extensions_mut().insert(trace.clone());
    // Handlers and extractors turn their errors into responses, so `Err` here is rare (a
    // middleware failing); it is passed on and rendered by actix without the header.
    let res = trace::scope(trace, next.call(req))
        .await?
        .map_into_boxed_body();
    Ok(finish(res, &id))
}

fn finish(mut res: ServiceResponse<BoxBody>, id: &str) -> ServiceResponse<BoxBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    let problem = res.response().extensions().get::<Problem>().cloned();
    match problem {
        Some(mut p) => {
            p.request_id = Some(id.to_owned());
            let body = render(&p);
            res.map_body(|_, _| BoxBody::new(body))
        }
        None => res,
    }
}

/// The root span of every request: `request_id`, `http.*` and `tenant.id` (recorded later).
pub struct RootSpan;

impl RootSpanBuilder for RootSpan {
    fn on_request_start(req: &ServiceRequest) -> Span {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let trace_id = req
            .extensions()
            .get::<TraceContext>()
            .map(|t| t.trace_id().to_owned())
            .unwrap_or_default();
        let route = req.match_pattern().unwrap_or_else(|| "default".into());
        let method = req.method().as_str().to_owned();
        let probe = matches!(route.as_str(), "/healthz" | "/readyz");
        macro_rules! span {
            ($lvl:expr) => {
                tracing::span!(
                    $lvl,
                    "HTTP request",
                    http.method = %method,
                    http.route = %route,
                    http.status_code = Empty,
                    request_id = %request_id,
                    trace_id = %trace_id,
                    tenant.id = Empty,
                    error.message = Empty,
                )
            };
        }
        let span = if probe {
            span!(tracing::Level::DEBUG)
        } else {
            span!(tracing::Level::INFO)
        };
        // Exported spans (feature `otel`) join the request's trace: the caller's, or the one
        // started for it, which the logs and the upstream calls carry too.
        #[cfg(feature = "otel")]
        if let Some(t) = req.extensions().get::<TraceContext>() {
            set_remote_parent(&span, t);
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        match outcome {
            Ok(res) => {
                span.record("http.status_code", res.status().as_u16());
                if let Some(p) = res.response().extensions().get::<Problem>() {
                    span.record("error.message", p.code.as_str());
                }
            }
            Err(e) => {
                span.record(
                    "http.status_code",
                    e.as_response_error().status_code().as_u16(),
                );
            }
        }
    }
}

/// Makes `trace`'s span (the caller's) the OpenTelemetry parent of `span`, before it starts.
/// A span that is filtered out, or a subscriber without the OpenTelemetry layer, is left alone.
#[cfg(feature = "otel")]
fn set_remote_parent(span: &Span, trace: &TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(trace.trace_id()),
        SpanId::from_hex(trace.parent_id()),
    ) else {
        return;
    };
    let parent = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(trace.flags()),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// Records the tenant on the request's root span.
pub(crate) fn record_tenant(req: &HttpRequest, tenant: &str) {
    crate::access::note_tenant(req, tenant);
    if let Some(span) = req.extensions().get::<tracing_actix_web::RootSpan>() {
        span.record("tenant.id", tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked_before_echoing() {
        assert!(is_valid_request_id("abc-123_x.y:z"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("a b"));
        assert!(!is_valid_request_id(&"a".repeat(129)));
        assert!(!is_valid_request_id("ü"));
    }
}
