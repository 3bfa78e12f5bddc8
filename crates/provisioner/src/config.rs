//! Settings: defaults, then an optional TOML file (`PROVISIONER_CONFIG`), then `PROVISIONER_*`
//! environment variables (the environment wins). Loaded and validated once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use provisioner_api::auth::{JwksRefresh, JwksSource};
use provisioner_api::{AuthConfig, HttpSettings};
use provisioner_clarifai::{BreakerConfig, ClientConfig};
use provisioner_core::secret::{MasterKey, RotatingSealer};
use provisioner_core::service::ServiceConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// Every setting, with the environment variable that sets it (TOML keys are the field names).
///
/// `Serialize` is for `provisioner config check` only: it prints every secret redacted (a
/// `SecretString` field does not compile without a `serialize_with`), and the database URL
/// without its password.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// `PROVISIONER_LISTEN`: address to listen on.
    pub listen: String,
    /// `PROVISIONER_METRICS_LISTEN`: address of the metrics listener (`/metrics`), `off` for
    /// none. Never the API's address: metrics name tenants.
    pub metrics_listen: String,
    /// `PROVISIONER_DATABASE_URL`: `sqlite://path` or `postgres://...`.
    #[serde(serialize_with = "serialize_url")]
    pub database_url: String,
    /// `PROVISIONER_DATABASE_URL_FILE`: a file holding the database URL (read into
    /// `database_url` by [`Settings::load`]).
    pub database_url_file: Option<PathBuf>,
    /// `PROVISIONER_MASTER_KEY`: 32 random bytes, base64.
    #[serde(serialize_with = "serialize_secret")]
    pub master_key: Option<SecretString>,
    /// `PROVISIONER_MASTER_KEY_FILE`: a file holding the base64 master key.
    pub master_key_file: Option<PathBuf>,
    /// `PROVISIONER_MASTER_KEY_PREVIOUS`: the master key being retired (during a rotation):
    /// values still sealed under it open, nothing new is sealed under it.
    #[serde(serialize_with = "serialize_secret")]
    pub master_key_previous: Option<SecretString>,
    /// `PROVISIONER_MASTER_KEY_PREVIOUS_FILE`: a file holding the previous master key.
    pub master_key_previous_file: Option<PathBuf>,
    /// `PROVISIONER_JWT_HS256_SECRET`: shared secret for HS256 tokens.
    #[serde(serialize_with = "serialize_secret")]
    pub jwt_hs256_secret: Option<SecretString>,
    /// `PROVISIONER_JWT_HS256_SECRET_FILE`: a file holding the HS256 secret (read into
    /// `jwt_hs256_secret` by [`Settings::load`]).
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// `PROVISIONER_JWT_PUBLIC_KEY_FILE`: RS256, ES256 or EdDSA public key (PEM).
    pub jwt_public_key_file: Option<PathBuf>,
    /// `PROVISIONER_JWT_JWKS_FILE`: a JWKS document.
    pub jwt_jwks_file: Option<PathBuf>,
    /// `PROVISIONER_JWT_JWKS_URL`: the identity provider's JWKS (`https://`; `http://` only to
    /// a loopback address), fetched at start and refreshed (see `docs/security.md`).
    #[serde(serialize_with = "serialize_opt_url")]
    pub jwt_jwks_url: Option<String>,
    /// `PROVISIONER_JWT_JWKS_REFRESH_SECS`: periodic refresh of the JWKS URL's keys (a shorter
    /// `Cache-Control: max-age` wins, down to the minimum below).
    pub jwt_jwks_refresh_secs: u64,
    /// `PROVISIONER_JWT_JWKS_MIN_REFRESH_SECS`: at most one refresh for tokens naming an
    /// unknown key id per this many seconds (also the longest pause between retries).
    pub jwt_jwks_min_refresh_secs: u64,
    /// `PROVISIONER_JWT_ISSUER`: required `iss`, unchecked when unset.
    pub jwt_issuer: Option<String>,
    /// `PROVISIONER_JWT_AUDIENCE`: required `aud`, unchecked when unset.
    pub jwt_audience: Option<String>,
    /// `PROVISIONER_LOG`: tracing env-filter.
    pub log: String,
    /// `PROVISIONER_LOG_FORMAT`: `text` or `json`.
    pub log_format: String,
    /// `PROVISIONER_BODY_LIMIT_BYTES`: largest accepted request body.
    pub body_limit_bytes: usize,
    /// `PROVISIONER_CALLER_RATE_LIMIT`: requests per second per token subject (0 = off).
    pub caller_rate_limit: u32,
    /// `PROVISIONER_WORKERS`: HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// `PROVISIONER_SHUTDOWN_TIMEOUT_SECS`: how long in-flight requests may finish on SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// `PROVISIONER_LEASE_TTL_SECS`: how long an operation holds a user, from its last renewal
    /// (the holder renews it before every upstream call and every third of it while a call is in
    /// flight), before another replica or recovery may resume it.
    pub lease_ttl_secs: u64,
    /// `PROVISIONER_LEASE_WAIT_SECS`: how long a request waits for another request on the same user.
    pub lease_wait_secs: u64,
    /// `PROVISIONER_RECOVERY_INTERVAL_SECS`: pause between recovery passes (0 = no worker).
    pub recovery_interval_secs: u64,
    /// `PROVISIONER_JOB_CONCURRENCY`: users of bulk jobs this instance provisions at once (the
    /// upstream client still paces each account); 0 = no job worker on this instance.
    pub job_concurrency: u32,
    /// `PROVISIONER_SCIM_CONCURRENCY`: SCIM users this instance brings onto their provisioning
    /// at once after identity-provider writes (the upstream client still paces each account);
    /// 0 = no SCIM sync worker on this instance.
    pub scim_concurrency: u32,
    /// `PROVISIONER_WEBHOOK_CONCURRENCY`: webhook deliveries this instance sends at once; 0 = no
    /// delivery worker on this instance.
    pub webhook_concurrency: u32,
    /// `PROVISIONER_KEY_AGE_INTERVAL_SECS`: how often keys past their scope profile's
    /// maximum age are looked for and rotated (one replica at a time); 0 = never on this
    /// instance.
    pub key_age_interval_secs: u64,
    /// `PROVISIONER_WEBHOOK_TIMEOUT_SECS`: how long one delivery may take (connect to response
    /// headers) before it counts as failed.
    pub webhook_timeout_secs: u64,
    /// `PROVISIONER_WEBHOOK_ALLOW_PRIVATE_TARGETS`: let endpoints resolve to loopback, private or
    /// link-local addresses (tests, closed networks). Off by default: a tenant's URL could
    /// otherwise reach internal services.
    pub webhook_allow_private_targets: bool,
    /// `PROVISIONER_WEBHOOK_ALLOW_HTTP`: let endpoints use `http://` URLs. Off by default.
    pub webhook_allow_http: bool,
    /// `PROVISIONER_UPSTREAM_BUDGET`: where each upstream account's request budget is kept:
    /// `database` (shared by every replica on the database), `local` (this process only: right
    /// for one instance), or `auto` (the default: `database` on PostgreSQL, `local` on SQLite).
    pub upstream_budget: String,
    /// `PROVISIONER_RETRY_BASE_SECS`: first recovery backoff after a failed step (doubles, capped at 300 s).
    pub retry_base_secs: u64,
    /// `PROVISIONER_UPSTREAM_TIMEOUT_SECS`: per-attempt timeout of upstream calls.
    pub upstream_timeout_secs: u64,
    /// `PROVISIONER_UPSTREAM_MAX_ATTEMPTS`: attempts per upstream call.
    pub upstream_max_attempts: u32,
    /// `PROVISIONER_BREAKER_THRESHOLD`: consecutive failed upstream operations that open an
    /// account's circuit breaker (0 = no breaker).
    pub breaker_threshold: u32,
    /// `PROVISIONER_BREAKER_OPEN_SECS`: how long an open breaker fails fast before one probe.
    pub breaker_open_secs: u64,
    /// `PROVISIONER_DRIFT_CHECK_INTERVAL_SECS`: pause between periodic drift checks of every
    /// tenant (report only, counts in `/metrics`; 0 = off).
    pub drift_check_interval_secs: u64,
    /// `PROVISIONER_OTLP_ENDPOINT`: an OpenTelemetry collector's OTLP/HTTP base URL (e.g.
    /// `http://127.0.0.1:4318`); spans are posted in batches to `{endpoint}/v1/traces`. Needs a
    /// build with the `otlp` feature (`serve` refuses it otherwise); unset: nothing is exported.
    #[serde(serialize_with = "serialize_opt_url")]
    pub otlp_endpoint: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            database_url: "sqlite://./data/provisioner.db".into(),
            database_url_file: None,
            master_key: None,
            master_key_file: None,
            master_key_previous: None,
            master_key_previous_file: None,
            jwt_hs256_secret: None,
            jwt_hs256_secret_file: None,
            jwt_public_key_file: None,
            jwt_jwks_file: None,
            jwt_jwks_url: None,
            jwt_jwks_refresh_secs: 600,
            jwt_jwks_min_refresh_secs: 30,
            jwt_issuer: None,
            jwt_audience: None,
            log: "info".into(),
            log_format: "text".into(),
            body_limit_bytes: 1024 * 1024,
            caller_rate_limit: 100,
            workers: 0,
            shutdown_timeout_secs: 30,
            lease_ttl_secs: 10,
            lease_wait_secs: 30,
            recovery_interval_secs: 5,
            job_concurrency: 16,
            scim_concurrency: 8,
            webhook_concurrency: 8,
            key_age_interval_secs: 60,
            webhook_timeout_secs: 15,
            webhook_allow_private_targets: false,
            webhook_allow_http: false,
            upstream_budget: "auto".into(),
            retry_base_secs: 30,
            upstream_timeout_secs: 15,
            upstream_max_attempts: 5,
            breaker_threshold: 5,
            breaker_open_secs: 10,
            drift_check_interval_secs: 21_600,
            otlp_endpoint: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_url_file", &self.database_url_file)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field("master_key_file", &self.master_key_file)
            .field(
                "master_key_previous",
                &self.master_key_previous.as_ref().map(|_| "[REDACTED]"),
            )
            .field("master_key_previous_file", &self.master_key_previous_file)
            .field(
                "jwt_hs256_secret",
                &self.jwt_hs256_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("jwt_hs256_secret_file", &self.jwt_hs256_secret_file)
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("jwt_jwks_file", &self.jwt_jwks_file)
            .field(
                "jwt_jwks_url",
                &self.jwt_jwks_url.as_deref().map(redact_url_query),
            )
            .field(
                "otlp_endpoint",
                &self.otlp_endpoint.as_deref().map(redact_url_query),
            )
            .finish_non_exhaustive()
    }
}

