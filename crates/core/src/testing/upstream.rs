//! The fake Clarifai account: apps, keys, "not found", "already exists", and failures or
//! crashes injected at a chosen call.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::error::UpstreamError;
use crate::ids::AppId;
use crate::model::UpstreamAccount;
use crate::ports::{NewApp, NewKey, Upstream, UpstreamApp, UpstreamKey};
use crate::secret::KeySecret;

use super::lock;

/// Which upstream call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// verify_credential
    Verify,
    /// create_app
    CreateApp,
    /// get_app
    GetApp,
    /// list_apps
    ListApps,
    /// delete_app
    DeleteApp,
    /// create_key
    CreateKey,
    /// list_app_keys
    ListAppKeys,
    /// delete_key
    DeleteKey,
}

/// What happens at a faulted call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fail without effect.
    Fail(UpstreamError),
    /// Apply the change, then fail as ambiguous (the answer was lost).
    CommitThenLose,
    /// Never return (the process "crashes" here); `commit` applies the change first.
    Hang {
        /// Whether the change happens upstream before the hang.
        commit: bool,
    },
}

/// One fake app.
#[derive(Debug, Clone)]
pub struct FakeApp {
    /// Id.
    pub id: String,
    /// Metadata.
    pub metadata: serde_json::Value,
    /// Description.
    pub description: String,
}

/// One fake key.
#[derive(Debug, Clone)]
pub struct FakeKey {
    /// The secret.
    pub id: String,
    /// App it is restricted to.
    pub app_id: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Description.
    pub description: String,
    /// Other apps it reaches besides `app_id` (a key made by hand in the portal).
    pub also: Vec<String>,
}

#[derive(Default)]
struct UpState {
    apps: BTreeMap<String, FakeApp>,
    keys: BTreeMap<String, FakeKey>,
    calls: Vec<Call>,
    /// Faults by the index of the call they apply to (0-based over all calls), or by kind.
    at_index: BTreeMap<usize, Fault>,
    by_call: BTreeMap<String, (Fault, u32)>,
    /// Whether a created app gets a key of its own (no marker, every scope).
    auto_app_key: bool,
    minted: u64,
}

/// The description of a key the fake mints with a new app.
pub const MINTED_KEY_DESCRIPTION: &str = "App-specific key created with the app";

/// A fake Clarifai account; the PAT `bad` is refused.
#[derive(Default)]
pub struct FakeUpstream {
    state: Mutex<UpState>,
    next_key: AtomicU64,
}

