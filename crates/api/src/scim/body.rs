//! SCIM request bodies: JSON (`application/scim+json`, `application/json` or another
//! `+json` type; a missing `Content-Type` is accepted too), at most the body limit.
//!
//! The body is kept as a JSON value: the SCIM readers pick the attributes they know and ignore
//! the rest (a `/v1` body, by contrast, rejects unknown fields). Bodies are never logged: they
//! may hold a `password` and personal data.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use serde_json::Value;

use super::error::ScimError;
use crate::problem::ApiError;

/// A JSON request body of a SCIM route.
#[derive(Debug)]
pub struct ScimBody(pub Value);

fn check_content_type(req: &HttpRequest) -> Result<(), ScimError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(
            "Content-Type must be application/scim+json or application/json",
        ))
    }
}

impl ScimBody {
    /// Reads the body in the handler, after the caller is authenticated (an extractor would be
    /// polled together with the authentication, so a body error could answer before a 401).
    pub async fn read(
        req: &HttpRequest,
        payload: actix_web::web::Payload,
    ) -> Result<Value, ScimError> {
        let mut payload = payload.into_inner();
        Self::from_request(req, &mut payload).await.map(|b| b.0)
    }
}

impl FromRequest for ScimBody {
    type Error = ScimError;
    type Future = LocalBoxFuture<'static, Result<Self, ScimError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let bytes = crate::body::read(&req, &mut payload)
                .await
                .map_err(|e| match e {
                    ApiError::PayloadTooLarge { limit } => ScimError::payload_too_large(limit),
                    _ => ScimError::invalid_syntax("the request body could not be read"),
                })?;
            check_content_type(&req)?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(ScimError::invalid_syntax("a JSON request body is required"));
            }
            // serde_json's message names a line and column, never the body's text.
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ScimError::invalid_syntax(format!("invalid JSON body: {e}")))?;
            if !value.is_object() {
                return Err(ScimError::invalid_syntax("the body must be a JSON object"));
            }
            Ok(ScimBody(value))
        })
    }
}
