//! The `Idempotency-Key` header (docs/api.md, "Retries and `Idempotency-Key`"): read and validated
//! here, the rules are core's (`provisioner_core::service` idempotency).
//!
//! A keyed request: [`read_key`] (400 `invalid_request` when malformed or repeated), then
//! `Provisioner::idempotency_begin`; a kept answer is replayed as it was (its `secret` put back
//! in the body, and a 201's `Location` recomputed); otherwise the keyed use case runs and its
//! answer is kept: 2xx and 4xx (the body without the secret, the secret sealed by core), never
//! a 5xx (a retry resumes the operation instead). Secrets are never logged.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use provisioner_core::DomainError;
use provisioner_core::idempotency::{IdempotencyKey, request_hash};
use provisioner_core::model::Actor;
use provisioner_core::secret::KeySecret;
use provisioner_core::service::{
    IdempotencyStart, IdempotencyTicket, IdempotentOperation, IdempotentRequest, Provisioner,
    ReplayedResponse,
};
use serde::Serialize;
use serde_json::Value;

use crate::problem::ApiError;

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's `Idempotency-Key`: `None` when absent; 400 when repeated, not ASCII, empty,
/// longer than 255 characters or holding a non-printable character.
pub fn read_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid("send one Idempotency-Key header"));
    }
    let s = v.to_str().map_err(|_| {
        ApiError::invalid("invalid Idempotency-Key: must be 1-255 printable ASCII characters")
    })?;
    IdempotencyKey::parse(s)
        .map(Some)
        .map_err(|e| ApiError::invalid(e.to_string()))
}

/// A keyed request's description: the SHA-256 of its canonical body (the parsed body
/// re-serialized: field order fixed, maps sorted, absent fields as their defaults, so an empty
/// body and `{}` are the same request).
pub fn keyed_request<T: Serialize>(
    key: IdempotencyKey,
    operation: IdempotentOperation,
    tenant: Option<&provisioner_core::ids::TenantId>,
    target: String,
    body: &T,
) -> Result<IdempotentRequest, ApiError> {
    let canonical = serde_json::to_vec(body)
        .map_err(|e| ApiError::Internal(format!("encoding a request body: {e}")))?;
    Ok(IdempotentRequest {
        key,
        operation,
        tenant_id: tenant.cloned(),
        target,
        request_hash: request_hash(&canonical),
    })
}

/// A rendered answer, before it is sent and kept.
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body without the secret.
    pub body: Value,
    /// The secret the body carries (added when sent, sealed when kept).
    pub secret: Option<KeySecret>,
    /// A `Location` header.
    pub location: Option<String>,
}

impl Answer {
    /// A JSON answer.
    pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<Self, ApiError> {
        Ok(Answer {
            status,
            body: serde_json::to_value(body)
                .map_err(|e| ApiError::Internal(format!("encoding a response: {e}")))?,
            secret: None,
            location: None,
        })
    }

    /// The response: the body with its secret, and the `Location` header.
    pub fn into_response(self) -> HttpResponse {
        let mut body = self.body;
        if let (Some(s), Value::Object(m)) = (&self.secret, &mut body) {
            m.insert("secret".into(), Value::String(s.expose().to_owned()));
        }
        let mut res = HttpResponse::build(self.status);
        if let Some(l) = self.location {
            res.insert_header((LOCATION, l));
        }
        res.json(body)
    }
}

/// Runs a keyed request: replays a kept answer, or runs `op` with the ticket, renders its
/// outcome with `render` and keeps the answer (2xx/4xx). `location` recomputes a replayed
/// 201's `Location` from its body.
pub async fn run_keyed<T, Fut>(
    service: &Provisioner,
    actor: &Actor,
    req: IdempotentRequest,
    op: impl FnOnce(IdempotencyTicket) -> Fut,
    render: impl FnOnce(T) -> Result<Answer, ApiError>,
    location: impl Fn(&Value) -> Option<String>,
) -> Result<HttpResponse, ApiError>
where
    Fut: std::future::Future<Output = Result<T, DomainError>>,
{
    let ticket = match service.idempotency_begin(actor, &req).await? {
        IdempotencyStart::Replay(r) => return Ok(replayed(r, &location)),
        IdempotencyStart::Proceed(t) => t,
    };
    let outcome = op(ticket.clone()).await.map_err(ApiError::from);
    let answer = outcome.and_then(render);
    let (status, body, secret) = match &answer {
        Ok(a) => (a.status, a.body.to_string(), a.secret.as_ref()),
        Err(e) => (e.status_code(), crate::problem::render(&e.problem()), None),
    };
    // A failure to keep the answer is not the caller's: the answer stands, and a repeat
    // resumes from the user's row instead of replaying.
    if let Err(e) = service
        .idempotency_complete(&ticket, status.as_u16(), body, secret)
        .await
    {
        tracing::warn!(error.message = %e, "could not keep an idempotent answer");
    }
    match answer {
        Ok(a) => Ok(a.into_response()),
        Err(e) => Err(e),
    }
}

fn replayed(r: ReplayedResponse, location: &impl Fn(&Value) -> Option<String>) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let Ok(body) = serde_json::from_str::<Value>(&r.body) else {
        return HttpResponse::build(status).body(r.body);
    };
    if status.is_client_error() {
        // A kept problem: re-sent as it was (the request-id middleware stamps this request's
        // id on it).
        let problem = serde_json::from_value::<crate::problem::Problem>(body.clone()).ok();
        let mut res = HttpResponse::build(status);
        res.insert_header((
            actix_web::http::header::CONTENT_TYPE,
            crate::problem::PROBLEM_JSON,
        ));
        let mut res = res.body(body.to_string());
        if let Some(p) = problem {
            res.extensions_mut().insert(p);
        }
        return res;
    }
    Answer {
        status,
        location: matches!(status, StatusCode::CREATED | StatusCode::ACCEPTED)
            .then(|| location(&body))
            .flatten(),
        body,
        secret: r.secret,
    }
    .into_response()
}
