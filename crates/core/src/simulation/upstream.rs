//! The simulated Clarifai account: apps and keys, plus seeded faults.
//!
//! Every call goes through [`SimUpstream::exec`]: an optional pause before the effect (a crash
//! there drops the call unapplied), the effect, an optional pause after it (a crash there loses
//! the answer of an applied call). A fault may replace the answer: 5xx or 429 (nothing
//! applied), ambiguous (applied, answer lost), late (a create answered as ambiguous and applied
//! up to one second later), rejected (a permanent refusal), or a hang (the call never returns,
//! before or after its effect; the world then drops the operation).
//!
//! Every call and answer is traced, with the operation that made it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{Ctx, current_op, lock};
use crate::error::UpstreamError;
use crate::ids::AppId;
use crate::model::UpstreamAccount;
use crate::ports::{NewApp, NewKey, Upstream, UpstreamApp, UpstreamKey};
use crate::secret::KeySecret;

/// Longest delay of a late create, ms: below the sweep delay (`retry_base`) minus twice the
/// largest clock skew, so a correct sweep always comes after the late key (docs/architecture.md: the
/// sweep looks again "once it must have landed").
pub(crate) const MAX_LATE_MS: u64 = 1000;

#[derive(Clone, Debug)]
pub(crate) struct SimApp {
    pub metadata: Value,
}

#[derive(Clone, Debug)]
pub(crate) struct SimKey {
    pub app_id: String,
    pub description: String,
    pub scopes: Vec<String>,
}

/// The effect of a create, applied later.
type LateEffect = Box<dyn FnOnce(&mut UpState) + Send>;

/// A create applied later than its (ambiguous) answer.
struct Late {
    at_ms: i64,
    what: String,
    apply: LateEffect,
}

#[derive(Default)]
pub(crate) struct UpState {
    pub apps: BTreeMap<String, SimApp>,
    /// By secret.
    pub keys: BTreeMap<String, SimKey>,
    late: Vec<Late>,
    next_key: u64,
    /// Every app created comes with a key of its own (the `mint` class).
    pub mint: bool,
    /// Secret -> how it was deleted (itself, or the app holding it).
    pub deleted_by: BTreeMap<String, Deletion>,
}

/// Who deleted a key, with what, and when.
#[derive(Clone, Debug)]
pub(crate) struct Deletion {
    pub op: u32,
    pub call: &'static str,
    pub seq: u64,
    pub world_ms: i64,
}

/// What a call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Normal,
    Unavailable,
    Throttle { wait_ms: u64, refuse: bool },
    Reject,
    Ambiguous,
    Late { after_ms: u64 },
    HangBefore,
    HangAfter,
}

pub(crate) struct SimUpstream {
    pub ctx: Arc<Ctx>,
    pub state: Mutex<UpState>,
}

/// Short, stable name of a key secret for traces.
pub(crate) fn short(secret: &str) -> String {
    format!(
        "k{}",
        secret.trim_start_matches("simkey").trim_start_matches('0')
    )
}

