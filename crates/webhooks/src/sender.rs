//! [`HttpWebhookSender`]: one signed delivery attempt over reqwest.
//!
//! Guarding the target ("SSRF"): [`check_url`] refuses what the URL says by itself (scheme,
//! IP literal, `localhost`). A host name is resolved by this crate's resolver, which the shared
//! client uses for every new connection: it resolves the name (`tokio::net::lookup_host`) and
//! refuses the connection if *any* address is non-public ([`is_non_public`]); otherwise the
//! client connects to exactly those addresses. The check and the connect use the same lookup,
//! so a name re-pointed in between (DNS rebinding) cannot reach an internal address. A pooled
//! connection is reused only for the same scheme, host and port, and was checked when opened.
//! No proxy is used (a proxy would resolve the name itself), and redirects are never followed.

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use provisioner_core::ports::WebhookSender;
use provisioner_core::webhooks::{SendResult, WebhookRequest};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::time::Instant;

use crate::sign::signature_header;
use crate::target::{check_url, is_non_public};

/// The default `User-Agent`.
pub const DEFAULT_USER_AGENT: &str = concat!("provisioner-webhooks/", env!("CARGO_PKG_VERSION"));

/// The longest error text returned in [`SendResult::NoResponse`].
const MAX_ERROR_CHARS: usize = 300;

/// The `Refused` reason when a host name resolves to a non-public address. The addresses are
/// not named: the reason is shown to the tenant, who must not learn the internal DNS.
const RESOLVES_INTERNAL: &str =
    "the endpoint's host name resolves to a loopback, private or otherwise non-public address";

/// How the sender behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// The whole attempt: resolving, connecting, sending, and the response's status line and
    /// headers (the body is never read). Default 15 s (the specification says 15–30 s).
    pub timeout: Duration,
    /// Allow loopback, private and other non-public targets (tests on loopback, or a
    /// deployment whose receivers are on its own network). Default `false`.
    pub allow_private_targets: bool,
    /// Allow `http://` endpoints. Default `false`.
    pub allow_http: bool,
    /// The `User-Agent` sent. Default `provisioner-webhooks/<version>`.
    pub user_agent: String,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            allow_private_targets: false,
            allow_http: false,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
        }
    }
}

/// The HTTP client could not be built (e.g. a `User-Agent` that is not a header value).
#[derive(Debug, thiserror::Error)]
#[error("could not build the webhook HTTP client: {0}")]
pub struct BuildError(String);

/// Sends webhook deliveries over HTTP(S); see the module documentation for the target checks.
/// Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct HttpWebhookSender {
    http: reqwest::Client,
    config: SenderConfig,
}

impl std::fmt::Debug for HttpWebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWebhookSender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A connection refused by [`GuardedResolver`] (found again in the error's causes).
#[derive(Debug)]
struct ResolvesInternal;

impl std::fmt::Display for ResolvesInternal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(RESOLVES_INTERNAL)
    }
}

impl std::error::Error for ResolvesInternal {}

/// Resolves host names for the client, refusing names with a non-public address.
#[derive(Clone)]
struct GuardedResolver {
    allow_private: bool,
    /// Tests: every name resolves to these addresses instead of through the system.
    #[cfg(test)]
    fixed: Option<Vec<std::net::IpAddr>>,
}

impl GuardedResolver {
    async fn lookup(&self, host: String) -> std::io::Result<Vec<SocketAddr>> {
        #[cfg(test)]
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.iter().map(|ip| SocketAddr::new(*ip, 0)).collect());
        }
        // Port 0: the client puts the URL's port (or the scheme's) in.
        Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect())
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.lookup(host).await?;
            if !this.allow_private && addrs.iter().any(|a| is_non_public(a.ip())) {
                return Err(Box::new(ResolvesInternal) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl HttpWebhookSender {
    /// A sender with its own client (rustls, no redirects, no proxy, `config.timeout`).
    pub fn new(config: SenderConfig) -> Result<Self, BuildError> {
        let resolver = GuardedResolver {
            allow_private: config.allow_private_targets,
            #[cfg(test)]
            fixed: None,
        };
        Self::with_resolver(config, resolver)
    }

    fn with_resolver(config: SenderConfig, resolver: GuardedResolver) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .no_proxy()
            .dns_resolver(resolver)
            .user_agent(config.user_agent.as_str())
            .build()
            .map_err(|e| BuildError(e.without_url().to_string()))?;
        Ok(Self { http, config })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SenderConfig {
        &self.config
    }
}

/// The request's headers (the client adds `User-Agent`); an error if no secret can sign or a
/// value is not a header value.
fn headers(request: &WebhookRequest) -> Result<HeaderMap, String> {
    let signature = signature_header(
        &request.secrets,
        &request.msg_id,
        request.timestamp,
        &request.body,
    );
    if signature.is_empty() {
        return Err("the endpoint has no valid signing secret".to_owned());
    }
    let value = |v: &str, what: &str| {
        HeaderValue::from_str(v).map_err(|_| format!("the {what} is not a valid header value"))
    };
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        HeaderName::from_static("webhook-id"),
        value(&request.msg_id, "message id")?,
    );
    h.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(request.timestamp),
    );
    h.insert(
        HeaderName::from_static("webhook-signature"),
        value(&signature, "signature")?,
    );
    Ok(h)
}

