//! Fault injection: latency, error answers, hangs and commit-then-drop on `/v2` routes.
//!
//! One middleware wraps the app. For each `/v2` request it counts the request, sleeps the
//! configured latency, then draws at most one fault from a seedable RNG. Admin routes
//! (`/_sim/...`) are never touched.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{Error, HttpResponse};

use crate::config::Faults;
use crate::errors::ApiError;
use crate::shared::{Shared, lock};

/// The HTML page of an injected 503, as a load balancer would send it.
pub const HTML_503: &str = "<html><body><h1>503 Service Unavailable</h1></body></html>";

/// The kinds of injected fault, in decision order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Error500,
    Html503,
    Throttled429RetryAfter,
    Throttled429,
    Hang,
    CommitDrop,
}

const KINDS: [FaultKind; 6] = [
    FaultKind::Error500,
    FaultKind::Html503,
    FaultKind::Throttled429RetryAfter,
    FaultKind::Throttled429,
    FaultKind::Hang,
    FaultKind::CommitDrop,
];

/// The fault settings and their RNG.
pub(crate) struct FaultEngine {
    faults: Faults,
    rng: fastrand::Rng,
}

impl FaultEngine {
    pub(crate) fn new(faults: Faults) -> Self {
        let rng = faults
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Self { faults, rng }
    }

    /// Replaces the settings; a seed restarts the RNG from it.
    pub(crate) fn set(&mut self, faults: Faults) {
        *self = Self::new(faults);
    }

    pub(crate) fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Latency for this request and the fault to inject, if any.
    pub(crate) fn draw(&mut self) -> (Duration, Option<FaultKind>) {
        let f = &self.faults;
        let jitter = match f.latency_jitter_ms {
            0 => 0,
            j => self.rng.u64(0..=j),
        };
        let delay = Duration::from_millis(f.latency_ms.saturating_add(jitter));
        let r = self.rng.f64();
        let mut acc = 0.0;
        for (p, kind) in f.probabilities().into_iter().zip(KINDS) {
            acc += p;
            if r < acc {
                return (delay, Some(kind));
            }
        }
        (delay, None)
    }
}

/// The middleware: see the module docs. Logs one line per request with the route *pattern*
/// (never the path, which may hold a key id).
pub(crate) async fn inject(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let res = inject_inner(req, next).await;
    if let Ok(r) = &res {
        tracing::info!(
            method = %method,
            route = r.request().match_pattern().as_deref().unwrap_or("-"),
            status = r.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    res
}

async fn inject_inner(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let shared = req.app_data::<web::Data<Shared>>().cloned();
    let Some(shared) = shared.filter(|_| req.path().starts_with("/v2")) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    shared
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(tp) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        let mut log = lock(&shared.traceparents);
        if log.len() >= crate::shared::TRACE_LOG {
            log.pop_front();
        }
        log.push_back(tp.to_owned());
    }
    let (delay, fault, settings) = {
        let mut engine = lock(&shared.faults);
        let (delay, fault) = engine.draw();
        (delay, fault, engine.faults())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Some(fault) = fault else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    tracing::info!(fault = ?fault, method = %req.method(), "injecting fault");
    let limit = lock(&shared.limiter).limit().unwrap_or(15);
    let throttled = || ApiError::throttled(limit, shared.throttle_code_as_name()).response();
    let early = match fault {
        FaultKind::Error500 => {
            shared.count(|c| &mut c.error_500);
            ApiError::internal().response()
        }
        FaultKind::Html503 => {
            shared.count(|c| &mut c.html_503);
            HttpResponse::ServiceUnavailable()
                .content_type("text/html")
                .body(HTML_503)
        }
        FaultKind::Throttled429RetryAfter => {
            shared.count(|c| &mut c.throttled_retry_after);
            let mut res = throttled();
            let secs = settings.effective_retry_after_secs().to_string();
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&secs) {
                res.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
            res
        }
        FaultKind::Throttled429 => {
            shared.count(|c| &mut c.throttled);
            throttled()
        }
        FaultKind::Hang => {
            shared.count(|c| &mut c.hang);
            tokio::time::sleep(Duration::from_millis(settings.effective_hang_ms())).await;
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body);
        }
        FaultKind::CommitDrop => {
            shared.count(|c| &mut c.commit_drop);
            let res = next.call(req).await?;
            let (req, _applied) = res.into_parts();
            return Ok(ServiceResponse::new(req, dropped_response()));
        }
    };
    Ok(req.into_response(early))
}

/// A response whose body fails on its first poll. actix-http then closes the connection before
/// flushing the status line, so the client sees a dropped connection and no answer at all.
fn dropped_response() -> HttpResponse {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("commit-then-drop fault"))
    });
    HttpResponse::Ok().streaming(failing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let draws = |seed| {
            let mut e = FaultEngine::new(Faults::mixed(0.5, seed));
            (0..200).map(|_| e.draw().1).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        let hits = draws(3).iter().filter(|f| f.is_some()).count();
        assert!((60..140).contains(&hits), "about half: {hits}");
    }

    #[test]
    fn probability_one_always_injects_that_kind() {
        let mut e = FaultEngine::new(Faults {
            p_hang: 1.0,
            ..Faults::none()
        });
        assert!((0..50).all(|_| e.draw().1 == Some(FaultKind::Hang)));
        let mut none = FaultEngine::new(Faults::none());
        assert!((0..50).all(|_| none.draw() == (Duration::ZERO, None)));
    }

    #[test]
    fn jitter_stays_in_range() {
        let faults = Faults {
            latency_ms: 5,
            latency_jitter_ms: 10,
            seed: Some(1),
            ..Faults::none()
        };
        let mut e = FaultEngine::new(faults);
        for _ in 0..100 {
            let (d, _) = e.draw();
            assert!((5..=15).contains(&d.as_millis()));
        }
    }
}
