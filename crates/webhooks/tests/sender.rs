//! `HttpWebhookSender` against a loopback receiver (a raw `TcpListener`): signatures checked
//! with the `standardwebhooks` crate, status mapping, timeouts, redirects, and refused targets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use provisioner_core::ports::WebhookSender;
use provisioner_core::webhooks::{SendResult, WebhookRequest};
use provisioner_webhooks::{HttpWebhookSender, SenderConfig, new_secret};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use standardwebhooks::Webhook;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the receiver answers.
#[derive(Clone)]
enum Reply {
    /// This status, with these extra header lines (`name: value`), and an empty body.
    Status(u16, Vec<String>),
    /// This status with headers announcing a huge body that never comes.
    EndlessBody(u16),
    /// Nothing, ever.
    Hang,
}

/// One request as received.
#[derive(Debug)]
struct Captured {
    request_line: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Captured>>>,
}

impl Receiver {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (log, reply) = (Arc::clone(&log), reply.clone());
                tokio::spawn(async move { serve(socket, log, reply).await });
            }
        });
        Self { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn serve(mut socket: TcpStream, log: Arc<Mutex<Vec<Captured>>>, reply: Reply) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let length: usize = headers
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    log.lock().unwrap().push(Captured {
        request_line,
        headers,
        body,
    });
    match reply {
        Reply::Status(code, extra) => {
            let mut answer =
                format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n");
            for line in extra {
                answer.push_str(&line);
                answer.push_str("\r\n");
            }
            answer.push_str("\r\n");
            let _ = socket.write_all(answer.as_bytes()).await;
        }
        Reply::EndlessBody(code) => {
            let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 100000000\r\n\r\n");
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.write_all(&[b'x'; 1024]).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Reply::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A loopback-allowing sender (tests only), with a short timeout.
fn open_sender() -> HttpWebhookSender {
    HttpWebhookSender::new(SenderConfig {
        timeout: Duration::from_millis(1500),
        allow_private_targets: true,
        allow_http: true,
        ..SenderConfig::default()
    })
    .unwrap()
}

fn request(url: String, secrets: Vec<SecretString>) -> WebhookRequest {
    WebhookRequest {
        url,
        msg_id: "msg_0192f0b2c3d47e8f9a0b1c2d3e4f5a6b".to_owned(),
        timestamp: now(),
        body: r#"{"type":"user.provisioned","timestamp":"2026-11-26T10:00:00.000Z","data":{"tenant_id":"t1","external_id":"u1","version":3}}"#.to_owned(),
        secrets,
    }
}

#[tokio::test]
async fn a_delivery_is_signed_and_verifiable() {
    let rx = Receiver::start(Reply::Status(204, vec![])).await;
    let (old, current) = (new_secret(), new_secret());
    let req = request(
        rx.url("/hooks/in?token=abc"),
        vec![old.clone(), current.clone()],
    );
    let result = open_sender().send(&req).await;
    assert_eq!(
        result,
        SendResult::Status {
            code: 204,
            retry_after: None
        }
    );

    let seen = rx.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert_eq!(got.request_line, "POST /hooks/in?token=abc HTTP/1.1");
    assert_eq!(
        got.body,
        req.body.as_bytes(),
        "the body is sent byte for byte"
    );
    let h = &got.headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["webhook-id"], req.msg_id.as_str());
    assert_eq!(h["webhook-timestamp"], req.timestamp.to_string().as_str());
    assert_eq!(
        h["user-agent"],
        concat!("provisioner-webhooks/", env!("CARGO_PKG_VERSION"))
    );
    let signature = h["webhook-signature"].to_str().unwrap();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    // Receivers holding either secret (mid-rotation) accept it; others do not.
    for secret in [&old, &current] {
        Webhook::new(secret.expose_secret())
            .unwrap()
            .verify(&got.body, h)
            .expect("verifies");
    }
    assert!(
        Webhook::new(new_secret().expose_secret())
            .unwrap()
            .verify(&got.body, h)
            .is_err()
    );
}

#[tokio::test]
async fn statuses_are_mapped() {
    let cases = [
        (Reply::Status(200, vec![]), 200, None),
        (Reply::Status(410, vec![]), 410, None),
        (
            Reply::Status(429, vec!["retry-after: 42".to_owned()]),
            429,
            Some(Duration::from_secs(42)),
        ),
        (
            Reply::Status(
                503,
                vec!["Retry-After: Wed, 21 Oct 2015 07:28:00 GMT".to_owned()],
            ),
            503,
            Some(Duration::ZERO),
        ),
        (Reply::Status(500, vec![]), 500, None),
    ];
    let sender = open_sender();
    for (reply, code, retry_after) in cases {
        let rx = Receiver::start(reply).await;
        let result = sender.send(&request(rx.url("/"), vec![new_secret()])).await;
        assert_eq!(result, SendResult::Status { code, retry_after });
        assert_eq!(rx.count(), 1);
    }
}

#[tokio::test]
async fn retry_after_as_a_future_date() {
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(300));
    let rx = Receiver::start(Reply::Status(503, vec![format!("retry-after: {later}")])).await;
    match open_sender()
        .send(&request(rx.url("/"), vec![new_secret()]))
        .await
    {
        SendResult::Status {
            code: 503,
            retry_after: Some(d),
        } => assert!(
            d > Duration::from_secs(250) && d <= Duration::from_secs(300),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let target = Receiver::start(Reply::Status(200, vec![])).await;
    let rx = Receiver::start(Reply::Status(
        302,
        vec![format!("location: {}", target.url("/elsewhere"))],
    ))
    .await;
    let result = open_sender()
        .send(&request(rx.url("/"), vec![new_secret()]))
        .await;
    assert_eq!(
        result,
        SendResult::Status {
            code: 302,
            retry_after: None
        }
    );
    assert_eq!(rx.count(), 1);
    assert_eq!(target.count(), 0, "the redirect target is never called");
}

#[tokio::test]
async fn a_hang_past_the_timeout_is_no_response() {
    let rx = Receiver::start(Reply::Hang).await;
    let sender = HttpWebhookSender::new(SenderConfig {
        timeout: Duration::from_millis(300),
        allow_private_targets: true,
        allow_http: true,
        ..SenderConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let result = sender
        .send(&request(rx.url("/?token=sekrit"), vec![new_secret()]))
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    match result {
        SendResult::NoResponse { error, timed_out } => {
            assert!(timed_out, "{error}");
            assert!(!error.contains("sekrit"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.count(), 1, "the request was received");
}

#[tokio::test]
async fn the_response_body_is_not_read() {
    let rx = Receiver::start(Reply::EndlessBody(200)).await;
    let started = Instant::now();
    let result = open_sender()
        .send(&request(rx.url("/"), vec![new_secret()]))
        .await;
    assert_eq!(
        result,
        SendResult::Status {
            code: 200,
            retry_after: None
        }
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_connection_error_is_no_response_without_the_query() {
    // Bind then drop: nothing listens on the port.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = open_sender()
        .send(&request(
            format!("http://127.0.0.1:{port}/in?token=sekrit"),
            vec![new_secret()],
        ))
        .await;
    match result {
        SendResult::NoResponse { error, timed_out } => {
            assert!(!timed_out, "{error}");
            assert!(
                !error.contains("sekrit") && !error.contains("/in"),
                "{error}"
            );
            assert!(!error.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn http_is_refused_unless_allowed() {
    let rx = Receiver::start(Reply::Status(200, vec![])).await;
    let sender = HttpWebhookSender::new(SenderConfig {
        allow_private_targets: true,
        ..SenderConfig::default()
    })
    .unwrap();
    let result = sender.send(&request(rx.url("/"), vec![new_secret()])).await;
    assert!(matches!(result, SendResult::Refused(_)), "{result:?}");
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let rx = Receiver::start(Reply::Status(200, vec![])).await;
    let sender = HttpWebhookSender::new(SenderConfig {
        allow_http: true,
        ..SenderConfig::default()
    })
    .unwrap();
    let port = rx.addr.port();
    for url in [
        rx.url("/"),
        format!("http://localhost:{port}/"),
        format!("http://LocalHost.:{port}/"),
        format!("http://hooks.localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ] {
        let result = sender.send(&request(url.clone(), vec![new_secret()])).await;
        assert!(
            matches!(result, SendResult::Refused(_)),
            "{url}: {result:?}"
        );
    }
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn internal_targets_are_refused() {
    let sender = HttpWebhookSender::new(SenderConfig::default()).unwrap();
    for url in [
        "https://localhost/",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://192.168.1.1/",
        "https://172.16.0.1/",
        "https://100.64.0.1/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://2130706433/",
    ] {
        let started = Instant::now();
        let result = sender
            .send(&request(url.to_owned(), vec![new_secret()]))
            .await;
        match &result {
            SendResult::Refused(why) => assert!(!why.contains(url), "{why}"),
            other => panic!("{url}: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{url}: no network"
        );
    }
}

#[tokio::test]
async fn an_ordinary_name_resolving_to_loopback_is_refused() {
    // Names in /etc/hosts that point at loopback (containers often list their host name).
    let mut candidates = Vec::new();
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            if fields.next().is_some_and(|ip| ip.starts_with("127.")) {
                candidates.extend(
                    fields
                        .filter(|n| !n.to_ascii_lowercase().contains("localhost"))
                        .map(str::to_owned),
                );
            }
        }
    }
    let mut name = None;
    for candidate in candidates {
        let addrs: Vec<_> = match tokio::net::lookup_host((candidate.as_str(), 0)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => continue,
        };
        if !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()) {
            name = Some(candidate);
            break;
        }
    }
    let Some(name) = name else {
        eprintln!(
            "no non-localhost name resolving to loopback here; the resolver guard is unit-tested in src/sender.rs"
        );
        return;
    };

    let rx = Receiver::start(Reply::Status(200, vec![])).await;
    let url = format!("http://{name}:{}/in", rx.addr.port());
    eprintln!("checking {name}, which resolves to loopback");
    let guarded = HttpWebhookSender::new(SenderConfig {
        allow_http: true,
        ..SenderConfig::default()
    })
    .unwrap();
    let result = guarded
        .send(&request(url.clone(), vec![new_secret()]))
        .await;
    match &result {
        SendResult::Refused(why) => assert!(!why.contains("127."), "{why}"),
        other => panic!("{name} resolves to loopback and must be refused: {other:?}"),
    }
    assert_eq!(rx.count(), 0);

    // Allowed, the same name is delivered to.
    let result = open_sender().send(&request(url, vec![new_secret()])).await;
    assert_eq!(
        result,
        SendResult::Status {
            code: 200,
            retry_after: None
        }
    );
    assert_eq!(rx.count(), 1);
}