/// `Retry-After` as a delay: seconds, or an HTTP date (a past date is zero).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A failed attempt: refused by the resolver, or no response (with the causes, without the URL,
/// whose query may hold a credential).
fn failure(e: reqwest::Error) -> SendResult {
    let e = e.without_url();
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if s.is::<ResolvesInternal>() {
            return SendResult::Refused(RESOLVES_INTERNAL.to_owned());
        }
        source = s.source();
    }
    let timed_out = e.is_timeout();
    let mut text = if timed_out {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        // Skip repeats, and the timeout's own "operation timed out".
        let repeated = text.ends_with(&part) || (timed_out && part == "operation timed out");
        if !repeated {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    SendResult::NoResponse {
        error: text,
        timed_out,
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> SendResult {
        let url = match check_url(&request.url, &self.config) {
            Ok(url) => url,
            Err(why) => {
                tracing::debug!(msg_id = %request.msg_id, reason = %why, "webhook target refused");
                return SendResult::Refused(why);
            }
        };
        let headers = match headers(request) {
            Ok(h) => h,
            Err(why) => return SendResult::Refused(why),
        };
        // Logged: the host only (a path or query may hold a credential, e.g. chat hooks).
        let host = url.host_str().unwrap_or_default().to_owned();
        let started = Instant::now();
        let sent = self
            .http
            .post(url)
            .headers(headers)
            .body(request.body.clone())
            .send()
            .await;
        let result = match sent {
            // The body is never read: dropping the response closes the connection if the
            // receiver sent one.
            Ok(response) => SendResult::Status {
                code: response.status().as_u16(),
                retry_after: retry_after(response.headers()),
            },
            Err(e) => failure(e),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            SendResult::Status { code, .. } => tracing::debug!(
                msg_id = %request.msg_id, host = %host, status = code, elapsed_ms,
                "webhook attempt answered"
            ),
            SendResult::NoResponse { error, timed_out } => tracing::debug!(
                msg_id = %request.msg_id, host = %host, error.message = %error, timed_out,
                elapsed_ms, "webhook attempt got no response"
            ),
            SendResult::Refused(why) => tracing::debug!(
                msg_id = %request.msg_id, host = %host, reason = %why, "webhook target refused"
            ),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn request(url: String) -> WebhookRequest {
        WebhookRequest {
            url,
            msg_id: "msg_test".to_owned(),
            timestamp: 1_700_000_000,
            body: "{}".to_owned(),
            secrets: vec![SecretString::from(
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned(),
            )],
        }
    }

    /// A sender whose resolver maps every name to `ip`, as a rebinding name would.
    fn sender_resolving_to(ip: IpAddr, allow_private: bool) -> HttpWebhookSender {
        let config = SenderConfig {
            allow_http: true,
            allow_private_targets: allow_private,
            timeout: Duration::from_secs(5),
            ..SenderConfig::default()
        };
        let resolver = GuardedResolver {
            allow_private,
            fixed: Some(vec![ip]),
        };
        HttpWebhookSender::with_resolver(config, resolver).unwrap()
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_and_never_connected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sender = sender_resolving_to(IpAddr::V4(Ipv4Addr::LOCALHOST), false);
        let result = sender
            .send(&request(format!(
                "http://hooks.example.com:{port}/in?token=sekrit"
            )))
            .await;
        assert_eq!(result, SendResult::Refused(RESOLVES_INTERNAL.to_owned()));
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "no connection may reach the listener");
    }

    #[tokio::test]
    async fn the_connection_goes_to_the_resolved_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf).to_ascii_lowercase()
        });
        let sender = sender_resolving_to(IpAddr::V4(Ipv4Addr::LOCALHOST), true);
        let result = sender
            .send(&request(format!("http://hooks.example.com:{port}/in")))
            .await;
        assert_eq!(
            result,
            SendResult::Status {
                code: 204,
                retry_after: None
            }
        );
        let seen = server.await.unwrap();
        assert!(
            seen.contains(&format!("host: hooks.example.com:{port}")),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn the_guard_passes_public_addresses_and_refuses_any_non_public_one() {
        let resolve = |allow_private: bool, ips: &[&str]| {
            let r = GuardedResolver {
                allow_private,
                fixed: Some(ips.iter().map(|s| s.parse().unwrap()).collect()),
            };
            r.resolve("hooks.example.com".parse().unwrap())
        };
        let addrs: Vec<SocketAddr> = resolve(false, &["1.1.1.1", "2606:4700::1111"])
            .await
            .unwrap()
            .collect();
        assert_eq!(addrs.len(), 2);
        // One internal address among public ones refuses the name.
        let err = match resolve(false, &["1.1.1.1", "10.0.0.1"]).await {
            Err(e) => e,
            Ok(_) => panic!("a name with a private address must be refused"),
        };
        assert!(err.is::<ResolvesInternal>());
        assert!(resolve(true, &["1.1.1.1", "10.0.0.1"]).await.is_ok());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
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
        h.insert(RETRY_AFTER, HeaderValue::from_static("-5"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn no_valid_secret_is_refused_before_sending() {
        let mut r = request("https://hooks.example.com/".to_owned());
        r.secrets = vec![SecretString::from("whsec_short".to_owned())];
        assert!(headers(&r).is_err());
        r.secrets.clear();
        assert!(headers(&r).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = HttpWebhookSender::new(SenderConfig::default()).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("HttpWebhookSender"), "{shown}");
    }
}
