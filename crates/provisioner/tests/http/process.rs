//! The real `provisioner serve` binary as a child process: spawn, wait until ready, SIGKILL,
//! restart on the same port and database. Shared by the chaos tests (`kill9`, `replicas`).
//!
//! A [`Server`] kills its child when dropped, so a failing test never leaves one running.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use clarifai_sim::{Account, Faults, SimConfig, Simulator};
use provisioner_core::secret::MasterKey;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{SIM_PAT, SIM_USER};

/// A port that was free a moment ago (bound on port 0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    l.local_addr().expect("local address").port()
}

/// How a child is configured: everything through `PROVISIONER_*` variables.
#[derive(Clone)]
pub struct ServerEnv {
    /// The port it listens on (the same across restarts).
    pub port: u16,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// The master key, base64 (fixed across restarts: the stored keys must still open).
    pub master_key: String,
    /// The HS256 secret its tokens are signed with.
    pub jwt_secret: SecretString,
    /// `PROVISIONER_LEASE_WAIT_SECS`.
    pub lease_wait_secs: u64,
    /// `PROVISIONER_LEASE_TTL_SECS` and `PROVISIONER_RECOVERY_INTERVAL_SECS`; `None` keeps the
    /// service's defaults.
    pub short_leases: bool,
    /// Where the child's stderr goes (appended: one file across restarts).
    pub log_file: PathBuf,
    /// More variables (e.g. `PROVISIONER_WEBHOOK_*`), set last (they override the above).
    pub extra_env: Vec<(String, String)>,
}