/// A database URL with its password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &base[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &base[..s], user, &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    if let Some(q) = query {
        // `?password=`, `sslpassword=` and the like carry secrets too.
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// `<redacted>` for a secret that is set (`config check` prints it; never the value).
fn serialize_secret<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    v.as_ref().map(|_| "<redacted>").serialize(s)
}

/// The database URL without its password (`config check` prints it).
fn serialize_url<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    redact_url(v).serialize(s)
}

fn serialize_opt_url<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().map(redact_url_query).serialize(s)
}

/// [`redact_url`] with the whole query hidden: a URL such as a JWKS URL may carry a token in
/// any parameter (`?access_token=`, a presigned signature).
pub fn redact_url_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{}?***", redact_url(base)),
        None => redact_url(url),
    }
}

/// The contents of the file a `{var}_FILE` setting names, without its trailing newline. Errors
/// name the variable and the path, never the contents.
fn read_secret_file(var: &str, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {var}_FILE {}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        bail!("{var}_FILE {} is empty", path.display());
    }
    Ok(value.to_owned())
}

/// The error of a setting given both directly and as a `_FILE`.
fn both_set(var: &str) -> anyhow::Error {
    anyhow::anyhow!("{var} and {var}_FILE are both set: set one of them")
}

/// A base64 master key from its variable or its `_FILE` variable (not both); `None` when
/// neither is set. Errors name the variable, never the value.
fn read_key(
    var: &str,
    value: Option<&SecretString>,
    file: Option<&PathBuf>,
) -> anyhow::Result<Option<MasterKey>> {
    let encoded = match (value, file) {
        (Some(_), Some(_)) => return Err(both_set(var)),
        (Some(k), None) => k.expose_secret().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {var}_FILE {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    MasterKey::from_base64(&encoded)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{var}: {e}"))
}

/// Environment variables this service reads; any other `PROVISIONER_*` is probably a typo.
const KNOWN_VARS: &[&str] = &[
    "CONFIG",
    "LISTEN",
    "METRICS_LISTEN",
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "MASTER_KEY",
    "MASTER_KEY_FILE",
    "MASTER_KEY_PREVIOUS",
    "MASTER_KEY_PREVIOUS_FILE",
    "JWT_HS256_SECRET",
    "JWT_HS256_SECRET_FILE",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_JWKS_FILE",
    "JWT_JWKS_URL",
    "JWT_JWKS_REFRESH_SECS",
    "JWT_JWKS_MIN_REFRESH_SECS",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "LOG",
    "LOG_FORMAT",
    "BODY_LIMIT_BYTES",
    "CALLER_RATE_LIMIT",
    "WORKERS",
    "SHUTDOWN_TIMEOUT_SECS",
    "LEASE_TTL_SECS",
    "LEASE_WAIT_SECS",
    "RECOVERY_INTERVAL_SECS",
    "JOB_CONCURRENCY",
    "SCIM_CONCURRENCY",
    "WEBHOOK_CONCURRENCY",
    "KEY_AGE_INTERVAL_SECS",
    "WEBHOOK_TIMEOUT_SECS",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS",
    "WEBHOOK_ALLOW_HTTP",
    "UPSTREAM_BUDGET",
    "RETRY_BASE_SECS",
    "UPSTREAM_TIMEOUT_SECS",
    "UPSTREAM_MAX_ATTEMPTS",
    "BREAKER_THRESHOLD",
    "BREAKER_OPEN_SECS",
    "DRIFT_CHECK_INTERVAL_SECS",
    "OTLP_ENDPOINT",
];

/// Variables that command-line flags read rather than the settings (`import --url`, `--token`).
const CLI_VARS: &[&str] = &["URL", "TOKEN"];

impl Settings {
    /// Loads defaults, the TOML file named by `PROVISIONER_CONFIG` (if any), then the environment.
    pub fn load() -> anyhow::Result<Settings> {
        let mut fig = Figment::new();
        if let Ok(path) = std::env::var("PROVISIONER_CONFIG") {
            fig = fig.merge(Toml::file_exact(path));
        }
        let fig = fig.merge(Env::prefixed("PROVISIONER_").ignore(&["CONFIG"]));
        let database_url_set = fig.contains("database_url");
        let mut settings: Settings = fig.extract().context("invalid configuration")?;
        settings.read_secret_files(database_url_set)?;
        Ok(settings)
    }

    /// Reads `PROVISIONER_JWT_HS256_SECRET_FILE` and `PROVISIONER_DATABASE_URL_FILE` (trailing
    /// newline trimmed) into the settings they stand for. `database_url_set`: whether
    /// `PROVISIONER_DATABASE_URL` was set too (it has a default), which is an error, as is
    /// setting both the HS256 secret and its file.
    pub fn read_secret_files(&mut self, database_url_set: bool) -> anyhow::Result<()> {
        if let Some(path) = &self.jwt_hs256_secret_file {
            if self.jwt_hs256_secret.is_some() {
                return Err(both_set("PROVISIONER_JWT_HS256_SECRET"));
            }
            let secret = read_secret_file("PROVISIONER_JWT_HS256_SECRET", path)?;
            self.jwt_hs256_secret = Some(SecretString::from(secret));
        }
        if let Some(path) = &self.database_url_file {
            if database_url_set {
                return Err(both_set("PROVISIONER_DATABASE_URL"));
            }
            self.database_url = read_secret_file("PROVISIONER_DATABASE_URL", path)?;
        }
        Ok(())
    }

    /// Every `PROVISIONER_*` variable this binary reads (`provisioner config vars`).
    pub fn known_env_vars() -> Vec<String> {
        KNOWN_VARS
            .iter()
            .chain(CLI_VARS)
            .map(|v| format!("PROVISIONER_{v}"))
            .collect()
    }

    /// The effective settings as `(variable, value)` pairs, in the order of the known variables:
    /// secrets as `<redacted>` when set, the database URL without its password, `None` for a
    /// setting that is not set.
    pub fn effective(&self) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let serde_json::Value::Object(mut fields) =
            serde_json::to_value(self).context("rendering the settings")?
        else {
            bail!("the settings did not render as a map");
        };
        let mut names: Vec<String> = KNOWN_VARS
            .iter()
            .map(|v| v.to_ascii_lowercase())
            .filter(|k| fields.contains_key(k))
            .collect();
        let unlisted: Vec<String> = fields
            .keys()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        names.extend(unlisted);
        Ok(names
            .into_iter()
            .map(|k| {
                let value = match fields.remove(&k) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s),
                    Some(other) => Some(other.to_string()),
                };
                (format!("PROVISIONER_{}", k.to_ascii_uppercase()), value)
            })
            .collect())
    }

    /// `PROVISIONER_*` variables that are set but unknown (reported as warnings at start).
    pub fn unknown_env_vars() -> Vec<String> {
        std::env::vars()
            .filter_map(|(k, _)| k.strip_prefix("PROVISIONER_").map(str::to_owned))
            .filter(|k| {
                !KNOWN_VARS.contains(&k.as_str())
                    && !CLI_VARS.contains(&k.as_str())
                    && !k.starts_with("TEST_")
            })
            .map(|k| format!("PROVISIONER_{k}"))
            .collect()
    }

    /// `PROVISIONER_OTLP_ENDPOINT`, unless unset or blank.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        self.otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    /// The master key, from `PROVISIONER_MASTER_KEY` or `PROVISIONER_MASTER_KEY_FILE`.
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        match read_key(
            "PROVISIONER_MASTER_KEY",
            self.master_key.as_ref(),
            self.master_key_file.as_ref(),
        )? {
            Some(k) => Ok(k),
            None => bail!(
                "no master key: set PROVISIONER_MASTER_KEY or PROVISIONER_MASTER_KEY_FILE (32 random bytes, base64; e.g. `head -c32 /dev/urandom | base64`)"
            ),
        }
    }

    /// The master key being retired, from `PROVISIONER_MASTER_KEY_PREVIOUS` or
    /// `PROVISIONER_MASTER_KEY_PREVIOUS_FILE`; `None` outside a rotation.
    pub fn previous_master_key(&self) -> anyhow::Result<Option<MasterKey>> {
        read_key(
            "PROVISIONER_MASTER_KEY_PREVIOUS",
            self.master_key_previous.as_ref(),
            self.master_key_previous_file.as_ref(),
        )
    }

    /// The sealer of stored secrets: seals under the master key, opens under it and, during a
    /// rotation, under the previous one. Refuses a previous key equal to the current one (a
    /// rotation that forgot to change the key).
    pub fn sealer(&self) -> anyhow::Result<RotatingSealer> {
        let current = self.master_key()?;
        let previous = self.previous_master_key()?;
        if previous
            .as_ref()
            .is_some_and(|p| p.to_base64() == current.to_base64())
        {
            bail!(
                "PROVISIONER_MASTER_KEY_PREVIOUS is the same key as PROVISIONER_MASTER_KEY: set the new key as PROVISIONER_MASTER_KEY and the old one as PROVISIONER_MASTER_KEY_PREVIOUS"
            );
        }
        Ok(RotatingSealer::new(&current, previous.as_ref()))
    }

    /// The JWT verifier settings; at least one verifier must be configured.
    pub fn auth_config(&self) -> anyhow::Result<AuthConfig> {
        let public_key_pem = match &self.jwt_public_key_file {
            Some(p) => Some(std::fs::read(p).with_context(|| {
                format!("reading PROVISIONER_JWT_PUBLIC_KEY_FILE {}", p.display())
            })?),
            None => None,
        };
        let jwks_json =
            match &self.jwt_jwks_file {
                Some(p) => Some(std::fs::read_to_string(p).with_context(|| {
                    format!("reading PROVISIONER_JWT_JWKS_FILE {}", p.display())
                })?),
                None => None,
            };
        let jwks_refresh = self.jwks_refresh();
        let jwks_source = match &self.jwt_jwks_url {
            Some(url) => Some(Arc::new(crate::jwks::HttpJwksSource::new(
                url,
                jwks_refresh.fetch_timeout,
            )?) as Arc<dyn JwksSource>),
            None => None,
        };
        if self.jwt_hs256_secret.is_none()
            && public_key_pem.is_none()
            && jwks_json.is_none()
            && jwks_source.is_none()
        {
            bail!(
                "no JWT verifier: set PROVISIONER_JWT_HS256_SECRET, PROVISIONER_JWT_PUBLIC_KEY_FILE, PROVISIONER_JWT_JWKS_FILE or PROVISIONER_JWT_JWKS_URL"
            );
        }
        Ok(AuthConfig {
            hs256_secret: self.jwt_hs256_secret.clone(),
            public_key_pem,
            jwks_json,
            jwks_source,
            jwks_refresh,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        })
    }

    /// When the keys of `PROVISIONER_JWT_JWKS_URL` are refreshed (each setting at least 1 s).
    pub fn jwks_refresh(&self) -> JwksRefresh {
        let min_interval = Duration::from_secs(self.jwt_jwks_min_refresh_secs.max(1));
        JwksRefresh {
            interval: Duration::from_secs(self.jwt_jwks_refresh_secs.max(1)).max(min_interval),
            min_interval,
            ..JwksRefresh::default()
        }
    }

    /// HTTP server settings.
    pub fn http(&self) -> HttpSettings {
        HttpSettings {
            body_limit_bytes: self.body_limit_bytes,
            caller_rate_limit_per_sec: self.caller_rate_limit,
            workers: if self.workers == 0 {
                std::thread::available_parallelism().map_or(2, usize::from)
            } else {
                self.workers
            },
            shutdown_timeout_secs: self.shutdown_timeout_secs,
        }
    }

    /// Timing of the provisioning state machine.
    pub fn service(&self) -> ServiceConfig {
        ServiceConfig {
            lease_ttl: Duration::from_secs(self.lease_ttl_secs.max(1)),
            lease_wait: Duration::from_secs(self.lease_wait_secs),
            retry_base: Duration::from_secs(self.retry_base_secs.max(1)),
            ..ServiceConfig::default()
        }
    }

    /// The per-account circuit breaker.
    pub fn breaker(&self) -> BreakerConfig {
        if self.breaker_threshold == 0 {
            return BreakerConfig::disabled();
        }
        BreakerConfig {
            failure_threshold: self.breaker_threshold,
            open_for: Duration::from_secs(self.breaker_open_secs.max(1)),
        }
    }

    /// Whether the upstream budget lives in the database (see `upstream_budget`), given
    /// whether the database is PostgreSQL.
    pub fn shared_budget(&self, postgres: bool) -> anyhow::Result<bool> {
        match self.upstream_budget.trim() {
            "auto" | "" => Ok(postgres),
            "database" => Ok(true),
            "local" => Ok(false),
            other => {
                bail!("PROVISIONER_UPSTREAM_BUDGET must be auto, database or local, not {other:?}")
            }
        }
    }

    /// Upstream client settings.
    pub fn upstream(&self) -> ClientConfig {
        ClientConfig {
            request_timeout: Duration::from_secs(self.upstream_timeout_secs.max(1)),
            max_attempts: self.upstream_max_attempts.max(1),
            // A call queued for the budget gives up within a lease's time to live.
            max_queue_wait: Duration::from_secs(self.lease_ttl_secs.max(1)),
            ..ClientConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_url_is_shown_without_its_query_or_credentials() {
        let s = Settings {
            jwt_jwks_url: Some("https://u:pw@idp.example/jwks?access_token=SECRET1".into()),
            ..Settings::default()
        };
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(
            !shown.contains("SECRET1") && !shown.contains(":pw@"),
            "{shown}"
        );
        assert!(
            shown.contains("https://u:***@idp.example/jwks?***"),
            "{shown}"
        );
    }

    #[test]
    fn database_urls_are_printed_without_their_passwords() {
        for (url, want) in [
            ("postgres://app:pw1@db/prov", "postgres://app:***@db/prov"),
            (
                "postgres://db/prov?user=app&password=pw2&sslmode=require",
                "postgres://db/prov?user=app&password=***&sslmode=require",
            ),
            (
                "postgres://app:pw3@db/prov?sslpassword=pw4",
                "postgres://app:***@db/prov?sslpassword=***",
            ),
            (
                "sqlite://./data/provisioner.db",
                "sqlite://./data/provisioner.db",
            ),
        ] {
            assert_eq!(redact_url(url), want);
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = Settings {
            master_key: Some(SecretString::from("bWFzdGVyLWtleS1zZWNyZXQ=")),
            jwt_hs256_secret: Some(SecretString::from("hs-secret-value")),
            database_url: "postgres://app:pg-password@db/prov".into(),
            ..Settings::default()
        };
        let d = format!("{s:?}");
        assert!(
            !d.contains("bWFzdGVyLWtleS1zZWNyZXQ=")
                && !d.contains("hs-secret-value")
                && !d.contains("pg-password"),
            "{d}"
        );
    }

    #[test]
    fn the_previous_master_key_is_optional_redacted_and_must_differ() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let mut s = Settings {
            master_key: Some(SecretString::from(b.to_base64())),
            ..Settings::default()
        };
        assert!(s.previous_master_key().unwrap().is_none());
        assert!(!s.sealer().unwrap().has_previous());

        s.master_key_previous = Some(SecretString::from(a.to_base64()));
        assert!(s.previous_master_key().unwrap().is_some());
        assert!(s.sealer().unwrap().has_previous());
        let d = format!("{s:?}");
        assert!(
            !d.contains(&a.to_base64()) && !d.contains(&b.to_base64()),
            "{d}"
        );

        s.master_key_previous = Some(SecretString::from("c2hvcnQ="));
        let e = s.sealer().unwrap_err().to_string();
        assert!(e.contains("PROVISIONER_MASTER_KEY_PREVIOUS"), "{e}");

        s.master_key_previous = Some(SecretString::from(b.to_base64()));
        let e = s.sealer().unwrap_err().to_string();
        assert!(e.contains("same key"), "{e}");
        assert!(!e.contains(&b.to_base64()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("previous.key");
        std::fs::write(&path, format!("{}\n", a.to_base64())).unwrap();
        s.master_key_previous = None;
        s.master_key_previous_file = Some(path);
        assert!(s.sealer().unwrap().has_previous());
    }

    #[test]
    fn every_setting_has_its_variable_in_the_known_list() {
        let serde_json::Value::Object(fields) = serde_json::to_value(Settings::default()).unwrap()
        else {
            panic!("settings render as a map")
        };
        let mut from_fields: Vec<String> = fields.keys().map(|k| k.to_ascii_uppercase()).collect();
        from_fields.push("CONFIG".into());
        from_fields.sort();
        let mut known: Vec<String> = KNOWN_VARS.iter().map(|v| (*v).to_owned()).collect();
        known.sort();
        assert_eq!(
            known, from_fields,
            "KNOWN_VARS and the Settings fields differ"
        );
    }

    #[test]
    fn the_effective_settings_hide_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("master.key");
        let s = Settings {
            master_key_file: Some(key_file.clone()),
            master_key_previous: Some(SecretString::from("cHJldmlvdXMta2V5LXNlY3JldA==")),
            jwt_hs256_secret: Some(SecretString::from("hs-secret-value-0123456789abcdefgh")),
            database_url: "postgres://app:pg-password@db/prov?sslpassword=ssl-pw".into(),
            ..Settings::default()
        };
        let lines = s.effective().unwrap();
        let text = format!("{lines:?}");
        for secret in [
            "cHJldmlvdXMta2V5LXNlY3JldA==",
            "hs-secret-value",
            "pg-password",
            "ssl-pw",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
        let get = |var: &str| {
            lines
                .iter()
                .find(|(k, _)| k == var)
                .unwrap_or_else(|| panic!("{var} listed"))
                .1
                .clone()
        };
        assert_eq!(get("PROVISIONER_LISTEN").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            get("PROVISIONER_JWT_HS256_SECRET").as_deref(),
            Some("<redacted>")
        );
        assert_eq!(get("PROVISIONER_MASTER_KEY"), None);
        assert_eq!(
            get("PROVISIONER_MASTER_KEY_FILE").as_deref(),
            key_file.to_str()
        );
        assert_eq!(
            get("PROVISIONER_DATABASE_URL").as_deref(),
            Some("postgres://app:***@db/prov?sslpassword=***")
        );
        assert_eq!(
            lines.len(),
            KNOWN_VARS.len() - 1,
            "every setting but CONFIG"
        );
    }

    #[test]
    fn secret_files_are_read_trimmed_and_exclusive_with_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let (secret_file, url_file) = (dir.path().join("hs256"), dir.path().join("db-url"));
        std::fs::write(&secret_file, "file-hs-secret-0123456789abcdefghij\n").unwrap();
        std::fs::write(&url_file, "postgres://app:file-pw@db/prov\r\n").unwrap();
        let mut s = Settings {
            jwt_hs256_secret_file: Some(secret_file.clone()),
            database_url_file: Some(url_file.clone()),
            ..Settings::default()
        };
        s.read_secret_files(false).unwrap();
        assert_eq!(
            s.jwt_hs256_secret.as_ref().unwrap().expose_secret(),
            "file-hs-secret-0123456789abcdefghij"
        );
        assert_eq!(s.database_url, "postgres://app:file-pw@db/prov");
        assert!(!format!("{s:?}").contains("file-pw"));

        let mut s = Settings {
            database_url_file: Some(url_file),
            ..Settings::default()
        };
        let e = s.read_secret_files(true).unwrap_err().to_string();
        assert!(
            e.contains("PROVISIONER_DATABASE_URL and PROVISIONER_DATABASE_URL_FILE"),
            "{e}"
        );

        let mut s = Settings {
            jwt_hs256_secret: Some(SecretString::from("env-hs-secret-0123456789abcdefghij")),
            jwt_hs256_secret_file: Some(secret_file),
            ..Settings::default()
        };
        let e = s.read_secret_files(false).unwrap_err().to_string();
        assert!(e.contains("PROVISIONER_JWT_HS256_SECRET_FILE"), "{e}");
        assert!(!e.contains("hs-secret-0123456789"), "{e}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let mut s = Settings {
            jwt_hs256_secret_file: Some(empty),
            ..Settings::default()
        };
        assert!(
            s.read_secret_files(false)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );

        let key = MasterKey::generate().to_base64();
        let key_file = dir.path().join("master.key");
        std::fs::write(&key_file, &key).unwrap();
        let s = Settings {
            master_key: Some(SecretString::from(key.clone())),
            master_key_file: Some(key_file),
            ..Settings::default()
        };
        let e = s.master_key().unwrap_err().to_string();
        assert!(e.contains("both set") && !e.contains(&key), "{e}");
    }

    #[test]
    fn serve_refuses_to_start_without_master_key_or_verifier() {
        let s = Settings::default();
        assert!(s.master_key().is_err());
        assert!(s.auth_config().is_err());
    }
}
