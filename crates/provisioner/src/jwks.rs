//! `PROVISIONER_JWT_JWKS_URL`: the identity provider's JWKS, fetched over HTTPS (plain HTTP
//! only on a loopback address) with a bounded answer and a timeout. The API crate keeps the
//! keys and decides when to refresh them ([`provisioner_api::auth::RemoteJwks`]); this is only
//! the fetching.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use provisioner_api::auth::{JwksDocument, JwksSource, RemoteJwks};
use reqwest::Url;
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderMap};

/// The largest JWKS answer read (an identity provider's set is a few kilobytes).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Redirects followed, each to an allowed URL.
const MAX_REDIRECTS: usize = 3;

/// Whether the URL names a loopback host: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether the URL names this host or a private network: `localhost`, or a loopback,
/// private, link-local, unique-local or unspecified IP address.
fn is_internal(url: &Url) -> bool {
    if is_loopback(url) {
        return true;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(IpAddr::V4(ip)) => {
            ip.is_private() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast()
        }
        Ok(IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_private() || v4.is_loopback() || v4.is_link_local())
        }
        Err(_) => false,
    }
}

/// Why `url` may not serve the keys tokens are verified with, if it may not: only `https`, or
/// `http` to a loopback address (an attacker on the path could otherwise swap the keys).
fn refusal(url: &Url) -> Option<&'static str> {
    match url.scheme() {
        "https" if url.host().is_some() => None,
        "http" if is_loopback(url) => None,
        "http" => Some("must be https:// (http:// only to a loopback address)"),
        _ => Some("must be an https:// URL"),
    }
}

/// Parses and checks `PROVISIONER_JWT_JWKS_URL`.
pub fn check_url(raw: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("PROVISIONER_JWT_JWKS_URL is not a URL: {e}"))?;
    if let Some(why) = refusal(&url) {
        bail!("PROVISIONER_JWT_JWKS_URL {why}: {}", shown(&url));
    }
    Ok(url)
}

/// The URL without credentials or query, for logs and errors.
fn shown(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

/// `max-age` of a `Cache-Control` header (`no-cache` and `no-store` count as 0).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(v) = value.to_str() else { continue };
        for directive in v.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                return Some(Duration::ZERO);
            }
            if let Some(n) = lower
                .strip_prefix("max-age=")
                .and_then(|secs| secs.trim_matches('"').parse::<u64>().ok())
            {
                found = Some(Duration::from_secs(n));
            }
        }
    }
    found
}

/// Fetches a JWKS over HTTP(S) with reqwest.
pub struct HttpJwksSource {
    http: reqwest::Client,
    url: Url,
    shown: String,
}

impl HttpJwksSource {
    /// A source for `url` (see [`check_url`]); each fetch gives up after `timeout`.
    pub fn new(raw_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let url = check_url(raw_url)?;
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            // A redirect must go to a URL that would be accepted as the setting.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if let Some(why) = refusal(attempt.url()) {
                    attempt.error(format!("redirected to a URL that {why}"))
                } else if attempt
                    .previous()
                    .first()
                    .is_some_and(|first| !is_loopback(first) && is_internal(attempt.url()))
                {
                    // A public identity provider (or an open redirect on its domain) must not
                    // turn the fetch towards this host or its private network.
                    attempt.error("redirected from a public host to a loopback or private address")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("provisioner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the JWKS HTTP client: {e}"))?;
        Ok(Self {
            http,
            shown: shown(&url),
            url,
        })
    }
}

impl JwksSource for HttpJwksSource {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwksDocument, String>> + Send>> {
        let request = self
            .http
            .get(self.url.clone())
            .header(ACCEPT, "application/jwk-set+json, application/json");
        Box::pin(async move {
            let mut resp = request.send().await.map_err(describe_error)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("the JWKS URL answered {status}"));
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
            {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            let max_age = max_age(resp.headers());
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(describe_error)? {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            let json = String::from_utf8(body).map_err(|_| "the JWKS is not UTF-8".to_owned())?;
            Ok(JwksDocument { json, max_age })
        })
    }
}

/// Loads the JWKS at start, then refreshes it in the background (the task runs until aborted).
///
/// A failed first fetch does not stop the service: it starts holding no key from the URL (its
/// tokens answer 401, other verifiers keep working), and the background task retries after 1 s,
/// doubling up to the minimum refresh interval, until a fetch succeeds.
pub async fn start(remote: Arc<RemoteJwks>) -> tokio::task::JoinHandle<()> {
    match remote.refresh().await {
        // The key ids loaded are logged by the fetch itself.
        Ok(_) => {}
        Err(error) => tracing::warn!(
            source = %remote.describe(),
            error.message = %error,
            "JWKS URL: the keys could not be fetched at start; starting anyway: tokens signed with them answer 401 until a retry (in the background) succeeds"
        ),
    }
    tokio::spawn(remote.run())
}

/// A transport error, with its causes (reqwest's top-level message alone says little), without
/// the URL (its query may hold a credential).
fn describe_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "http://127.0.0.1:9464/metrics",
            "http://localhost/x",
            "https://10.1.2.3/jwks",
            "https://192.168.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://0.0.0.0/",
        ] {
            assert!(is_internal(&Url::parse(internal).unwrap()), "{internal}");
        }
        for public in ["https://idp.example.com/jwks", "https://8.8.8.8/"] {
            assert!(!is_internal(&Url::parse(public).unwrap()), "{public}");
        }
    }
    use reqwest::header::HeaderValue;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://127.1.2.3/jwks",
            "http://[::1]:9000/keys",
            "http://localhost/jwks",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.evil.example/jwks",
            "ftp://idp.example.com/jwks",
            "file:///etc/jwks.json",
            "idp.example.com/jwks",
            "",
        ] {
            let e = check_url(bad).unwrap_err().to_string();
            assert!(e.contains("PROVISIONER_JWT_JWKS_URL"), "{bad}: {e}");
        }
        let e = check_url("http://user:pw@idp.example.com/jwks?key=k1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw") && !e.contains("k1"), "{e}");
    }

    #[test]
    fn cache_control_max_age_is_read() {
        let mut h = HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600, must-revalidate"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(3600)));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert_eq!(max_age(&h), Some(Duration::ZERO));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=soon"));
        assert_eq!(max_age(&h), None);
    }
}
