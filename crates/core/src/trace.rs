//! W3C Trace Context (`traceparent`): the trace a request belongs to, carried from the caller
//! through the service to the upstream.
//!
//! The API takes a valid incoming `traceparent` (or starts a trace when there is none or it is
//! malformed), runs the request in [`scope`], and logs the trace id; the upstream client sends
//! [`TraceContext::child_header`] on each call made within the scope, so the upstream's own
//! traces join the caller's. Work a background worker does has no trace.

use std::future::Future;

/// One request's trace: the trace id and the flags (sampled or not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    parent_id: String,
    flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    loop {
        out.clear();
        for b in uuid::Uuid::new_v4().as_bytes().iter().take(bytes) {
            out.push_str(&format!("{b:02x}"));
        }
        // All zeros is invalid in both fields.
        if out.bytes().any(|b| b != b'0') {
            return out;
        }
    }
}

impl TraceContext {
    /// A `traceparent` header value, if valid: `00-<32 hex>-<16 hex>-<2 hex>` (lowercase, ids
    /// not all zeros; a later version may append fields, version `ff` is invalid).
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.splitn(5, '-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        if !is_lower_hex(version, 2) || version == "ff" {
            return None;
        }
        if version == "00" && rest.is_some() {
            return None;
        }
        if !is_lower_hex(trace_id, 32)
            || !is_lower_hex(parent_id, 16)
            || !is_lower_hex(flags, 2)
            || trace_id.bytes().all(|b| b == b'0')
            || parent_id.bytes().all(|b| b == b'0')
        {
            return None;
        }
        Some(Self {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// A new trace (sampled), for a request that came without one.
    pub fn generate() -> Self {
        Self {
            trace_id: random_hex(16),
            parent_id: random_hex(8),
            flags: 1,
        }
    }

    /// The 32-hex trace id.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The caller's span id (16 hex) this request's work is a child of.
    pub fn parent_id(&self) -> &str {
        &self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// A `traceparent` for an outgoing call: the same trace, a new span id, the same flags.
    pub fn child_header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, random_hex(8), self.flags)
    }
}

/// Runs `f` with `ctx` as the current trace.
pub async fn scope<F: Future>(ctx: TraceContext, f: F) -> F::Output {
    CURRENT.scope(ctx, f).await
}

/// The current trace, inside [`scope`].
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_headers_parse_and_invalid_ones_do_not() {
        let t = TraceContext::parse(VALID).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id(), "00f067aa0ba902b7");
        // A later version may carry more fields.
        assert!(TraceContext::parse(&format!("01{}-extra", &VALID[2..])).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn children_keep_the_trace_and_flags_with_a_new_span() {
        let t = TraceContext::parse(VALID).unwrap();
        let child = TraceContext::parse(&t.child_header()).unwrap();
        assert_eq!(child.trace_id(), t.trace_id());
        assert_ne!(child.parent_id(), t.parent_id());
        assert!(t.child_header().ends_with("-01"));
        let g = TraceContext::generate();
        assert!(TraceContext::parse(&g.child_header()).is_some());
    }

    #[tokio::test]
    async fn the_scope_is_seen_inside_and_not_outside() {
        let t = TraceContext::generate();
        assert!(current().is_none());
        let seen = scope(t.clone(), async { current() }).await;
        assert_eq!(seen, Some(t));
    }
}
