//! The Clarifai `status` envelope and the errors the simulator answers with.
//!
//! Every answer of a `/v2` route carries `{"status": {"code", "description", "req_id"}}`, errors
//! included (docs/upstream.md). Where the upstream HTTP status is unconfirmed the
//! choice made here is documented on the constructor.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Value, json};

/// `SUCCESS`.
pub const SUCCESS: u32 = 10000;
/// `CONN_THROTTLED`.
pub const CONN_THROTTLED: u32 = 11005;
/// `CONN_INSUFFICIENT_SCOPES`.
pub const CONN_INSUFFICIENT_SCOPES: u32 = 11007;
/// `CONN_KEY_INVALID`.
pub const CONN_KEY_INVALID: u32 = 11008;
/// `CONN_KEY_NOT_FOUND`.
pub const CONN_KEY_NOT_FOUND: u32 = 11009;
/// `CONN_BAD_REQUEST_FORMAT`.
pub const CONN_BAD_REQUEST_FORMAT: u32 = 11100;
/// `CONN_DOES_NOT_EXIST`.
pub const CONN_DOES_NOT_EXIST: u32 = 11101;
/// `CONN_INVALID_REQUEST`.
pub const CONN_INVALID_REQUEST: u32 = 11102;
/// `DATABASE_DUPLICATE_KEY`.
pub const DATABASE_DUPLICATE_KEY: u32 = 40010;
/// `INTERNAL_SERVER_ISSUE`.
pub const INTERNAL_SERVER_ISSUE: u32 = 98004;

/// How `status.code` is written: a number (the norm) or the enum name (the rate-limit docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// `"code": 11005`.
    Number(u32),
    /// `"code": "CONN_THROTTLED"`.
    Name(&'static str),
}

/// An error answer: HTTP status plus the Clarifai status fields.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub http: StatusCode,
    /// `status.code`.
    pub code: Code,
    /// `status.description`.
    pub description: &'static str,
    /// `status.details`, safe for the client (never a secret).
    pub details: Option<String>,
}

impl ApiError {
    fn new(http: StatusCode, code: u32, description: &'static str, details: String) -> Self {
        Self {
            http,
            code: Code::Number(code),
            description,
            details: Some(details),
        }
    }

    /// Missing or malformed `Authorization` header: HTTP 401, 11102 (issue clarifai-python-grpc#26).
    pub fn malformed_auth() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            CONN_INVALID_REQUEST,
            "Invalid request",
            "Empty or malformed authorization header. Please provide an API key or session token."
                .into(),
        )
    }

    /// Unknown token: HTTP 401, 11009 (issue clarifai-python#96).
    pub fn key_not_found() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            CONN_KEY_NOT_FOUND,
            "API key not found",
            "invalid key".into(),
        )
    }

    /// A credential of the wrong kind (ListScopes with a PAT): HTTP 401, 11008.
    pub fn key_invalid(details: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            CONN_KEY_INVALID,
            "Invalid API key or Invalid API key/application pair",
            details.into(),
        )
    }

    /// An app key on a PAT-only route: HTTP 403 (upstream unconfirmed: 401 or 403), 11007.
    pub fn insufficient_scopes(details: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            CONN_INSUFFICIENT_SCOPES,
            "Insufficient scopes",
            details.into(),
        )
    }

    /// Missing resource, or a user id the caller cannot act for: HTTP 404, 11101.
    pub fn not_found(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            CONN_DOES_NOT_EXIST,
            "Resource does not exist",
            details.into(),
        )
    }

    /// A request that breaks a rule (bad id, unknown scope, ...): HTTP 400, 11102.
    pub fn invalid(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            CONN_INVALID_REQUEST,
            "Invalid request",
            details.into(),
        )
    }

    /// Body that is not JSON or not the expected shape: HTTP 400, 11100.
    pub fn bad_format(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            CONN_BAD_REQUEST_FORMAT,
            "Bad request format",
            details.into(),
        )
    }

    /// Duplicate id: HTTP 409, 40010 (upstream unconfirmed: 409 or 400).
    pub fn duplicate(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            DATABASE_DUPLICATE_KEY,
            "Object has a duplicate ID; another object with same ID already exist",
            details.into(),
        )
    }

    /// Throttled: HTTP 429, 11005, the code as a number or as the name `CONN_THROTTLED`.
    pub fn throttled(limit: u32, code_as_name: bool) -> Self {
        Self {
            http: StatusCode::TOO_MANY_REQUESTS,
            code: if code_as_name {
                Code::Name("CONN_THROTTLED")
            } else {
                Code::Number(CONN_THROTTLED)
            },
            description: "Making too many requests",
            details: Some(format!("exceeded limit of {limit} requests per second")),
        }
    }

    /// Injected server error: HTTP 500, 98004.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL_SERVER_ISSUE,
            "Internal server issue",
            "injected fault".into(),
        )
    }

    /// Unknown route: HTTP 404, 11101.
    pub fn no_route() -> Self {
        Self::not_found("no such route")
    }

    /// The JSON answer.
    pub fn response(&self) -> HttpResponse {
        let code = match &self.code {
            Code::Number(n) => json!(n),
            Code::Name(s) => json!(s),
        };
        let mut status = json!({"code": code, "description": self.description, "req_id": req_id()});
        if let (Some(d), Some(obj)) = (&self.details, status.as_object_mut()) {
            obj.insert("details".into(), Value::String(d.clone()));
        }
        HttpResponse::build(self.http).json(json!({ "status": status }))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.code, self.description)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.http
    }

    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}

/// A fresh request id: 32 lowercase hex characters.
pub fn req_id() -> String {
    hex32(&mut fastrand::Rng::new())
}

/// 32 random lowercase hex characters from `rng`.
pub fn hex32(rng: &mut fastrand::Rng) -> String {
    format!("{:032x}", rng.u128(..))
}

/// A success status object.
pub fn ok_status() -> Value {
    json!({"code": SUCCESS, "description": "Ok", "req_id": req_id()})
}

/// A success answer: `{"status": ok, ...fields}`.
pub fn ok(mut body: serde_json::Map<String, Value>) -> HttpResponse {
    body.insert("status".into(), ok_status());
    HttpResponse::Ok().json(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32_is_32_lowercase_hex_characters() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100 {
            let s = hex32(&mut rng);
            assert_eq!(s.len(), 32);
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn throttled_code_is_a_string_or_a_number() {
        assert_eq!(
            ApiError::throttled(15, true).code,
            Code::Name("CONN_THROTTLED")
        );
        assert_eq!(ApiError::throttled(15, false).code, Code::Number(11005));
    }
}