impl SimUpstream {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self {
            ctx,
            state: Mutex::new(UpState::default()),
        }
    }

    fn deletion(&self, op: u32, call: &'static str) -> Deletion {
        Deletion {
            op,
            call,
            seq: self.ctx.next_seq(),
            world_ms: self.ctx.world_ms(),
        }
    }

    /// Applies the late creates whose time has come (or all of them).
    pub(crate) fn land_late(&self, all: bool) {
        let now = self.ctx.world_ms();
        let mut st = lock(&self.state);
        let (due, rest): (Vec<Late>, Vec<Late>) = std::mem::take(&mut st.late)
            .into_iter()
            .partition(|l| all || l.at_ms <= now);
        st.late = rest;
        let mut lines = Vec::new();
        for l in due {
            (l.apply)(&mut st);
            lines.push(format!("upstream: late {} lands", l.what));
        }
        drop(st);
        for line in lines {
            self.ctx.log(line);
        }
    }

    /// (k) fencing: an upstream change to a user's app leaves only from the operation holding
    /// that user's row (docs/design.md, "Leases and fencing": renew by compare-and-swap before every
    /// upstream call, stop if that fails). Checked when the call enters the port.
    fn check_fenced(&self, op: u32, app: &str, what: &str) {
        if op == 0 {
            return;
        }
        let holder = lock(&self.ctx.holders).get(app).copied();
        if let Some(holder) = holder
            && holder != Some(op)
        {
            let mut first = lock(&self.ctx.unfenced);
            if first.is_none() {
                *first = Some((
                    op,
                    format!(
                        "op{op} sent {what} while the row of {app} is held by {}",
                        holder.map_or("nobody".into(), |h| format!("op{h}"))
                    ),
                ));
            }
        }
    }

    fn plan(&self, mutating: bool, can_be_late: bool) -> Plan {
        let ctx = &self.ctx;
        if !ctx.faulty() || !ctx.roll(ctx.fault_rate) {
            return Plan::Normal;
        }
        let f = ctx.faults;
        let mut options = Vec::new();
        if f.unavailable {
            options.push(Plan::Unavailable);
        }
        if f.throttle {
            // Usually a short wait; sometimes longer than a lease (the unbounded slot wait).
            let wait_ms = if ctx.roll(300) {
                ctx.rand(5_000..15_000)
            } else {
                ctx.rand(100..2_000)
            };
            options.push(Plan::Throttle {
                wait_ms,
                refuse: ctx.roll(500),
            });
        }
        if f.crash {
            options.push(Plan::HangBefore);
        }
        if mutating {
            if f.ambiguous {
                options.push(Plan::Ambiguous);
            }
            if f.crash {
                options.push(Plan::HangAfter);
            }
            if f.late && can_be_late {
                options.push(Plan::Late {
                    after_ms: ctx.rand(1..MAX_LATE_MS),
                });
            }
            if f.reject && can_be_late {
                options.push(Plan::Reject);
            }
        }
        if options.is_empty() {
            return Plan::Normal;
        }
        let i = usize::try_from(ctx.rand(0..options.len() as u64)).unwrap_or(0);
        ctx.count_fault();
        options[i]
    }

    /// Runs one call: pauses, fault, effect, trace. `late` is the create to apply later when
    /// the plan says so (creates only).
    async fn exec<T>(
        &self,
        what: String,
        app: Option<String>,
        mutating: bool,
        late: Option<LateEffect>,
        apply: impl FnOnce(&mut UpState) -> Result<T, UpstreamError>,
        show: impl Fn(&T) -> String,
    ) -> Result<T, UpstreamError> {
        let ctx = &self.ctx;
        let op = current_op();
        if mutating {
            ctx.log(format!("op{op} sends {what}"));
            if let Some(app) = &app {
                self.check_fenced(op, app, &what);
            }
        }
        self.land_late(false);
        let plan = self.plan(mutating, late.is_some());
        ctx.maybe_delay(200).await;
        if let Plan::Throttle { wait_ms, .. } = plan {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        self.land_late(false);
        let unavailable = |m: &str, ambiguous| UpstreamError::Unavailable {
            message: m.into(),
            ambiguous,
        };
        let result = match plan {
            Plan::Unavailable => Err(unavailable("503 from upstream", false)),
            Plan::Throttle { refuse: true, .. } => Err(unavailable("429 too many requests", false)),
            Plan::Reject => Err(UpstreamError::Rejected("400 invalid request".into())),
            Plan::HangBefore => ctx.hang(&format!("before {what}")).await,
            Plan::Late { after_ms } => {
                if let Some(apply_later) = late {
                    let at_ms = ctx.world_ms() + i64::try_from(after_ms).unwrap_or(0);
                    lock(&self.state).late.push(Late {
                        at_ms,
                        what: format!("{what} (op{op})"),
                        apply: apply_later,
                    });
                }
                Err(unavailable("timed out (applied later)", true))
            }
            Plan::Normal
            | Plan::Ambiguous
            | Plan::HangAfter
            | Plan::Throttle { refuse: false, .. } => {
                let r = apply(&mut lock(&self.state));
                match plan {
                    Plan::Ambiguous => {
                        let shown = match &r {
                            Ok(v) => show(v),
                            Err(e) => format!("{e:?}"),
                        };
                        ctx.log(format!("op{op} {what} applied: {shown}"));
                        Err(unavailable("connection dropped", true))
                    }
                    Plan::HangAfter => {
                        let shown = match &r {
                            Ok(v) => show(v),
                            Err(e) => format!("{e:?}"),
                        };
                        ctx.log(format!("op{op} {what} applied: {shown}"));
                        ctx.hang(&format!("after {what}")).await
                    }
                    _ => r,
                }
            }
        };
        let shown = match &result {
            Ok(v) => format!("ok {}", show(v)),
            Err(e) => format!("err {e:?}"),
        };
        ctx.log(format!("op{op} {what} -> {shown}"));
        // A crash here loses the answer of a call that was applied.
        ctx.maybe_delay(100).await;
        result
    }
}

