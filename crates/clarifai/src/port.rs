//! Core's [`Upstream`] port over [`ClarifaiClient`]: one client per call, built from the
//! tenant's [`UpstreamAccount`] over a shared `reqwest::Client`, behind the account's rate
//! limiter ([`crate::limit`]) and circuit breaker ([`crate::breaker`]).

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use provisioner_core::UpstreamError;
use provisioner_core::ids::AppId;
use provisioner_core::model::UpstreamAccount;
use provisioner_core::ports::{NewApp, NewKey, Upstream, UpstreamApp, UpstreamBudget, UpstreamKey};
use provisioner_core::secret::KeySecret;
use secrecy::{ExposeSecret, SecretString};

use crate::breaker::{BreakerConfig, BreakerStatus, Breakers, OPEN_MESSAGE, Outcome};
use crate::client::ClarifaiClient;
use crate::config::{ClientConfig, build_http_client};
use crate::error::{ClarifaiError, ErrorKind};
use crate::limit::Limiters;
use crate::types::{ApiKey, App, AppSpec, KeySpec};

/// The Clarifai implementation of [`Upstream`]. Each call acts for the account it is given;
/// the only state kept is, per upstream account (base URL and user id), one rate limiter
/// (`account.rate_limit`) and one circuit breaker ([`BreakerConfig`]). Clones share both.
///
/// While an account's breaker is open, its calls fail at once with
/// [`UpstreamError::Unavailable`] (message [`OPEN_MESSAGE`], not ambiguous) without sending
/// anything.
#[derive(Clone, Debug)]
pub struct ClarifaiUpstream {
    http: reqwest::Client,
    config: ClientConfig,
    limiters: Arc<Limiters>,
    breakers: Arc<Breakers>,
}

impl ClarifaiUpstream {
    /// Over an existing HTTP client (share one per process), with the default breaker.
    pub fn new(http: reqwest::Client, config: ClientConfig) -> Self {
        let limiters = Limiters::new(
            Arc::new(provisioner_core::budget::LocalBudget::default()),
            config.max_queue_wait,
        );
        Self {
            http,
            config,
            limiters: Arc::new(limiters),
            breakers: Arc::default(),
        }
    }

    /// The same, spending `budget` (e.g. one in the database shared by every replica) instead
    /// of an in-process one. Limiter states start afresh.
    pub fn with_budget(mut self, budget: Arc<dyn UpstreamBudget>) -> Self {
        self.limiters = Arc::new(Limiters::new(budget, self.config.max_queue_wait));
        self
    }

    /// The same, with every account's circuit breaker set to `breaker`
    /// ([`BreakerConfig::disabled`] turns them off). Breaker states start afresh.
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breakers = Arc::new(Breakers::new(breaker));
        self
    }

    /// The circuit breaker settings.
    pub fn breaker_config(&self) -> BreakerConfig {
        self.breakers.config()
    }

    /// The state of each account's breaker (accounts seen so far, sorted by label; labels
    /// carry the base URL and user id, never the PAT). Empty when breakers are disabled.
    pub fn breaker_states(&self) -> Vec<BreakerStatus> {
        self.breakers.statuses()
    }

    /// The state of one account's breaker, if a call has made one.
    pub fn breaker_state_of(&self, base_url: &str, user_id: &str) -> Option<BreakerStatus> {
        self.breakers.status_of(base_url, user_id)
    }

    /// Builds its own HTTP client from `config` (see [`build_http_client`]).
    pub fn from_config(config: ClientConfig) -> Result<Self, ClarifaiError> {
        Ok(Self::new(build_http_client(&config)?, config))
    }

    /// The client for one account.
    pub fn client(&self, account: &UpstreamAccount) -> Result<ClarifaiClient, UpstreamError> {
        ClarifaiClient::new(
            self.http.clone(),
            self.config.clone(),
            &account.base_url,
            account.user_id.as_str(),
            account.pat.secret().clone(),
        )
        .map(|c| {
            let rl = account.rate_limit;
            let limiter = self.limiters.get(&account.key(), rl.max_concurrency);
            c.with_limiter(
                limiter,
                account.lane,
                account.tenant_id.as_str(),
                rl.requests_per_second,
            )
        })
        .map_err(to_upstream)
    }

    /// Runs one operation for `account` through its circuit breaker: refused at once while
    /// the breaker is open, otherwise its outcome is reported to the breaker (judged on the
    /// client's error, before mapping: an answer, even a rejection, proves the upstream well).
    async fn guarded<T, F, Fut>(&self, account: &UpstreamAccount, op: F) -> Result<T, UpstreamError>
    where
        F: FnOnce(ClarifaiClient) -> Fut,
        Fut: Future<Output = Result<T, ClarifaiError>>,
    {
        let client = self.client(account)?;
        let permit = match self
            .breakers
            .get(&account.base_url, account.user_id.as_str())
        {
            Some(breaker) => Some(breaker.admit().ok_or_else(|| {
                tracing::debug!(
                    tenant = account.tenant_id.as_str(),
                    "clarifai call refused: circuit open"
                );
                UpstreamError::Unavailable {
                    message: OPEN_MESSAGE.to_owned(),
                    ambiguous: false,
                }
            })?),
            None => None,
        };
        let result = op(client).await;
        match (permit, result.as_ref().err().map(|e| e.kind)) {
            // Not sent for want of budget: says nothing about the upstream's health.
            (_, Some(ErrorKind::Busy)) | (None, _) => {}
            (Some(permit), kind) => permit.record(Outcome::of(kind)),
        }
        result.map_err(to_upstream)
    }
}