impl FakeUpstream {
    /// Apps upstream.
    pub fn apps(&self) -> Vec<FakeApp> {
        lock(&self.state).apps.values().cloned().collect()
    }
    /// Keys upstream.
    pub fn keys(&self) -> Vec<FakeKey> {
        lock(&self.state).keys.values().cloned().collect()
    }
    /// Calls made so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }
    /// Injects `fault` at the `index`-th call from now on (0-based, counting all calls).
    pub fn fault_at(&self, index: usize, fault: Fault) {
        lock(&self.state).at_index.insert(index, fault);
    }
    /// Removes every fault not triggered yet.
    pub fn clear_faults(&self) {
        let mut st = lock(&self.state);
        st.at_index.clear();
        st.by_call.clear();
    }
    /// Injects `fault` on the next `times` calls of kind `call`.
    pub fn fault_on(&self, call: Call, fault: Fault, times: u32) {
        lock(&self.state)
            .by_call
            .insert(format!("{call:?}"), (fault, times));
    }
    /// Adds an app out of band (someone else's, or a planted orphan).
    pub fn plant_app(&self, id: &str, metadata: serde_json::Value) {
        lock(&self.state).apps.insert(
            id.into(),
            FakeApp {
                id: id.into(),
                metadata,
                description: String::new(),
            },
        );
    }
    /// Makes every app created from now on come with a key of its own, as the portal does:
    /// no marker of this service, every scope (`clarifai-sim --auto-app-key`).
    pub fn set_auto_app_key(&self, enabled: bool) {
        lock(&self.state).auto_app_key = enabled;
    }
    /// Keys minted with an app so far.
    pub fn minted(&self) -> u64 {
        lock(&self.state).minted
    }
    /// Removes a key out of band.
    pub fn remove_key(&self, id: &str) {
        lock(&self.state).keys.remove(id);
    }
    /// Adds a key out of band on `app_id` (someone made it by hand, or the service lost track).
    pub fn plant_key(&self, app_id: &str, id: &str, description: &str, scopes: &[&str]) {
        lock(&self.state).keys.insert(
            id.into(),
            FakeKey {
                id: id.into(),
                app_id: app_id.into(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                description: description.into(),
                also: Vec::new(),
            },
        );
    }
    /// Adds a key out of band that reaches `app_id` and `also` (listed under each).
    pub fn plant_shared_key(&self, app_id: &str, also: &str, id: &str, scopes: &[&str]) {
        lock(&self.state).keys.insert(
            id.into(),
            FakeKey {
                id: id.into(),
                app_id: app_id.into(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                description: "shared by hand".into(),
                also: vec![also.to_owned()],
            },
        );
    }
    /// Replaces a key's scopes out of band (scope drift); false if there is no such key.
    pub fn set_key_scopes(&self, id: &str, scopes: &[&str]) -> bool {
        match lock(&self.state).keys.get_mut(id) {
            Some(k) => {
                k.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
                true
            }
            None => false,
        }
    }
    /// Removes an app and its keys out of band.
    pub fn remove_app(&self, id: &str) {
        let mut st = lock(&self.state);
        st.apps.remove(id);
        st.keys.retain(|_, k| k.app_id != id);
    }

    /// Records the call and returns its fault, if any.
    fn enter(&self, call: Call) -> Option<Fault> {
        let mut st = lock(&self.state);
        let idx = st.calls.len();
        st.calls.push(call);
        if let Some(f) = st.at_index.remove(&idx) {
            return Some(f);
        }
        let k = format!("{call:?}");
        let (fault, left) = st.by_call.get_mut(&k)?;
        let f = fault.clone();
        *left -= 1;
        if *left == 0 {
            st.by_call.remove(&k);
        }
        Some(f)
    }

    async fn run<T>(
        &self,
        call: Call,
        account: &UpstreamAccount,
        apply: impl FnOnce(&mut UpState) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        if account.pat.expose() == "bad" {
            return Err(UpstreamError::Unauthorized("CONN_KEY_NOT_FOUND".into()));
        }
        match self.enter(call) {
            None => apply(&mut lock(&self.state)),
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::CommitThenLose) => {
                let _ = apply(&mut lock(&self.state));
                Err(UpstreamError::Unavailable {
                    message: "connection dropped".into(),
                    ambiguous: true,
                })
            }
            Some(Fault::Hang { commit }) => {
                if commit {
                    let _ = apply(&mut lock(&self.state));
                }
                std::future::pending::<()>().await;
                unreachable!("pending never resolves")
            }
        }
    }
}

fn app_out(a: &FakeApp) -> UpstreamApp {
    UpstreamApp {
        id: a.id.clone(),
        description: a.description.clone(),
        metadata: a.metadata.clone(),
    }
}

fn key_out(k: &FakeKey) -> UpstreamKey {
    UpstreamKey {
        secret: KeySecret::parse(k.id.clone())
            .unwrap_or_else(|_| unreachable!("fake key ids are valid")),
        description: k.description.clone(),
        scopes: k.scopes.clone(),
        app_ids: std::iter::once(k.app_id.clone())
            .chain(k.also.iter().cloned())
            .collect(),
    }
}

#[async_trait]
impl Upstream for FakeUpstream {
    async fn verify_credential(
        &self,
        account: &UpstreamAccount,
    ) -> Result<Vec<String>, UpstreamError> {
        self.run(Call::Verify, account, |_| Ok(vec!["All".to_string()]))
            .await
    }
    async fn create_app(
        &self,
        account: &UpstreamAccount,
        app: &NewApp,
    ) -> Result<UpstreamApp, UpstreamError> {
        self.run(Call::CreateApp, account, |st| {
            if st.apps.contains_key(app.id.as_str()) {
                return Err(UpstreamError::AlreadyExists);
            }
            let a = FakeApp {
                id: app.id.to_string(),
                metadata: app.metadata.clone(),
                description: app.description.clone(),
            };
            st.apps.insert(a.id.clone(), a.clone());
            if st.auto_app_key {
                st.minted += 1;
                let id = format!("mintkey{:025}", st.minted);
                st.keys.insert(
                    id.clone(),
                    FakeKey {
                        id,
                        app_id: a.id.clone(),
                        scopes: crate::scope::GRANTABLE_SCOPES
                            .iter()
                            .map(|s| (*s).to_owned())
                            .collect(),
                        description: MINTED_KEY_DESCRIPTION.into(),
                        also: Vec::new(),
                    },
                );
            }
            Ok(app_out(&a))
        })
        .await
    }
    async fn get_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<UpstreamApp, UpstreamError> {
        self.run(Call::GetApp, account, |st| {
            st.apps
                .get(app_id.as_str())
                .map(app_out)
                .ok_or(UpstreamError::NotFound)
        })
        .await
    }
    async fn list_apps(
        &self,
        account: &UpstreamAccount,
    ) -> Result<Vec<UpstreamApp>, UpstreamError> {
        self.run(Call::ListApps, account, |st| {
            Ok(st.apps.values().map(app_out).collect())
        })
        .await
    }
    async fn delete_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<(), UpstreamError> {
        self.run(Call::DeleteApp, account, |st| {
            st.apps
                .remove(app_id.as_str())
                .ok_or(UpstreamError::NotFound)?;
            st.keys.retain(|_, k| k.app_id != app_id.as_str());
            Ok(())
        })
        .await
    }
    async fn create_key(
        &self,
        account: &UpstreamAccount,
        key: &NewKey,
    ) -> Result<UpstreamKey, UpstreamError> {
        let n = self.next_key.fetch_add(1, Ordering::SeqCst);
        self.run(Call::CreateKey, account, |st| {
            if !st.apps.contains_key(key.app_id.as_str()) {
                return Err(UpstreamError::NotFound);
            }
            let k = FakeKey {
                id: format!("fakekey{n:025}"),
                app_id: key.app_id.to_string(),
                scopes: key.scopes.names(),
                description: key.description.clone(),
                also: Vec::new(),
            };
            st.keys.insert(k.id.clone(), k.clone());
            Ok(key_out(&k))
        })
        .await
    }
    async fn list_app_keys(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<Vec<UpstreamKey>, UpstreamError> {
        self.run(Call::ListAppKeys, account, |st| {
            if !st.apps.contains_key(app_id.as_str()) {
                return Err(UpstreamError::NotFound);
            }
            Ok(st
                .keys
                .values()
                .filter(|k| {
                    k.app_id == app_id.as_str() || k.also.iter().any(|a| a == app_id.as_str())
                })
                .map(key_out)
                .collect())
        })
        .await
    }
    async fn delete_key(
        &self,
        account: &UpstreamAccount,
        key: &KeySecret,
    ) -> Result<(), UpstreamError> {
        self.run(Call::DeleteKey, account, |st| {
            st.keys
                .remove(key.expose())
                .map(|_| ())
                .ok_or(UpstreamError::NotFound)
        })
        .await
    }
}