fn key_out(secret: &str, k: &SimKey) -> UpstreamKey {
    UpstreamKey {
        secret: KeySecret::parse(secret.to_owned())
            .unwrap_or_else(|_| unreachable!("sim key ids are valid")),
        description: k.description.clone(),
        scopes: k.scopes.clone(),
        app_ids: vec![k.app_id.clone()],
    }
}

fn app_out(id: &str, a: &SimApp) -> UpstreamApp {
    UpstreamApp {
        id: id.to_owned(),
        description: String::new(),
        metadata: a.metadata.clone(),
    }
}

/// Creates a key (also when a late create lands): only on an existing app.
fn create_key_in(
    ctx: &Ctx,
    st: &mut UpState,
    key: &NewKey,
) -> Result<(String, SimKey), UpstreamError> {
    if !st.apps.contains_key(key.app_id.as_str()) {
        return Err(UpstreamError::NotFound);
    }
    st.next_key += 1;
    let secret = format!("simkey{:026}", st.next_key);
    let k = SimKey {
        app_id: key.app_id.to_string(),
        description: key.description.clone(),
        scopes: key.scopes.names(),
    };
    st.keys.insert(secret.clone(), k.clone());
    if let Ok(s) = KeySecret::parse(secret.clone()) {
        lock(&ctx.names).insert(s.fingerprint(), short(&secret));
    }
    Ok((secret, k))
}

fn create_app_in(st: &mut UpState, app: &NewApp) -> Result<(), UpstreamError> {
    if st.apps.contains_key(app.id.as_str()) {
        return Err(UpstreamError::AlreadyExists);
    }
    st.apps.insert(
        app.id.to_string(),
        SimApp {
            metadata: app.metadata.clone(),
        },
    );
    if st.mint {
        st.next_key += 1;
        st.keys.insert(
            format!("simkey{:026}", st.next_key),
            SimKey {
                app_id: app.id.to_string(),
                description: MINTED.to_owned(),
                scopes: crate::scope::GRANTABLE_SCOPES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            },
        );
    }
    Ok(())
}

/// The description of a key minted with an app.
pub(crate) const MINTED: &str = "minted with the app";

#[async_trait]
impl Upstream for SimUpstream {
    async fn verify_credential(&self, _: &UpstreamAccount) -> Result<Vec<String>, UpstreamError> {
        Ok(vec!["All".to_owned()])
    }

    async fn create_app(
        &self,
        _: &UpstreamAccount,
        app: &NewApp,
    ) -> Result<UpstreamApp, UpstreamError> {
        let later = app.clone();
        self.exec(
            format!("create_app {}", app.id),
            Some(app.id.to_string()),
            true,
            Some(Box::new(move |st: &mut UpState| {
                let _ = create_app_in(st, &later);
            })),
            |st| {
                create_app_in(st, app)?;
                Ok(UpstreamApp {
                    id: app.id.to_string(),
                    description: app.description.clone(),
                    metadata: app.metadata.clone(),
                })
            },
            |_| String::new(),
        )
        .await
    }