/// Maps a client error to core's taxonomy (by what the caller does next).
pub fn to_upstream(e: ClarifaiError) -> UpstreamError {
    match e.kind {
        ErrorKind::Unauthenticated | ErrorKind::Forbidden => {
            UpstreamError::Unauthorized(e.to_string())
        }
        ErrorKind::NotFound => UpstreamError::NotFound,
        ErrorKind::AlreadyExists => UpstreamError::AlreadyExists,
        ErrorKind::InvalidRequest => UpstreamError::Rejected(e.to_string()),
        // Nothing sent; but an earlier attempt may have been: then it is an ambiguous failure.
        ErrorKind::Busy if e.ambiguous => UpstreamError::Unavailable {
            message: e.to_string(),
            ambiguous: true,
        },
        ErrorKind::Busy => UpstreamError::Busy(e.to_string()),
        ErrorKind::Throttled
        | ErrorKind::UpstreamInternal
        | ErrorKind::Transport
        | ErrorKind::Timeout
        | ErrorKind::Protocol => UpstreamError::Unavailable {
            message: e.to_string(),
            ambiguous: e.ambiguous,
        },
    }
}

fn to_app(a: App) -> UpstreamApp {
    UpstreamApp {
        id: a.id,
        description: a.description,
        metadata: a.metadata,
    }
}

fn to_key(k: ApiKey) -> Option<UpstreamKey> {
    let secret = KeySecret::parse(k.id.expose_secret()).ok()?;
    Some(UpstreamKey {
        secret,
        description: k.description,
        scopes: k.scopes,
        app_ids: k.app_ids,
    })
}

#[async_trait]
impl Upstream for ClarifaiUpstream {
    async fn verify_credential(
        &self,
        account: &UpstreamAccount,
    ) -> Result<Vec<String>, UpstreamError> {
        self.guarded(account, |c| async move { c.my_scopes().await })
            .await
    }

    async fn create_app(
        &self,
        account: &UpstreamAccount,
        app: &NewApp,
    ) -> Result<UpstreamApp, UpstreamError> {
        let spec = AppSpec {
            id: app.id.as_str().to_owned(),
            description: app.description.clone(),
            default_workflow: app.default_workflow.clone(),
            metadata: app.metadata.clone(),
        };
        self.guarded(account, |c| async move { c.create_app(&spec).await })
            .await
            .map(to_app)
    }

    async fn get_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<UpstreamApp, UpstreamError> {
        self.guarded(account, |c| async move { c.get_app(app_id.as_str()).await })
            .await
            .map(to_app)
    }

