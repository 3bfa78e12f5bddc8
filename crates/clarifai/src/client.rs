//! `ClarifaiClient`: one tenant's view of the API (base URL, user id, PAT) over a shared
//! `reqwest::Client`. Every call goes through [`ClarifaiClient::execute`]: URL building,
//! redacted logging, one decoder, and the retry loop.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use crate::config::ClientConfig;
use crate::decode::decode_scrubbed;
use crate::error::{ClarifaiError, ErrorKind};
use crate::limit::AccountLimiter;
use crate::retry::{self, Idempotency, Op};
use provisioner_core::budget::Lane;

/// Upper bound on pages fetched by one listing, against an upstream that ignores `page`.
const MAX_PAGES: u32 = 10_000;

/// A typed client of the Clarifai v2 REST API for one account. Cheap to build per tenant: it
/// shares the `reqwest::Client` (and its connection pool) it is given.
#[derive(Clone)]
pub struct ClarifaiClient {
    pub(crate) http: reqwest::Client,
    pub(crate) config: ClientConfig,
    base: Url,
    pub(crate) user_id: String,
    pat: SecretString,
    limiter: Option<(Arc<AccountLimiter>, Lane, String, u32)>,
}

impl fmt::Debug for ClarifaiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClarifaiClient")
            .field("base_url", &self.base.as_str())
            .field("user_id", &self.user_id)
            .field("pat", &"[REDACTED]")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One path segment: shown in logs as is, or a secret (a key id) shown as `{key}`.
#[derive(Clone, Copy)]
pub(crate) enum Seg<'a> {
    Plain(&'a str),
    Secret(&'a SecretString),
}

/// One request, as [`ClarifaiClient::execute`] sends it (possibly several times).
pub(crate) struct Call<'a> {
    pub op: &'static str,
    pub method: Method,
    pub path: Vec<Seg<'a>>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub idempotency: Idempotency,
}