    async fn get_app(
        &self,
        _: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<UpstreamApp, UpstreamError> {
        self.exec(
            format!("get_app {app_id}"),
            None,
            false,
            None,
            |st| {
                st.apps
                    .get(app_id.as_str())
                    .map(|a| app_out(app_id.as_str(), a))
                    .ok_or(UpstreamError::NotFound)
            },
            |_| String::new(),
        )
        .await
    }

    async fn list_apps(&self, _: &UpstreamAccount) -> Result<Vec<UpstreamApp>, UpstreamError> {
        self.exec(
            "list_apps".into(),
            None,
            false,
            None,
            |st| Ok(st.apps.iter().map(|(id, a)| app_out(id, a)).collect()),
            |v: &Vec<UpstreamApp>| format!("{} apps", v.len()),
        )
        .await
    }

    async fn delete_app(&self, _: &UpstreamAccount, app_id: &AppId) -> Result<(), UpstreamError> {
        let op = current_op();
        self.exec(
            format!("delete_app {app_id}"),
            Some(app_id.to_string()),
            true,
            None,
            |st| {
                st.apps
                    .remove(app_id.as_str())
                    .ok_or(UpstreamError::NotFound)?;
                lock(&self.ctx.deleters).insert(op);
                let gone: Vec<String> = st
                    .keys
                    .iter()
                    .filter(|(_, k)| k.app_id == app_id.as_str())
                    .map(|(s, _)| s.clone())
                    .collect();
                for s in gone {
                    st.keys.remove(&s);
                    let d = self.deletion(op, "delete_app");
                    st.deleted_by.insert(s, d);
                }
                Ok(())
            },
            |()| String::new(),
        )
        .await
    }

    async fn create_key(
        &self,
        _: &UpstreamAccount,
        key: &NewKey,
    ) -> Result<UpstreamKey, UpstreamError> {
        let later = key.clone();
        let ctx = self.ctx.clone();
        self.exec(
            format!("create_key {} {:?}", key.app_id, key.description),
            Some(key.app_id.to_string()),
            true,
            Some(Box::new(move |st: &mut UpState| {
                let _ = create_key_in(&ctx, st, &later);
            })),
            |st| create_key_in(&self.ctx, st, key).map(|(s, k)| key_out(&s, &k)),
            |k: &UpstreamKey| short(k.secret.expose()),
        )
        .await
    }

    async fn list_app_keys(
        &self,
        _: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<Vec<UpstreamKey>, UpstreamError> {
        self.exec(
            format!("list_app_keys {app_id}"),
            None,
            false,
            None,
            |st| {
                if !st.apps.contains_key(app_id.as_str()) {
                    return Err(UpstreamError::NotFound);
                }
                Ok(st
                    .keys
                    .iter()
                    .filter(|(_, k)| k.app_id == app_id.as_str())
                    .map(|(s, k)| key_out(s, k))
                    .collect())
            },
            |v: &Vec<UpstreamKey>| {
                let names: Vec<String> = v.iter().map(|k| short(k.secret.expose())).collect();
                format!("[{}]", names.join(" "))
            },
        )
        .await
    }

    async fn delete_key(&self, _: &UpstreamAccount, key: &KeySecret) -> Result<(), UpstreamError> {
        let op = current_op();
        let app = lock(&self.state)
            .keys
            .get(key.expose())
            .map(|k| k.app_id.clone());
        self.exec(
            format!("delete_key {}", short(key.expose())),
            app,
            true,
            None,
            |st| {
                st.keys
                    .remove(key.expose())
                    .ok_or(UpstreamError::NotFound)?;
                lock(&self.ctx.deleters).insert(op);
                let d = self.deletion(op, "delete_key");
                st.deleted_by.insert(key.expose().to_owned(), d);
                Ok(())
            },
            |()| String::new(),
        )
        .await
    }
}
