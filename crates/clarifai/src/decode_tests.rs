use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
struct Apps {
    apps: Vec<AppShape>,
}

#[derive(Debug, Deserialize)]
struct AppShape {
    id: String,
}

fn no_headers() -> HeaderMap {
    HeaderMap::new()
}

fn err(http: u16, body: &str) -> ClarifaiError {
    match decode::<Apps>(http, &no_headers(), body.as_bytes()) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn success_decodes_the_body() {
    let body =
        br#"{"status":{"code":10000,"description":"Ok","req_id":"r1"},"apps":[{"id":"a1","x":1}]}"#;
    let apps = decode::<Apps>(200, &no_headers(), body).unwrap();
    assert_eq!(apps.apps[0].id, "a1");
}

#[test]
fn string_codes_are_mapped_by_name() {
    let e = err(
        429,
        r#"{"status":{"code":"CONN_THROTTLED","description":"Making too many requests"}}"#,
    );
    assert_eq!((e.kind, e.code), (ErrorKind::Throttled, Some(11005)));
    assert_eq!(code_from_name("conn_key_not_found"), Some(11009));
    assert_eq!(code_from_name("40010"), Some(40010));
    assert_eq!(code_from_name("NO_SUCH_CODE"), None);
}

#[test]
fn the_code_is_the_truth_and_http_a_hint() {
    // A 200 carrying an error code is an error.
    let e = err(200, r#"{"status":{"code":11101,"description":"gone"}}"#);
    assert_eq!(e.kind, ErrorKind::NotFound);
    // A 400 carrying the duplicate code is "already exists".
    let e = err(
        400,
        r#"{"status":{"code":40010,"description":"dup","details":"id taken","req_id":"q"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    assert_eq!(e.message, "dup: id taken");
    assert_eq!(e.req_id.as_deref(), Some("q"));
    // Unknown codes fall back on the HTTP status.
    assert_eq!(
        err(409, r#"{"status":{"code":12345}}"#).kind,
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        err(503, r#"{"status":{"code":10000}}"#).kind,
        ErrorKind::UpstreamInternal
    );
}

#[test]
fn classification_table() {
    let cases = [
        (Some(11008), 401, ErrorKind::Unauthenticated),
        (Some(11009), 401, ErrorKind::Unauthenticated),
        (Some(11002), 400, ErrorKind::Unauthenticated),
        (Some(11102), 401, ErrorKind::Unauthenticated),
        (Some(11102), 400, ErrorKind::InvalidRequest),
        (Some(11007), 403, ErrorKind::Forbidden),
        (Some(11000), 400, ErrorKind::Forbidden),
        (Some(11101), 404, ErrorKind::NotFound),
        (Some(40010), 409, ErrorKind::AlreadyExists),
        (Some(11100), 400, ErrorKind::InvalidRequest),
        (Some(40017), 400, ErrorKind::InvalidRequest),
        (Some(21200), 400, ErrorKind::InvalidRequest),
        (Some(22104), 400, ErrorKind::InvalidRequest),
        (Some(11005), 429, ErrorKind::Throttled),
        (Some(11003), 400, ErrorKind::Throttled),
        (Some(98004), 500, ErrorKind::UpstreamInternal),
        (Some(10020), 500, ErrorKind::UpstreamInternal),
        (Some(10030), 200, ErrorKind::UpstreamInternal),
        (Some(40031), 503, ErrorKind::UpstreamInternal),
        (Some(41000), 503, ErrorKind::UpstreamInternal),
        (Some(39997), 503, ErrorKind::UpstreamInternal),
        (None, 401, ErrorKind::Unauthenticated),
        (None, 403, ErrorKind::Forbidden),
        (None, 404, ErrorKind::NotFound),
        (None, 409, ErrorKind::AlreadyExists),
        (None, 422, ErrorKind::InvalidRequest),
        (None, 429, ErrorKind::Throttled),
        (None, 502, ErrorKind::UpstreamInternal),
        (None, 200, ErrorKind::Protocol),
    ];
    for (code, http, kind) in cases {
        assert_eq!(classify(code, http), kind, "code {code:?} http {http}");
    }
}

#[test]
fn html_503_is_retryable_upstream_unavailability() {
    let e = err(
        503,
        "<html><body><h1>503 Service Unavailable</h1></body></html>",
    );
    assert_eq!(e.kind, ErrorKind::UpstreamInternal);
    assert!(e.kind.is_retryable());
    assert!(e.message.contains("non-JSON"));
}

#[test]
fn bad_bodies_on_2xx_are_protocol_errors() {
    assert_eq!(
        err(200, r#"{"status":{"code":10000},"apps":[{"id""#).kind,
        ErrorKind::Protocol
    );
    assert_eq!(
        err(200, r#"{"status":{"code":10000},"apps":[{"name":"x"}]}"#).kind,
        ErrorKind::Protocol
    );
    assert_eq!(err(200, r#"{"apps":[]}"#).kind, ErrorKind::Protocol);
    assert_eq!(err(200, r#"{"status":"ok"}"#).kind, ErrorKind::Protocol);
    assert_eq!(err(200, "").kind, ErrorKind::Protocol);
    assert_eq!(err(200, "[1,2]").kind, ErrorKind::Protocol);
}

#[test]
fn shape_errors_do_not_echo_values() {
    let e = err(
        200,
        r#"{"status":{"code":10000},"apps":[{"id":12345678901}]}"#,
    );
    assert!(!e.message.contains("12345678901"), "{}", e.message);
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
    let d = retry_after(&h).unwrap();
    assert!(
        d > Duration::from_secs(100) && d <= Duration::from_secs(120),
        "{d:?}"
    );
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(retry_after(&h), Some(Duration::ZERO));
    h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(retry_after(&h), None);
    h.insert(RETRY_AFTER, HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    assert_eq!(retry_after(&h), None);
}

#[test]
fn messages_are_truncated() {
    let long = "x".repeat(5000);
    let e = err(
        500,
        &format!(r#"{{"status":{{"code":98004,"description":"{long}"}}}}"#),
    );
    assert!(e.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
}

/// JSON-ish values, biased towards the shapes of the API (status objects, codes as numbers
/// and strings, lists of apps and keys with missing or mistyped fields).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(10000u32),
            Just(11005),
            Just(11101),
            Just(40010),
            0u32..100_000
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just("CONN_THROTTLED".to_owned()),
            Just("SUCCESS".to_owned()),
            ".{0,20}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("status".to_owned()),
            Just("code".to_owned()),
            Just("description".to_owned()),
            Just("details".to_owned()),
            Just("req_id".to_owned()),
            Just("apps".to_owned()),
            Just("id".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn headers_from(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        h.append(n, v);
    }
    h
}

fn header_pairs() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![Just("retry-after".to_owned()), "[a-z-]{1,12}"];
    let value = prop_oneof![
        any::<u32>().prop_map(|n| n.to_string().into_bytes()),
        Just(b"Wed, 21 Oct 2015 07:28:00 GMT".to_vec()),
        Just(b"Fri, 31 Dec 9999 23:59:59 GMT".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec((name, value), 0..4)
}

fn assert_typed(r: Result<Apps, ClarifaiError>) {
    if let Err(e) = r {
        assert!(e.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(!e.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic(http in any::<u16>(), hs in header_pairs(), body in prop::collection::vec(any::<u8>(), 0..300)) {
        assert_typed(decode::<Apps>(http, &headers_from(&hs), &body));
    }

    #[test]
    fn arbitrary_json_never_panics(http in prop_oneof![Just(200u16), Just(404), Just(429), Just(503), 100u16..600], hs in header_pairs(), v in json_value()) {
        let body = serde_json::to_vec(&v).unwrap();
        assert_typed(decode::<Apps>(http, &headers_from(&hs), &body));
        // Truncated JSON too.
        let cut = body.len() / 2;
        assert_typed(decode::<Apps>(http, &headers_from(&hs), &body[..cut]));
    }

    #[test]
    fn status_objects_with_arbitrary_codes_classify(http in any::<u16>(), code in json_value(), success_shape in any::<bool>()) {
        let mut body = serde_json::json!({"status": {"code": code, "description": "d"}});
        if success_shape {
            body["apps"] = serde_json::json!([{"id": "a"}]);
        }
        assert_typed(decode::<Apps>(http, &HeaderMap::new(), &serde_json::to_vec(&body).unwrap()));
    }
}

#[test]
fn a_secret_across_the_cut_is_removed_whole() {
    let secret = "pat-0123456789abcdef0123456789";
    // The secret starts a few characters before the message is cut to length.
    let message = format!("{}{secret} is not valid", "x".repeat(MAX_MESSAGE_CHARS - 6));
    let body =
        format!(r#"{{"status":{{"code":11008,"description":"{message}","req_id":"{secret}"}}}}"#);
    let e = decode_scrubbed::<Apps>(401, &no_headers(), body.as_bytes(), &[secret]).unwrap_err();
    assert!(!e.message.contains("pat-"), "{}", e.message);
    assert!(e.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    assert_eq!(e.req_id.as_deref(), Some("[REDACTED]"));
    // Cut first and scrubbed after (the order before), the secret's start stays.
    let late = decode::<Apps>(401, &no_headers(), body.as_bytes())
        .unwrap_err()
        .scrub(&[secret]);
    assert!(late.message.contains("pat-"), "{}", late.message);
}
