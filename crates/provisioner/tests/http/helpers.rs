//! `spawn_app`: the service as `provisioner serve` wires it, on port 0, against an in-process
//! simulator, with typed helpers for the calls the tests make.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use clarifai_sim::{Account, SimConfig, Simulator};
use provisioner::config::Settings;
use provisioner::startup::Application;
use provisioner_core::secret::MasterKey;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

/// Which database the app runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

enum DbGuard {
    Sqlite(#[allow(dead_code)] provisioner_storage::testing::TempDirGuard),
    Postgres(#[allow(dead_code)] provisioner_storage::testing::PgDbGuard),
}

/// Every log line any test app wrote (the tracing subscriber is global to the test binary).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    let buf = LOGS.get_or_init(Default::default).clone();
    provisioner::telemetry::init(
        "debug,h2=info,hyper=info,rustls=info",
        false,
        false,
        move || LogSink(buf.clone()),
    );
}

pub const SIM_USER: &str = "acme-ml";
pub const SIM_PAT: &str = "sim-pat-acme-0123456789abcdef";
pub const OTHER_USER: &str = "globex-ml";
pub const OTHER_PAT: &str = "sim-pat-globex-fedcba9876543210";

/// A running service and its simulator.
pub struct TestApp {
    pub base: String,
    /// The metrics listener (its own port).
    pub metrics_base: String,
    pub http: reqwest::Client,
    pub sim: Simulator,
    pub jwt_secret: SecretString,
    pub admin: String,
    pub db_url: String,
    _db: DbGuard,
}

/// Starts the simulator and the service; `None` when PostgreSQL was asked for but is
/// unreachable (and not required).
pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |_| {}).await
}

/// As [`spawn_app`], letting the test change settings first.
pub async fn spawn_app_with(db: Db, tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    init_logs();
    let (db_url, guard) = match db {
        Db::Sqlite => {
            let (url, g) = provisioner_storage::testing::fresh_sqlite_url();
            (url, DbGuard::Sqlite(g))
        }
        Db::Postgres => {
            let (store, url, g) = provisioner_storage::testing::fresh_postgres().await?;
            store.close().await;
            (url, DbGuard::Postgres(g))
        }
    };
    let sim = Simulator::start(SimConfig {
        accounts: vec![
            Account::new(SIM_USER, SIM_PAT),
            Account::new(OTHER_USER, OTHER_PAT),
        ],
        rate_limit_per_sec: None,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let jwt_secret = SecretString::from(MasterKey::generate().to_base64());
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        metrics_listen: "127.0.0.1:0".into(),
        database_url: db_url.clone(),
        master_key: Some(SecretString::from(MasterKey::generate().to_base64())),
        jwt_hs256_secret: Some(jwt_secret.clone()),
        workers: 2,
        recovery_interval_secs: 0,
        lease_wait_secs: 20,
        upstream_timeout_secs: 2,
        upstream_max_attempts: 3,
        caller_rate_limit: 0,
        ..Settings::default()
    };
    tweak(&mut settings);
    let app = Application::build(&settings).await.expect("build app");
    let base = format!("http://127.0.0.1:{}", app.port());
    let metrics_base = format!(
        "http://127.0.0.1:{}",
        app.metrics_port().expect("the metrics listener is on")
    );
    tokio::spawn(app.run_until_stopped());
    let admin = token(&jwt_secret, "provisioner:admin", None);
    Some(TestApp {
        base,
        metrics_base,
        http: reqwest::Client::new(),
        sim,
        jwt_secret,
        admin,
        db_url,
        _db: guard,
    })
}

/// Mints a token (1 h) for `scope`, bound to `tenant` when given.
pub fn token(secret: &SecretString, scope: &str, tenant: Option<&str>) -> String {
    provisioner::token::mint(secret, scope, tenant, 3600, "test-caller", None, None).expect("token")
}

/// A response: status, headers, JSON body (Null when empty or not JSON).
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestApp {
    /// A token of this app's secret.
    pub fn token(&self, scope: &str, tenant: Option<&str>) -> String {
        token(&self.jwt_secret, scope, tenant)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    /// The standard tenant body, pointing at this app's simulator.
    pub fn tenant_body(&self, id: &str) -> Value {
        json!({
            "id": id,
            "display_name": format!("{id} corp"),
            "upstream": {"base_url": self.sim.base_url(), "user_id": SIM_USER, "pat": SIM_PAT},
            "app_defaults": {"id_prefix": format!("{id}-"), "default_workflow": "Empty", "description": "Provisioned for {external_id}"},
            "upstream_rate_limit": {"requests_per_second": 15, "max_concurrency": 8},
            "allowed_scopes": ["Predict", "Inputs:Get", "Inputs:Add", "Concepts:Get"],
            "default_scope_profile": "standard",
            "scope_profiles": {"standard": ["Predict", "Inputs:Get"], "annotator": ["Inputs:Get", "Inputs:Add", "Concepts:Get"]}
        })
    }

    /// Creates tenant `id` (asserting 201).
    pub async fn create_tenant(&self, id: &str) {
        let r = self
            .call(
                Method::POST,
                "/v1/tenants",
                Some(&self.admin),
                Some(self.tenant_body(id)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    /// PUT a user with a body.
    pub async fn put_user(&self, tenant: &str, ext: &str, token: &str, body: Value) -> Resp {
        self.call(
            Method::PUT,
            &format!("/v1/tenants/{tenant}/users/{}", enc(ext)),
            Some(token),
            Some(body),
        )
        .await
    }

    /// The simulator's apps and keys of the tenant's account.
    pub fn upstream_counts(&self) -> (usize, usize) {
        (self.sim.apps(SIM_USER).len(), self.sim.keys(SIM_USER).len())
    }
}

/// Percent-encodes a path segment.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asserts a problem response with `status` and `code`.
pub fn assert_problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    assert_eq!(r.body["code"], code, "{}", r.text);
    assert_eq!(r.body["status"], status);
    assert!(r.body["request_id"].is_string(), "{}", r.text);
    assert!(r.body["title"].is_string() && r.body["type"].is_string());
}
