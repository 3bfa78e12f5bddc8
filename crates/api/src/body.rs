//! JSON request bodies and the extractor error handlers.
//!
//! [`JsonBody`] reads at most the configured limit (413 `payload_too_large` beyond it, checked
//! on `Content-Length` first and again while reading), and turns malformed JSON, wrong types
//! and unknown fields into 400 `invalid_request`. [`OptionalJsonBody`] also accepts an empty
//! body (the type's default). Bodies are never logged. The handlers installed by
//! [`extractor_configs`] make actix's own `Path`, `Query` and `Json` extractors answer with the
//! same problem bodies.

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt as _;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// Largest accepted request body, in bytes (app data).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A JSON body that must be present.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A JSON body that may be empty (then `T::default()`).
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

/// Reads a whole body, at most the configured [`BodyLimit`] (413 beyond it).
pub(crate) async fn read(req: &HttpRequest, payload: &mut Payload) -> Result<web::Bytes, ApiError> {
    let limit = req
        .app_data::<BodyLimit>()
        .copied()
        .unwrap_or(BodyLimit(1 << 20))
        .0;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("the request body could not be read"))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::invalid("Content-Type must be application/json"))
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of this API is a JSON object: serde would also read a struct from an array
    // (`[]` for a body whose fields are all optional), which the schema does not allow.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid("the JSON body must be an object"));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let bytes = read(&req, &mut payload).await?;
            if is_blank(&bytes) {
                return Err(ApiError::invalid("a JSON request body is required"));
            }
            check_content_type(&req)?;
            parse(&bytes).map(JsonBody)
        })
    }
}

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let bytes = read(&req, &mut payload).await?;
            if is_blank(&bytes) {
                return Ok(OptionalJsonBody(T::default()));
            }
            check_content_type(&req)?;
            parse(&bytes).map(OptionalJsonBody)
        })
    }
}

/// `Path`, `Query` and `Json` configs whose errors are problem details (400, or 413).
pub fn extractor_configs(cfg: &mut web::ServiceConfig, limit: usize) {
    cfg.app_data(BodyLimit(limit))
        .app_data(web::PathConfig::default().error_handler(|e: PathError, _| {
            ApiError::invalid(format!("invalid path parameter: {e}")).into()
        }))
        .app_data(
            web::QueryConfig::default().error_handler(|e: QueryPayloadError, _| {
                ApiError::invalid(format!("invalid query string: {e}")).into()
            }),
        )
        .app_data(web::JsonConfig::default().limit(limit).error_handler(
            |e: JsonPayloadError, _| match e {
                JsonPayloadError::Overflow { limit }
                | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                    ApiError::PayloadTooLarge { limit }.into()
                }
                other => ApiError::invalid(format!("invalid JSON body: {other}")).into(),
            },
        ));
}
