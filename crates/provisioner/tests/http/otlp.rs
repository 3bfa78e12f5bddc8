//! OpenTelemetry export (feature `otlp`): the real `provisioner serve` posts its spans over
//! OTLP/HTTP to `PROVISIONER_OTLP_ENDPOINT`, in the trace of the caller's `traceparent`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use provisioner_core::secret::MasterKey;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::clean_env;
use crate::process::free_port;

const TRACE_ID: &str = "5d8f2c3a9b1e47f6a0c4d2e8b7f61a39";
const TRACEPARENT: &str = "00-5d8f2c3a9b1e47f6a0c4d2e8b7f61a39-b7ad6b7169203331-01";

/// What the collector stand-in received: `(path, body)` of each request.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A loopback OTLP/HTTP collector stand-in: records every request and answers 200.
async fn collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let received = Received::default();
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, seen.clone()));
        }
    });
    (base, received)
}

/// HTTP/1.1 requests with a `Content-Length` body, one after the other (keep-alive).
async fn serve_connection(stream: TcpStream, seen: Received) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        seen.lock().unwrap().push((path, body));
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    let (endpoint, received) = collector().await;
    let (db, _dir) = provisioner_storage::testing::fresh_sqlite_url();
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = clean_env(&mut Command::new(env!("CARGO_BIN_EXE_provisioner")))
        .arg("serve")
        .env("PROVISIONER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PROVISIONER_METRICS_LISTEN", "off")
        .env("PROVISIONER_DATABASE_URL", &db)
        .env("PROVISIONER_MASTER_KEY", MasterKey::generate().to_base64())
        .env(
            "PROVISIONER_JWT_HS256_SECRET",
            "a-jwt-secret-for-tests-0123456789",
        )
        .env("PROVISIONER_WORKERS", "1")
        // Exported spans pass the log filter first: the request span is at INFO.
        .env("PROVISIONER_LOG", "info")
        .env("PROVISIONER_OTLP_ENDPOINT", &endpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .expect("spawning provisioner serve");
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "serve exited before it was ready ({status}):\n{}",
                log_text()
            );
        }
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("serve not ready after 20 s:\n{}", log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Any request will do (this one is refused for want of a token): its root span is exported.
    let r = http
        .get(format!("{base}/v1/tenants"))
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The batch goes out every few seconds, and at the latest when the service stops.
    let wanted = hex_bytes(TRACE_ID);
    let exported = |received: &Received| {
        received.lock().unwrap().iter().any(|(path, body)| {
            path == "/v1/traces" && body.windows(wanted.len()).any(|w| w == wanted.as_slice())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !exported(&received) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("serve did not stop on SIGTERM:\n{}", log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "serve exited with {status}:\n{}",
        log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exported(&received) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paths: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(p, b)| format!("{p} ({} bytes)", b.len()))
        .collect();
    assert!(
        exported(&received),
        "no span of trace {TRACE_ID} was exported; the collector got {paths:?}; the log:\n{}",
        log_text()
    );
}
