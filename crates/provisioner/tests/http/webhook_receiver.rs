//! A loopback webhook receiver for the tests: listens on `127.0.0.1:0`, records every request
//! (headers and the body's exact bytes), verifies it with the `standardwebhooks` crate against
//! the secrets it was given, counts deliveries per `webhook-id`, and answers from a script
//! (`500` first, then `200`; `429` with `Retry-After`; a hang; `410` ...).
//!
//! Plain HTTP/1.1 over tokio's `TcpListener`: one request per connection, answered with
//! `Connection: close`, so each delivery attempt is one accepted connection (counted too: a
//! target refused before sending opens none).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status, with these extra headers, and an empty body.
    Status(u16, Vec<(&'static str, String)>),
    /// No answer: the connection is held open (read until the sender closes it, at most 60 s).
    Hang,
}

impl Reply {
    /// A bare status.
    pub fn status(code: u16) -> Self {
        Reply::Status(code, Vec::new())
    }
}

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it arrived (the headers and the whole body read).
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The body's exact bytes.
    pub body: Vec<u8>,
    /// Whether one of the receiver's secrets verified it on arrival (`standardwebhooks`).
    pub verified: bool,
}

impl Received {
    /// The `webhook-id` header.
    pub fn id(&self) -> String {
        self.header("webhook-id")
    }

    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }

    /// The body's `type`.
    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }

    /// Verifies with `secret` now (`standardwebhooks`: signature and timestamp tolerance).
    pub fn verify_with(&self, secret: &str) -> Result<(), String> {
        verify(secret, &self.body, &self.headers)
    }
}

/// Verifies a delivery with the Standard Webhooks reference library.
pub fn verify(secret: &str, body: &[u8], headers: &HeaderMap) -> Result<(), String> {
    let wh = standardwebhooks::Webhook::new(secret).map_err(|e| format!("secret: {e}"))?;
    wh.verify(body, headers).map_err(|e| e.to_string())
}

struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
    secrets: Mutex<Vec<String>>,
    received: Mutex<Vec<Received>>,
    connections: AtomicUsize,
    /// Requests whose reply is a hang, still held open.
    hanging: AtomicUsize,
}

/// A running receiver; stops accepting when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver answering `default` to every request not scripted.
    pub async fn start(default: Reply) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            default,
            secrets: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            hanging: AtomicUsize::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            state,
            task,
        }
    }

    /// A receiver answering `200` to everything.
    pub async fn ok() -> Receiver {
        Receiver::start(Reply::status(200)).await
    }

    /// Replies for the next requests, in order (then the default).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// The secrets requests are verified with on arrival (any one verifying is enough).
    pub fn set_secrets(&self, secrets: &[&str]) {
        *self.state.secrets.lock().unwrap() = secrets.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// Deliveries carrying `webhook-id: id`.
    pub fn count_id(&self, id: &str) -> usize {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.id() == id)
            .count()
    }

    /// The deliveries of event `type`.
    pub fn of_type(&self, event_type: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.event_type() == event_type)
            .collect()
    }

    /// Connections accepted so far (one per attempt that reached the socket).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests held open by a `Hang` reply right now.
    pub fn hanging(&self) -> usize {
        self.state.hanging.load(Ordering::SeqCst)
    }

    /// Polls (every `step`) until `n` requests arrived; panics after `within`.
    pub async fn wait_for_count(
        &self,
        n: usize,
        within: Duration,
        step: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} request(s) within {within:?}, {n} expected: {:?}",
                got.len(),
                got.iter()
                    .map(|r| (r.id(), r.event_type()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(step).await;
        }
    }

    /// Polls every 50 ms until `pred` holds on what was received; panics after `within`.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what}; received {:?}",
                got.iter()
                    .map(|r| (r.id(), r.event_type()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads one request, records it, answers (or hangs), closes.
async fn serve(mut stream: TcpStream, st: Arc<State>) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    // Headers.
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(k, v);
        }
    }
    assert!(
        headers.get("transfer-encoding").is_none(),
        "the receiver reads Content-Length bodies only: {head}"
    );
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    let verified = st
        .secrets
        .lock()
        .unwrap()
        .iter()
        .any(|s| verify(s, &body, &headers).is_ok());
    let reply = st
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| st.default.clone());
    st.received.lock().unwrap().push(Received {
        at: Instant::now(),
        method,
        path,
        headers,
        body,
        verified,
    });
    match reply {
        Reply::Status(code, extra) => {
            let mut out = format!(
                "HTTP/1.1 {code} {}\r\ncontent-length: 0\r\nconnection: close\r\n",
                reason(code)
            );
            for (k, v) in extra {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let _ = stream.write_all(out.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => {
            st.hanging.fetch_add(1, Ordering::SeqCst);
            // Until the sender gives up (its timeout) or dies (kill -9 closes the socket).
            let _ = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            st.hanging.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
