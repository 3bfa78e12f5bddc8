//! The client's error: one kind that tells the caller what to do next, plus what the upstream
//! said (without secrets).

use std::fmt;
use std::time::Duration;

/// Longest description kept from an upstream answer or a transport error, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// What went wrong, classified by what the caller can do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The credential is missing, malformed or unknown (11008, 11009, 11002, HTTP 401).
    Unauthenticated,
    /// The credential is valid but may not do this (11007 insufficient scopes, 11000 account
    /// issues, HTTP 403).
    Forbidden,
    /// The resource (or the user in the path) does not exist (11101, HTTP 404).
    NotFound,
    /// An object with this id exists already (40010, HTTP 409).
    AlreadyExists,
    /// The upstream refused the request itself; repeating it will not help (11100, 11102,
    /// 40017, 21xxx, 22xxx, quota codes, other 4xx).
    InvalidRequest,
    /// Too many requests (11005, 11003, HTTP 429); retried after a pause.
    Throttled,
    /// The upstream failed (5xx, 98xxx, 10020, 10030, 40030-40034, 41000, 39997), including an
    /// HTML error page from a proxy in front of it; retried.
    UpstreamInternal,
    /// No answer: the connection could not be made, or broke.
    Transport,
    /// No complete answer within the attempt's time limit.
    Timeout,
    /// An answer that is not what the API defines (not JSON, truncated, missing fields).
    Protocol,
    /// Not sent: the account's request budget had no slot within the wait allowed (busy
    /// with other work). Not retried here: the caller defers the work.
    Busy,
}

impl ErrorKind {
    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::UpstreamInternal
                | ErrorKind::Transport
                | ErrorKind::Timeout
                | ErrorKind::Protocol
        )
    }

    /// A short stable name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Throttled => "throttled",
            ErrorKind::UpstreamInternal => "upstream_internal",
            ErrorKind::Transport => "transport",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Busy => "busy",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call to the Clarifai API. Never holds a secret: messages from the upstream are
/// truncated and scrubbed of the PAT and key ids before they get here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClarifaiError {
    /// The classification.
    pub kind: ErrorKind,
    /// HTTP status of the answer, if one came.
    pub http_status: Option<u16>,
    /// `status.code` of the answer, if it had one (string names are mapped to numbers).
    pub code: Option<u32>,
    /// What went wrong: the upstream's description and details, or the transport failure.
    pub message: String,
    /// The upstream's request id, for support.
    pub req_id: Option<String>,
    /// The pause asked for with `Retry-After`, uncapped.
    pub retry_after: Option<Duration>,
    /// Whether the request may have reached the upstream (false only when it certainly did
    /// not, e.g. the connection could not be opened).
    pub request_sent: bool,
    /// Set on the final error of a write: the operation may have taken effect upstream even
    /// though no success was seen (a timeout after sending, a dropped connection, a 5xx).
    pub ambiguous: bool,
}

impl ClarifaiError {
    /// An error of `kind` with a message and nothing else known.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            http_status: None,
            code: None,
            message: truncate(&message.into(), MAX_MESSAGE_CHARS),
            req_id: None,
            retry_after: None,
            request_sent: true,
            ambiguous: false,
        }
    }

    /// Whether this failure leaves open that a write took effect upstream.
    pub fn may_have_applied(&self) -> bool {
        self.request_sent
            && matches!(
                self.kind,
                ErrorKind::UpstreamInternal
                    | ErrorKind::Transport
                    | ErrorKind::Timeout
                    | ErrorKind::Protocol
            )
    }

    /// Replaces every occurrence of each secret in the message and request id.
    pub(crate) fn scrub(mut self, secrets: &[&str]) -> Self {
        self.message = redact(&self.message, secrets);
        self.req_id = self.req_id.map(|r| redact(&r, secrets));
        self
    }
}

impl fmt::Display for ClarifaiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "clarifai {}: {}", self.kind, self.message)?;
        if let Some(s) = self.http_status {
            write!(f, " (http {s}")?;
        } else {
            f.write_str(" (no http answer")?;
        }
        if let Some(c) = self.code {
            write!(f, ", code {c}")?;
        }
        if let Some(r) = &self.req_id {
            write!(f, ", req_id {r}")?;
        }
        if self.ambiguous {
            f.write_str(", may have taken effect upstream")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ClarifaiError {}

/// The first `max` characters of `s`, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// `s` with each non-empty secret replaced by `[REDACTED]`.
pub(crate) fn redact(s: &str, secrets: &[&str]) -> String {
    let mut out = s.to_owned();
    for secret in secrets.iter().filter(|x| !x.is_empty()) {
        if out.contains(secret) {
            out = out.replace(secret, "[REDACTED]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_and_truncate_cuts_on_chars() {
        let mut e = ClarifaiError::new(
            ErrorKind::Unauthenticated,
            "invalid key(pat-123) for pat-123",
        );
        e.req_id = Some("r-pat-123".into());
        let e = e.scrub(&["pat-123", ""]);
        assert_eq!(e.message, "invalid key([REDACTED]) for [REDACTED]");
        assert_eq!(e.req_id.as_deref(), Some("r-[REDACTED]"));
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn display_names_kind_status_and_code() {
        let mut e = ClarifaiError::new(ErrorKind::Throttled, "slow down");
        e.http_status = Some(429);
        e.code = Some(11005);
        assert_eq!(
            e.to_string(),
            "clarifai throttled: slow down (http 429, code 11005)"
        );
    }
}