    async fn list_apps(
        &self,
        account: &UpstreamAccount,
    ) -> Result<Vec<UpstreamApp>, UpstreamError> {
        let apps = self
            .guarded(account, |c| async move { c.list_apps().await })
            .await?;
        Ok(apps.into_iter().map(to_app).collect())
    }

    async fn delete_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<(), UpstreamError> {
        self.guarded(
            account,
            |c| async move { c.delete_app(app_id.as_str()).await },
        )
        .await
    }

    async fn create_key(
        &self,
        account: &UpstreamAccount,
        key: &NewKey,
    ) -> Result<UpstreamKey, UpstreamError> {
        let spec = KeySpec {
            app_id: key.app_id.as_str().to_owned(),
            description: key.description.clone(),
            scopes: key.scopes.names(),
        };
        let created = self
            .guarded(account, |c| async move { c.create_key(&spec).await })
            .await?;
        // The key exists upstream but its id is not a usable secret: report it as a success we
        // could not see, so the caller reconciles (and deletes it) instead of trusting it.
        // (The upstream did answer, so the breaker counted it as an answer.)
        to_key(created).ok_or_else(|| UpstreamError::Unavailable {
            message: "the upstream returned a key id that is not a usable secret".into(),
            ambiguous: true,
        })
    }

    async fn list_app_keys(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<Vec<UpstreamKey>, UpstreamError> {
        let keys = self
            .guarded(account, |c| async move {
                c.list_app_keys(app_id.as_str()).await
            })
            .await?;
        let total = keys.len();
        let usable: Vec<UpstreamKey> = keys.into_iter().filter_map(to_key).collect();
        if usable.len() < total {
            tracing::warn!(
                app_id = app_id.as_str(),
                skipped = total - usable.len(),
                "clarifai listed keys whose ids are not usable secrets; skipped"
            );
        }
        Ok(usable)
    }

    async fn delete_key(
        &self,
        account: &UpstreamAccount,
        key: &KeySecret,
    ) -> Result<(), UpstreamError> {
        let id: SecretString = key.secret().clone();
        self.guarded(account, |c| async move { c.delete_key(&id).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_what_to_do_next() {
        let e = |kind| ClarifaiError {
            code: Some(11100),
            ..ClarifaiError::new(kind, "m")
        };
        assert!(matches!(
            to_upstream(e(ErrorKind::Unauthenticated)),
            UpstreamError::Unauthorized(_)
        ));
        assert!(matches!(
            to_upstream(e(ErrorKind::Forbidden)),
            UpstreamError::Unauthorized(_)
        ));
        assert!(matches!(
            to_upstream(e(ErrorKind::NotFound)),
            UpstreamError::NotFound
        ));
        assert!(matches!(
            to_upstream(e(ErrorKind::AlreadyExists)),
            UpstreamError::AlreadyExists
        ));
        assert!(
            matches!(to_upstream(e(ErrorKind::InvalidRequest)), UpstreamError::Rejected(m) if m.contains("11100"))
        );
        for kind in [
            ErrorKind::Throttled,
            ErrorKind::UpstreamInternal,
            ErrorKind::Transport,
            ErrorKind::Timeout,
            ErrorKind::Protocol,
        ] {
            let mut err = e(kind);
            assert!(matches!(
                to_upstream(err.clone()),
                UpstreamError::Unavailable {
                    ambiguous: false,
                    ..
                }
            ));
            err.ambiguous = true;
            assert!(to_upstream(err).is_ambiguous());
        }
    }

    #[test]
    fn keys_with_unusable_ids_are_skipped() {
        let k = |id: &str| ApiKey {
            id: SecretString::from(id.to_owned()),
            key_type: None,
            description: "d".into(),
            scopes: vec!["Predict".into()],
            app_ids: vec!["a".into()],
            created_at: None,
            expires_at: None,
        };
        assert!(to_key(k("")).is_none());
        assert!(to_key(k("has space")).is_none());
        let ok = to_key(k("abc123")).unwrap();
        assert_eq!(
            (ok.secret.expose(), ok.app_ids.as_slice()),
            ("abc123", ["a".to_owned()].as_slice())
        );
    }
}
