//! The one place where an HTTP answer becomes a typed result. `status.code` in the body is the
//! truth and the HTTP status a hint; nothing the upstream sends can make this panic.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ClarifaiError, ErrorKind, MAX_MESSAGE_CHARS, redact, truncate};

/// `status.code` of a successful answer.
pub const SUCCESS: u32 = 10000;

/// Names of the status codes the provisioner meets (docs/upstream.md, "Status codes"), for answers that
/// send `"code": "CONN_THROTTLED"` instead of a number.
const CODE_NAMES: &[(&str, u32)] = &[
    ("SUCCESS", 10000),
    ("MIXED_STATUS", 10010),
    ("FAILURE", 10020),
    ("TRY_AGAIN", 10030),
    ("NOT_IMPLEMENTED", 10040),
    ("MOVED", 10050),
    ("ACCEPTED", 10070),
    ("CONN_ACCOUNT_ISSUES", 11000),
    ("CONN_TOKEN_INVALID", 11001),
    ("CONN_CREDENTIALS_INVALID", 11002),
    ("CONN_EXCEED_HOURLY_LIMIT", 11003),
    ("CONN_EXCEED_MONTHLY_LIMIT", 11004),
    ("CONN_THROTTLED", 11005),
    ("CONN_EXCEEDS_LIMITS", 11006),
    ("CONN_INSUFFICIENT_SCOPES", 11007),
    ("CONN_KEY_INVALID", 11008),
    ("CONN_KEY_NOT_FOUND", 11009),
    ("CONN_BAD_REQUEST_FORMAT", 11100),
    ("CONN_DOES_NOT_EXIST", 11101),
    ("CONN_INVALID_REQUEST", 11102),
    ("CONN_METHOD_NOT_ALLOWED", 11103),
    ("CONN_NO_GDPR_CONSENT", 11104),
    ("CONN_INVALID_RANGE", 11105),
    ("CONN_AUTH_METHOD_DISABLED", 11200),
    ("MODEL_DOES_NOT_EXIST", 21200),
    ("MODEL_PERMISSION_DENIED", 21201),
    ("MODEL_INVALID_ARGUMENT", 21202),
    ("MODEL_INVALID_REQUEST", 21203),
    ("WORKFLOW_DOES_NOT_EXIST", 22102),
    ("WORKFLOW_PERMISSION_DENIED", 22103),
    ("WORKFLOW_INVALID_ARGUMENT", 22104),
    ("REQUEST_DISABLED_FOR_MAINTENANCE", 39997),
    ("DATABASE_DUPLICATE_KEY", 40010),
    ("DATABASE_CONSTRAINT_VIOLATED", 40017),
    ("RPC_REQUEST_QUEUE_FULL", 40030),
    ("RPC_SERVER_UNAVAILABLE", 40031),
    ("RPC_REQUEST_TIMEOUT", 40032),
    ("RPC_MAX_MESSAGE_SIZE_EXCEEDED", 40033),
    ("EXTERNAL_CONNECTION_ERROR", 40034),
    ("QUEUE_CONN_ERROR", 41000),
    ("AUTH_MISSING_IDP_ASSOC", 65000),
    ("BILLING_INVALID_INFO", 69000),
    ("BILLING_MISSING_TOKENS", 69001),
    ("INTERNAL_SERVER_ISSUE", 98004),
    ("INTERNAL_FETCHING_ISSUE", 98005),
    ("INTERNAL_DATABASE_ISSUE", 98006),
    ("INTERNAL_CONTEXT_CANCELED", 98008),
    ("INTERNAL_UNEXPECTED_TIMEOUT", 98009),
    ("INTERNAL_UNEXPECTED_PANIC", 98011),
    ("INTERNAL_REDIS_UNAVAILABLE", 98013),
    ("INTERNAL_RESOURCE_EXHAUSTED", 98014),
    ("CONN_UNCATEGORIZED", 99001),
    ("INTERNAL_UNCATEGORIZED", 99009),
    ("BAD_REQUEST", 90400),
    ("SERVER_ERROR", 90500),
];

/// The number of a status code given by name (or as a string of digits).
pub fn code_from_name(name: &str) -> Option<u32> {
    let name = name.trim();
    CODE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
        .or_else(|| name.parse().ok())
}

