//! The API operations of [`ClarifaiClient`]: apps, keys and the PAT's own scopes.
//! Paths and bodies as in docs/upstream.md ("Endpoints the service uses", "Requests and
//! answers"); one app or key per create.

use reqwest::Method;
use secrecy::SecretString;

use crate::client::{Call, ClarifaiClient, Seg};
use crate::error::{ClarifaiError, ErrorKind};
use crate::retry::Idempotency;
use crate::types::{ApiKey, App, AppSpec, KeySpec};
use crate::wire;

impl ClarifaiClient {
    fn call<'a>(
        &'a self,
        op: &'static str,
        method: Method,
        rest: &[Seg<'a>],
        idempotency: Idempotency,
    ) -> Call<'a> {
        let mut path = vec![
            Seg::Plain("v2"),
            Seg::Plain("users"),
            Seg::Plain(&self.user_id),
        ];
        path.extend_from_slice(rest);
        Call {
            op,
            method,
            path,
            query: Vec::new(),
            body: None,
            idempotency,
        }
    }

    /// Creates one private app with a caller-chosen id, base workflow
    /// `clarifai/main/<default_workflow>` and metadata (PostApps). Safe to repeat: a repeat
    /// fails with [`ErrorKind::AlreadyExists`].
    pub async fn create_app(&self, spec: &AppSpec) -> Result<App, ClarifaiError> {
        let body = wire::PostApps {
            apps: [wire::NewAppWire {
                id: &spec.id,
                description: &spec.description,
                default_workflow: wire::WorkflowRef {
                    id: &spec.default_workflow,
                    app_id: "main",
                    user_id: "clarifai",
                },
                metadata: &spec.metadata,
                visibility: wire::Visibility {
                    gettable: "PRIVATE",
                },
            }],
        };
        let mut call = self.call(
            "create_app",
            Method::POST,
            &[Seg::Plain("apps")],
            Idempotency::Safe,
        );
        call.body = Some(Self::json(&body)?);
        let answer: wire::MultiApp = self.execute(&call).await?;
        exactly_one(answer.apps, "apps").map(App::from)
    }

    /// One app (GetApp).
    pub async fn get_app(&self, app_id: &str) -> Result<App, ClarifaiError> {
        let call = self.call(
            "get_app",
            Method::GET,
            &[Seg::Plain("apps"), Seg::Plain(app_id)],
            Idempotency::Safe,
        );
        let answer: wire::SingleApp = self.execute(&call).await?;
        Ok(answer.app.into())
    }

    /// Every app of the user, all pages (ListApps).
    pub async fn list_apps(&self) -> Result<Vec<App>, ClarifaiError> {
        let path = self
            .call(
                "list_apps",
                Method::GET,
                &[Seg::Plain("apps")],
                Idempotency::Safe,
            )
            .path;
        self.list_pages("list_apps", path, |w: wire::MultiApp| {
            w.apps.into_iter().map(App::from).collect()
        })
        .await
    }

    /// Deletes an app and, upstream, its keys (DeleteApp).
    pub async fn delete_app(&self, app_id: &str) -> Result<(), ClarifaiError> {
        let call = self.call(
            "delete_app",
            Method::DELETE,
            &[Seg::Plain("apps"), Seg::Plain(app_id)],
            Idempotency::Safe,
        );
        self.execute::<wire::Base>(&call).await.map(|_| ())
    }

    /// Creates one key restricted to one app of the user, with exactly `spec.scopes` (PostKeys).
    /// Not safe to repeat: it is retried only when the previous attempt certainly had no
    /// effect, and a failure after the request may have arrived comes back `ambiguous`.
    pub async fn create_key(&self, spec: &KeySpec) -> Result<ApiKey, ClarifaiError> {
        let body = wire::PostKeys {
            keys: [wire::NewKeyWire {
                description: &spec.description,
                scopes: &spec.scopes,
                apps: [wire::AppRef {
                    id: &spec.app_id,
                    user_id: &self.user_id,
                }],
            }],
        };
        let mut call = self.call(
            "create_key",
            Method::POST,
            &[Seg::Plain("keys")],
            Idempotency::Unsafe,
        );
        call.body = Some(Self::json(&body)?);
        let answer: wire::MultiKey = self.execute(&call).await?;
        // A success without the key: it exists upstream, but we cannot know it.
        exactly_one(answer.keys, "keys")
            .map(ApiKey::from)
            .map_err(|e| ClarifaiError {
                ambiguous: true,
                ..e
            })
    }

    /// One key by its id (GetKey). The id travels in the path; logs show `{key}`.
    pub async fn get_key(&self, key_id: &SecretString) -> Result<ApiKey, ClarifaiError> {
        let call = self.call(
            "get_key",
            Method::GET,
            &[Seg::Plain("keys"), Seg::Secret(key_id)],
            Idempotency::Safe,
        );
        let answer: wire::SingleKey = self.execute(&call).await?;
        Ok(answer.key.into())
    }

    /// Every key of the user, PATs included, all pages (ListKeys).
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, ClarifaiError> {
        let path = self
            .call(
                "list_keys",
                Method::GET,
                &[Seg::Plain("keys")],
                Idempotency::Safe,
            )
            .path;
        self.list_pages("list_keys", path, keys).await
    }

    /// The keys of one app, all pages (ListAppKeys).
    pub async fn list_app_keys(&self, app_id: &str) -> Result<Vec<ApiKey>, ClarifaiError> {
        let rest = [Seg::Plain("apps"), Seg::Plain(app_id), Seg::Plain("keys")];
        let path = self
            .call("list_app_keys", Method::GET, &rest, Idempotency::Safe)
            .path;
        self.list_pages("list_app_keys", path, keys).await
    }

    /// Deletes a key (DeleteKey). The id travels in the path; logs show `{key}`.
    pub async fn delete_key(&self, key_id: &SecretString) -> Result<(), ClarifaiError> {
        let call = self.call(
            "delete_key",
            Method::DELETE,
            &[Seg::Plain("keys"), Seg::Secret(key_id)],
            Idempotency::Safe,
        );
        self.execute::<wire::Base>(&call).await.map(|_| ())
    }

    /// The scopes of the client's PAT (MyScopesUser, `GET /v2/users/{uid}/myscopes`); also
    /// verifies that the PAT is valid and may act for the user.
    pub async fn my_scopes(&self) -> Result<Vec<String>, ClarifaiError> {
        let call = self.call(
            "my_scopes",
            Method::GET,
            &[Seg::Plain("myscopes")],
            Idempotency::Safe,
        );
        let answer: wire::MyScopes = self.execute(&call).await?;
        Ok(answer.scopes)
    }
}

fn keys(w: wire::MultiKey) -> Vec<ApiKey> {
    w.keys.into_iter().map(ApiKey::from).collect()
}

fn exactly_one<T>(items: Vec<T>, what: &str) -> Result<T, ClarifaiError> {
    let n = items.len();
    let mut it = items.into_iter();
    match (it.next(), n) {
        (Some(one), 1) => Ok(one),
        _ => Err(ClarifaiError::new(
            ErrorKind::Protocol,
            format!("a create answered success with {n} {what} instead of 1"),
        )),
    }
}