impl ServerEnv {
    /// Settings for the chaos tests: short leases, a recovery pass every second.
    pub fn new(port: u16, database_url: &str, jwt_secret: &SecretString, log_file: &Path) -> Self {
        Self {
            port,
            database_url: database_url.to_owned(),
            master_key: MasterKey::generate().to_base64(),
            jwt_secret: jwt_secret.clone(),
            lease_wait_secs: 5,
            short_leases: true,
            log_file: log_file.to_owned(),
            extra_env: Vec::new(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn command(&self) -> Command {
        use secrecy::ExposeSecret;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisioner"));
        cmd.arg("serve")
            .env_remove("PROVISIONER_CONFIG")
            .env("PROVISIONER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("PROVISIONER_METRICS_LISTEN", "off")
            .env("PROVISIONER_DATABASE_URL", &self.database_url)
            .env("PROVISIONER_MASTER_KEY", &self.master_key)
            .env(
                "PROVISIONER_JWT_HS256_SECRET",
                self.jwt_secret.expose_secret(),
            )
            .env("PROVISIONER_RETRY_BASE_SECS", "1")
            .env(
                "PROVISIONER_LEASE_WAIT_SECS",
                self.lease_wait_secs.to_string(),
            )
            .env("PROVISIONER_UPSTREAM_TIMEOUT_SECS", "2")
            .env("PROVISIONER_CALLER_RATE_LIMIT", "0")
            .env("PROVISIONER_WORKERS", "2")
            .env("PROVISIONER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if self.short_leases {
            cmd.env("PROVISIONER_LEASE_TTL_SECS", "2")
                .env("PROVISIONER_RECOVERY_INTERVAL_SECS", "1");
        } else {
            cmd.env_remove("PROVISIONER_LEASE_TTL_SECS")
                .env_remove("PROVISIONER_RECOVERY_INTERVAL_SECS");
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// One `provisioner serve` child (or none, between a kill and a restart).
pub struct Server {
    env: ServerEnv,
    child: Option<Child>,
    http: reqwest::Client,
    /// Processes started so far.
    pub starts: usize,
}

impl Server {
    /// A handle; nothing runs until [`Server::start`].
    pub fn new(env: ServerEnv) -> Self {
        Self {
            env,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
            starts: 0,
        }
    }

    /// The child's base URL.
    pub fn base(&self) -> String {
        self.env.base()
    }

    /// The configuration the next [`Server::start`] uses (e.g. other `extra_env`).
    pub fn env_mut(&mut self) -> &mut ServerEnv {
        &mut self.env
    }

    /// Spawns the child and polls `GET /readyz` until it answers 200 (at most 20 s).
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "a child is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.env.log_file)
            .expect("opening the child's log file");
        let child = self
            .env
            .command()
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning provisioner serve");
        self.child = Some(child);
        self.starts += 1;
        let url = format!("{}/readyz", self.base());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "provisioner serve exited before it was ready ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "provisioner serve not ready after 20 s; its log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (`Child::kill` on Unix), then reaps the child. No-op when none runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`-TERM`, `-INT`) and waits up to `within` for the exit (then kills).
    pub fn stop_with(
        &mut self,
        signal: &str,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = c.id().to_string();
        let _ = Command::new("kill").args([signal, &pid]).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// The last 4 KiB of the children's stderr.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.env.log_file) {
            let _ = f.read_to_string(&mut s);
        }
        let start = s.len().saturating_sub(4096);
        let start = (start..s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[start..].to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulator with one account (`helpers::SIM_USER`), no rate limit, and `latency` ms plus up
/// to `jitter` ms on every call (so kills land in the middle of upstream calls).
pub async fn simulator(latency: u64, jitter: u64) -> Simulator {
    Simulator::start(SimConfig {
        accounts: vec![Account::new(SIM_USER, SIM_PAT)],
        rate_limit_per_sec: None,
        faults: Faults {
            latency_ms: latency,
            latency_jitter_ms: jitter,
            ..Faults::none()
        },
        workers: 4,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// A tenant on the simulator at `upstream_base` with a generous upstream rate limit (bulk work is not paced to 15/s).
pub fn tenant_body(id: &str, upstream_base: &str) -> Value {
    json!({
        "id": id,
        "display_name": format!("{id} corp"),
        "upstream": {"base_url": upstream_base, "user_id": SIM_USER, "pat": SIM_PAT},
        "app_defaults": {"id_prefix": format!("{id}-"), "default_workflow": "Empty", "description": "Provisioned for {external_id}"},
        "upstream_rate_limit": {"requests_per_second": 200, "max_concurrency": 32},
        "allowed_scopes": ["Predict", "Inputs:Get", "Inputs:Add", "Concepts:Get"],
        "default_scope_profile": "standard",
        "scope_profiles": {"standard": ["Predict", "Inputs:Get"], "annotator": ["Inputs:Get", "Inputs:Add", "Concepts:Get"]}
    })
}

/// The sorted scopes of a profile of [`tenant_body`].
pub fn profile_scopes(profile: &str) -> Vec<String> {
    let mut v: Vec<String> = match profile {
        "standard" => vec!["Predict", "Inputs:Get"],
        "annotator" => vec!["Inputs:Get", "Inputs:Add", "Concepts:Get"],
        other => panic!("unknown profile {other}"),
    }
    .into_iter()
    .map(str::to_owned)
    .collect();
    v.sort();
    v
}

/// First 8 hex characters of the SHA-256 of a key secret (as `GET` user shows `key.fingerprint`).
pub fn short_fingerprint(secret: &str) -> String {
    provisioner_core::secret::fingerprint(&SecretString::from(secret.to_owned()))[..8].to_owned()
}

/// A JSON call to a base URL; `Err` on a transport error (the server may be dead).
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value, String), reqwest::Error> {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await?;
    let status = res.status();
    let text = res.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((status, body, text))
}

/// All audit events of `tenant`, paging with `next_cursor`.
pub async fn audit_events(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    tenant: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = after
            .as_ref()
            .map(|c| format!("&after={c}"))
            .unwrap_or_default();
        let url = format!("{base}/v1/audit-events?tenant_id={tenant}&limit=500{q}");
        let (status, body, text) = call(http, reqwest::Method::GET, &url, admin, None)
            .await
            .expect("listing audit events");
        assert_eq!(status, StatusCode::OK, "{text}");
        out.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// All users of `tenant` (status, key fingerprint ...), paging with `next_cursor`.
pub async fn all_users(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let url = format!("{base}/v1/tenants/{tenant}/users?limit=500{q}");
        let (status, body, text) = call(http, reqwest::Method::GET, &url, token, None)
            .await
            .expect("listing users");
        assert_eq!(status, StatusCode::OK, "{text}");
        out.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// `POST /v1/tenants/{tenant}/reconcile` (report only); panics unless it is clean.
pub async fn assert_reconcile_clean(http: &reqwest::Client, base: &str, token: &str, tenant: &str) {
    let url = format!("{base}/v1/tenants/{tenant}/reconcile");
    let (status, body, text) = call(
        http,
        reqwest::Method::POST,
        &url,
        token,
        Some(json!({"repair": false})),
    )
    .await
    .expect("reconcile");
    assert_eq!(status, StatusCode::OK, "{text}");
    for k in [
        "orphan_apps",
        "orphan_keys",
        "unmarked_keys",
        "missing_apps",
        "missing_keys",
        "scope_drift",
    ] {
        assert_eq!(body[k], json!([]), "reconcile {k}: {text}");
    }
}

/// An HTTP proxy in front of the simulator that holds every answer back for a random
/// `0..=max_delay_ms` after the simulator has applied the request. It widens the window in which
/// a call has taken effect upstream but the service has not yet recorded it, the window that
/// the "nothing untracked upstream" invariant is about, so that random kills land in it often. It counts the calls
/// in flight (forwarded, answer not yet delivered).
pub struct DelayProxy {
    /// `http://127.0.0.1:PORT`: use as the tenant's upstream base URL.
    pub base: String,
    inflight: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

struct ProxyState {
    target: String,
    client: reqwest::Client,
    max_delay_ms: u64,
    inflight: Arc<AtomicUsize>,
}

/// Decrements the in-flight count when the forwarding ends, completed or dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AtomicOrdering::SeqCst);
    }
}

impl DelayProxy {
    /// Starts a proxy to `target` (e.g. the simulator's base URL).
    pub async fn start(target: &str, max_delay_ms: u64) -> DelayProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let base = format!("http://{}", listener.local_addr().expect("proxy address"));
        let inflight = Arc::new(AtomicUsize::new(0));
        let state = actix_web::web::Data::new(ProxyState {
            target: target.to_owned(),
            client: reqwest::Client::new(),
            max_delay_ms,
            inflight: inflight.clone(),
        });
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(state.clone())
                .default_service(actix_web::web::to(forward))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("proxy listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        DelayProxy {
            base,
            inflight,
            handle,
        }
    }

    /// Upstream calls forwarded whose answer has not been delivered yet.
    pub fn inflight(&self) -> usize {
        self.inflight.load(AtomicOrdering::SeqCst)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        let h = self.handle.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

async fn forward(
    req: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    st: actix_web::web::Data<ProxyState>,
) -> actix_web::HttpResponse {
    st.inflight.fetch_add(1, AtomicOrdering::SeqCst);
    let _guard = InFlight(st.inflight.clone());
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
    let mut out = st
        .client
        .request(method, format!("{}{path}", st.target))
        .body(body.to_vec());
    for (k, v) in req.headers() {
        let k = k.as_str();
        if !matches!(k, "host" | "content-length" | "connection") {
            out = out.header(k, v.as_bytes());
        }
    }
    let answer = match out.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let headers: Vec<(String, Vec<u8>)> = r
                .headers()
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "content-type" | "retry-after"))
                .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            let bytes = r.bytes().await.unwrap_or_default();
            Some((status, headers, bytes))
        }
        Err(_) => None,
    };
    // The upstream has applied the request; the service does not know yet.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=st.max_delay_ms))).await;
    match answer {
        Some((status, headers, bytes)) => {
            let mut res = actix_web::HttpResponse::build(
                actix_web::http::StatusCode::from_u16(status).expect("status"),
            );
            for (k, v) in headers {
                res.insert_header((k, v));
            }
            res.body(bytes.to_vec())
        }
        None => actix_web::HttpResponse::BadGateway().finish(),
    }
}