/// Classifies a failure from its `status.code` (the truth, when known) and HTTP status.
pub fn classify(code: Option<u32>, http: u16) -> ErrorKind {
    let by_code = match code {
        Some(11001 | 11002 | 11008 | 11009) => Some(ErrorKind::Unauthenticated),
        Some(11102) if http == 401 => Some(ErrorKind::Unauthenticated),
        Some(11000 | 11007 | 11200 | 65000) => Some(ErrorKind::Forbidden),
        Some(11101) => Some(ErrorKind::NotFound),
        Some(40010) => Some(ErrorKind::AlreadyExists),
        Some(11003 | 11005) => Some(ErrorKind::Throttled),
        Some(11004 | 11006 | 11100 | 11102..=11105 | 40017 | 69000 | 69001 | 90400) => {
            Some(ErrorKind::InvalidRequest)
        }
        Some(21000..=22999) => Some(ErrorKind::InvalidRequest),
        Some(10020 | 10030 | 39997 | 40030..=40034 | 41000 | 90500 | 99009) => {
            Some(ErrorKind::UpstreamInternal)
        }
        Some(98000..=98999) => Some(ErrorKind::UpstreamInternal),
        _ => None,
    };
    by_code.unwrap_or(match http {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::AlreadyExists,
        408 => ErrorKind::Timeout,
        429 => ErrorKind::Throttled,
        400..=499 => ErrorKind::InvalidRequest,
        500..=599 => ErrorKind::UpstreamInternal,
        // A 2xx (or 1xx/3xx) carrying a code that is neither success nor known.
        _ => ErrorKind::Protocol,
    })
}

/// The pause asked for by `Retry-After`: delay-seconds or an HTTP date (zero if past).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Decodes one answer. Success is HTTP 2xx with `status.code` 10000 and a body of shape `T`;
/// everything else is a [`ClarifaiError`] carrying what is known. Never panics.
pub fn decode<T: DeserializeOwned>(
    http: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ClarifaiError> {
    decode_scrubbed(http, headers, body, &[])
}

/// [`decode`], with `secrets` removed from the upstream's message and request id before they
/// are cut to length: a secret across the cut would otherwise leave its first characters.
pub(crate) fn decode_scrubbed<T: DeserializeOwned>(
    http: u16,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Result<T, ClarifaiError> {
    let ok_http = (200..300).contains(&http);
    let retry_after = retry_after(headers);
    let fail = |kind: ErrorKind, code: Option<u32>, message: String, req_id: Option<String>| {
        ClarifaiError {
            kind,
            http_status: Some(http),
            code,
            message: truncate(&redact(&message, secrets), MAX_MESSAGE_CHARS),
            req_id: req_id.map(|r| truncate(&redact(&r, secrets), 64)),
            retry_after,
            request_sent: true,
            ambiguous: false,
        }
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let kind = if ok_http {
                ErrorKind::Protocol
            } else {
                classify(None, http)
            };
            return Err(fail(
                kind,
                None,
                non_json_message(http, body.len(), &e),
                None,
            ));
        }
    };
    let status = value.get("status").filter(|s| s.is_object());
    let code = status.and_then(|s| s.get("code")).and_then(|c| match c {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => code_from_name(s),
        _ => None,
    });
    let req_id = status
        .and_then(|s| s.get("req_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if ok_http && code == Some(SUCCESS) {
        return serde_json::from_value(value).map_err(|e| {
            let msg = format!(
                "answer does not have the expected shape ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            );
            fail(ErrorKind::Protocol, code, msg, req_id.clone())
        });
    }
    let kind = match (status, code) {
        (None, _) if ok_http => ErrorKind::Protocol,
        (Some(_), None) if ok_http => ErrorKind::Protocol,
        (_, Some(SUCCESS)) => classify(None, http),
        _ => classify(code, http),
    };
    Err(fail(kind, code, status_message(status, http), req_id))
}

fn non_json_message(http: u16, len: usize, e: &serde_json::Error) -> String {
    let what = if len == 0 {
        "an empty body".to_owned()
    } else {
        format!("a non-JSON body of {len} bytes")
    };
    let class = if e.is_eof() { ", truncated" } else { "" };
    format!("http {http} with {what}{class}")
}

fn status_message(status: Option<&Value>, http: u16) -> String {
    let text = |k: &str| {
        status
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("")
    };
    let (description, details) = (text("description"), text("details"));
    match (description.is_empty(), details.is_empty()) {
        (true, true) => format!("http {http} without a description"),
        (false, true) => description.to_owned(),
        (true, false) => details.to_owned(),
        (false, false) => format!("{description}: {details}"),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