impl ClarifaiClient {
    /// A client for the account `user_id` at `base_url` (e.g. `https://api.clarifai.com`, or
    /// a dedicated or on-premises deployment, possibly with a path prefix), authenticating
    /// with `pat`. Fails with [`ErrorKind::InvalidRequest`] if the URL is not an http(s) base.
    pub fn new(
        http: reqwest::Client,
        config: ClientConfig,
        base_url: &str,
        user_id: impl Into<String>,
        pat: SecretString,
    ) -> Result<Self, ClarifaiError> {
        let invalid = || {
            ClarifaiError::new(
                ErrorKind::InvalidRequest,
                "the upstream base URL is not a valid http(s) URL",
            )
        };
        let base = Url::parse(base_url.trim()).map_err(|_| invalid())?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid());
        }
        Ok(Self {
            http,
            config,
            base,
            user_id: user_id.into(),
            pat,
            limiter: None,
        })
    }

    /// The same client, pacing every request (retries included) through `limiter` at `rate`
    /// per window, waiting in `lane` (requests take turns by `tenant`).
    pub fn with_limiter(
        mut self,
        limiter: Arc<AccountLimiter>,
        lane: Lane,
        tenant: &str,
        rate: u32,
    ) -> Self {
        self.limiter = Some((limiter, lane, tenant.to_owned(), rate));
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The Clarifai user id used in paths.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The JSON body of a request.
    pub(crate) fn json<B: Serialize>(body: &B) -> Result<Vec<u8>, ClarifaiError> {
        serde_json::to_vec(body).map_err(|_| {
            ClarifaiError::new(
                ErrorKind::InvalidRequest,
                "request body could not be encoded",
            )
        })
    }

    /// Sends `call` with retries and decodes the answer into `T`.
    pub(crate) async fn execute<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
    ) -> Result<T, ClarifaiError> {
        let (url, log_path) = self.url(call);
        let secrets: Vec<&str> = call
            .path
            .iter()
            .filter_map(|s| match s {
                Seg::Secret(k) => Some(k.expose_secret()),
                Seg::Plain(_) => None,
            })
            .chain([self.pat.expose_secret()])
            .collect();
        let op = Op {
            name: call.op,
            idempotency: call.idempotency,
            writes: call.method != Method::GET,
        };
        let span =
            tracing::info_span!("clarifai", op = call.op, method = %call.method, path = %log_path);
        retry::run(&self.config, op, |attempt, limit| {
            self.attempt::<T>(call, &url, &log_path, &secrets, attempt, limit)
        })
        .instrument(span)
        .await
    }

    /// The full URL, and the path to log (key ids replaced by `{key}`, no query).
    fn url(&self, call: &Call<'_>) -> (Url, String) {
        let mut url = self.base.clone();
        let mut log_path = self.base.path().trim_end_matches('/').to_owned();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            for seg in &call.path {
                let (real, shown) = match seg {
                    Seg::Plain(s) => (*s, *s),
                    Seg::Secret(k) => (k.expose_secret(), "{key}"),
                };
                segs.push(real);
                log_path.push('/');
                log_path.push_str(shown);
            }
        }
        if !call.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &call.query {
                q.append_pair(k, v);
            }
        }
        (url, log_path)
    }

    /// One attempt: send, read the whole answer within `limit`, decode, log.
    async fn attempt<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        url: &Url,
        log_path: &str,
        secrets: &[&str],
        attempt: u32,
        limit: Duration,
    ) -> Result<T, ClarifaiError> {
        if attempt > 1 {
            metrics::counter!("provisioner_upstream_retries_total", "operation" => call.op)
                .increment(1);
        }
        let _permit = match &self.limiter {
            Some((l, lane, tenant, rate)) => Some({
                let waited = Instant::now();
                let slot = l.acquire(*lane, tenant, *rate).await;
                metrics::histogram!("provisioner_upstream_slot_wait_seconds", "lane" => lane.as_str())
                    .record(waited.elapsed().as_secs_f64());
                slot.map_err(|_| {
                metrics::counter!("provisioner_upstream_requests_total", "operation" => call.op, "outcome" => "busy")
                    .increment(1);
                tracing::warn!(op = call.op, lane = lane.as_str(), "clarifai request not sent: no slot in the account's budget in time");
                ClarifaiError {
                    request_sent: false,
                    ..ClarifaiError::new(
                        ErrorKind::Busy,
                        "the upstream account's request budget had no slot in time; nothing was sent",
                    )
                }
            })?
            }),
            None => None,
        };
        let started = Instant::now();
        let result = match self.send(call, url, limit).await {
            Ok((status, headers, body)) => decode_scrubbed::<T>(status, &headers, &body, secrets)
                .map_err(|e| (Some(status), e)),
            Err(e) => Err((None, e)),
        };
        let elapsed = started.elapsed();
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        metrics::histogram!("provisioner_upstream_request_duration_seconds", "operation" => call.op)
            .record(elapsed.as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err((_, e)) => e.kind.as_str(),
        };
        metrics::counter!("provisioner_upstream_requests_total", "operation" => call.op, "outcome" => outcome)
            .increment(1);
        if matches!(&result, Err((status, e)) if status.or(e.http_status) == Some(429)) {
            metrics::counter!("provisioner_upstream_rate_limited_total", "operation" => call.op)
                .increment(1);
        }
        match result {
            Ok(v) => {
                tracing::info!(op = call.op, method = %call.method, path = %log_path, status = 200u16, attempt, duration_ms, "clarifai request ok");
                Ok(v)
            }
            Err((status, e)) => {
                let e = e.scrub(secrets);
                tracing::warn!(
                    op = call.op,
                    method = %call.method,
                    path = %log_path,
                    status = status.or(e.http_status),
                    code = e.code,
                    kind = %e.kind,
                    req_id = e.req_id.as_deref(),
                    attempt,
                    duration_ms,
                    "clarifai request failed"
                );
                Err(e)
            }
        }
    }

    async fn send(
        &self,
        call: &Call<'_>,
        url: &Url,
        limit: Duration,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), ClarifaiError> {
        let mut auth = HeaderValue::from_str(&format!("Key {}", self.pat.expose_secret()))
            .map_err(|_| ClarifaiError {
                request_sent: false,
                ..ClarifaiError::new(
                    ErrorKind::Unauthenticated,
                    "the PAT is not a valid header value",
                )
            })?;
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(call.method.clone(), url.clone())
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .timeout(limit);
        // The caller's trace, when the call is made for a request (W3C trace context).
        if let Some(trace) = provisioner_core::trace::current() {
            req = req.header("traceparent", trace.child_header());
        }
        if let Some(body) = &call.body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let exchange = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(transport_error(e)),
            Err(_) => Err(ClarifaiError::new(
                ErrorKind::Timeout,
                format!("no complete answer within {limit:?}"),
            )),
        }
    }

    /// Fetches every page of a listing: `page` from 1, stopping on an empty page or one with
    /// fewer than `per_page` items.
    pub(crate) async fn list_pages<W, I>(
        &self,
        op: &'static str,
        path: Vec<Seg<'_>>,
        items: impl Fn(W) -> Vec<I>,
    ) -> Result<Vec<I>, ClarifaiError>
    where
        W: DeserializeOwned,
    {
        let per_page = self.config.per_page.max(1);
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let call = Call {
                op,
                method: Method::GET,
                path: path.clone(),
                query: vec![
                    ("page", page.to_string()),
                    ("per_page", per_page.to_string()),
                ],
                body: None,
                idempotency: Idempotency::Safe,
            };
            let got = items(self.execute::<W>(&call).await?);
            let n = got.len();
            out.extend(got);
            if n == 0 || n < per_page as usize {
                break;
            }
        }
        Ok(out)
    }
}

/// A transport failure, without its URL (which may hold a key id).
fn transport_error(e: reqwest::Error) -> ClarifaiError {
    let e = e.without_url();
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transport
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ClarifaiError {
        request_sent: !e.is_connect(),
        ..ClarifaiError::new(kind, message)
    }
}
