//! The world of one seed: replicas, users, the operations they run, the faults the world
//! injects between ticks, quiescence, and the run's verdict.
//!
//! Scheduling: all in-flight operations are boxed futures polled by this one task, in the
//! order they started, on every wake-up ([`World::run_for`]). Nothing is spawned, so the order
//! in which operations make progress depends only on virtual time and that fixed order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use super::store::SimStore;
use super::upstream::{SimUpstream, short};
use super::{Ctx, Faults, SimClock, Stats, lock, set_current_op};
use crate::ids::{ExternalId, ProfileName, TenantId, UpstreamUserId};
use crate::model::{Actor, AutoKeyCheck, User};
use crate::ports::{AccountStore as _, UserStore as _};
use crate::scope::ScopeSet;
use crate::secret::{AesGcmSealer, KeySecret, MasterKey, Pat, Sealer};
use crate::service::{NewTenant, ProvisionRequest, Provisioner, ScopeRequest, ServiceConfig};
use crate::testing::MemStore;

/// Lease length of every replica (virtual time).
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a request waits for another's lease (core's deadlines are `tokio::time::Instant`,
/// virtual here, so waits replay exactly).
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// First recovery back-off, and the delay of the sweep after an ambiguous key create.
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(20);
/// Longest rotation grace in the simulation, seconds.
pub(crate) const MAX_GRACE: u32 = 30;
/// Largest clock skew of a replica, ms (either way).
const MAX_SKEW_MS: i64 = 300;
/// How early (ms) a grace period may look over because of skew: two replicas' clocks.
pub(crate) const MAX_GRACE_SKEW_MS: i64 = 2 * MAX_SKEW_MS;
/// Apps of the account the service does not own: they share the tenant's id prefix but
/// carry no marker (made by hand, or by an older tool). They must survive every run.
pub(crate) const FOREIGN_APPS: [&str; 2] = ["acme-legacy-1", "acme-u0-00000000"];

/// The secret of the key on the `i`-th foreign app (never to be deleted).
pub(crate) fn foreign_key(i: usize) -> String {
    format!("simkeyforeign{i:019}")
}
/// Operations in flight at once, at most (by default).
pub(crate) const MAX_IN_FLIGHT: usize = 5;
/// The run phase ends after this many ticks whatever is still in flight (then dropped).
const MAX_TICKS: u32 = 4000;
/// Recovery passes allowed at quiescence before the run counts as not converging.
const MAX_QUIESCENCE_PASSES: u32 = 20;

pub(crate) struct Options {
    pub max_ops: u64,
    pub disabled: Vec<String>,
    /// Operation kinds to run (names of [`OP_MIX`]); empty: all.
    pub ops: Vec<String>,
    /// Operations in flight at once, at most.
    pub max_in_flight: usize,
}

/// Operation kinds and their weights: `SIM_OPS` restricts the mix to some of them.
pub(crate) const OP_MIX: [(&str, u64); 6] = [
    ("provision", 35),
    ("rotate0", 15),
    ("rotateg", 12),
    ("deprovision", 15),
    ("reconcile", 10),
    ("recovery", 13),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Provision,
    Rotate { grace: u32, revoke: bool },
    Deprovision,
    Reconcile,
    Recovery,
}

#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Ok { secret: Option<KeySecret> },
    Err(String),
}

/// What the world knows about one operation.
pub(crate) struct OpRecord {
    pub id: u32,
    pub kind: OpKind,
    /// Index into the users (operations on one user).
    pub user: Option<usize>,
    /// Sequence number of its start.
    pub start_seq: u64,
    /// Sequence number of its answer; `None` if it was dropped (crashed).
    pub end_seq: Option<u64>,
    pub outcome: Option<Outcome>,
}

struct InFlight {
    id: u32,
    replica: usize,
    fut: Pin<Box<dyn Future<Output = Outcome>>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Violation {
    pub invariant: String,
    pub detail: String,
}

/// The result of one seed.
pub(crate) struct SeedRun {
    pub seed: u64,
    pub setup: String,
    pub hash: u64,
    pub trace: Vec<String>,
    pub stats: Stats,
    pub violation: Option<Violation>,
}

impl SeedRun {
    /// The verdict and the last `max_lines` lines of the trace.
    pub(crate) fn report(&self, max_lines: usize) -> String {
        let mut s = format!(
            "SIM_SEED={} {} trace_hash={:016x} ops={}\n",
            self.seed, self.setup, self.hash, self.stats.ops
        );
        match &self.violation {
            Some(v) => s.push_str(&format!("VIOLATED {}: {}\n", v.invariant, v.detail)),
            None => s.push_str("all invariants hold\n"),
        }
        let skip = self.trace.len().saturating_sub(max_lines);
        if skip > 0 {
            s.push_str(&format!("... ({skip} earlier trace lines)\n"));
        }
        for line in &self.trace[skip..] {
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

pub(crate) struct World {
    pub ctx: Arc<Ctx>,
    pub upstream: Arc<SimUpstream>,
    pub store: Arc<SimStore>,
    sealer: Arc<dyn Sealer>,
    replicas: Vec<Provisioner>,
    skews: Vec<i64>,
    pub tenant: TenantId,
    pub users: Vec<ExternalId>,
    pub scopes: ScopeSet,
    pub ops: Vec<OpRecord>,
    inflight: Vec<InFlight>,
    mix: Vec<(&'static str, u64)>,
    pub violation: Option<Violation>,
    /// A minted key may be left by design (`never`, or `learn` having stopped): an admin
    /// repair at rest must remove it before the checks.
    pub repair_at_rest: bool,
}

fn config() -> ServiceConfig {
    ServiceConfig {
        lease_ttl: LEASE_TTL,
        max_clock_skew: Duration::from_secs(1),
        lease_wait: LEASE_WAIT,
        poll_interval: Duration::from_millis(10),
        retry_base: RETRY_BASE,
        retry_max: RETRY_MAX,
    }
}

/// Runs one seed on a fresh runtime with paused (virtual) time.
pub(crate) fn run_seed(seed: u64, opts: &Options) -> SeedRun {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        let mut setup_rng = fastrand::Rng::with_seed(seed);
        let faults = Faults::pick(&mut setup_rng, &opts.disabled);
        let fault_rate = [20, 60, 150, 300][setup_rng.usize(0..4)];
        let replicas = setup_rng.usize(2..=3);
        let users = setup_rng.usize(3..=5);
        let total_ops = setup_rng.u64(4..=opts.max_ops.max(4));
        let ctx = Arc::new(Ctx::new(setup_rng.u64(..), faults, fault_rate));
        let setup = format!(
            "faults=[{}] rate={fault_rate}/1000 replicas={replicas} users={users} planned_ops={total_ops}",
            faults.describe()
        );
        let mut world = World::new(ctx.clone(), replicas, users).await;
        if !opts.ops.is_empty() {
            world.mix.retain(|(n, _)| opts.ops.iter().any(|o| o == n));
        }
        world.run(total_ops, opts.max_in_flight).await;
        if world.violation.is_none() {
            world.quiesce().await;
        }
        if world.violation.is_none() {
            world.violation = super::checks::at_rest(&world).await;
        }
        let stats = *lock(&ctx.stats);
        SeedRun {
            seed,
            setup,
            hash: ctx.trace_hash(),
            trace: lock(&ctx.trace).clone(),
            stats,
            violation: world.violation.take(),
        }
    })
}

impl World {
    async fn new(ctx: Arc<Ctx>, replicas: usize, users: usize) -> Self {
        let upstream = Arc::new(SimUpstream::new(ctx.clone()));
        let store = Arc::new(SimStore {
            ctx: ctx.clone(),
            inner: MemStore::default(),
        });
        // A fixed master key: sealing is not what is simulated.
        let key = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .unwrap_or_else(|e| panic!("{e}"));
        let sealer: Arc<dyn Sealer> = Arc::new(AesGcmSealer::new(&key));
        let skews = (0..replicas)
            .map(|_| {
                let ms = ctx.rand(0..(2 * MAX_SKEW_MS as u64 + 1));
                i64::try_from(ms).unwrap_or(0) - MAX_SKEW_MS
            })
            .collect();
        let scopes = ScopeSet::parse(["Predict", "Inputs:Get"]).unwrap_or_else(|e| panic!("{e}"));
        let mut w = Self {
            ctx,
            upstream,
            store,
            sealer,
            replicas: Vec::new(),
            skews,
            tenant: TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}")),
            users: (0..users)
                .map(|i| ExternalId::parse(&format!("u{i}")).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            scopes,
            ops: Vec::new(),
            inflight: Vec::new(),
            mix: OP_MIX.to_vec(),
            violation: None,
            repair_at_rest: false,
        };
        w.replicas = (0..replicas).map(|r| w.replica(w.skews[r])).collect();
        let standard = ProfileName::parse("standard").unwrap_or_else(|e| panic!("{e}"));
        // `never`, and `learn` once it has stopped (here: sometimes from the start), leave minted
        // keys by design for the drift check to report and an admin repair to delete: with
        // minting on, such a repair runs at rest, before the checks.
        let modes = [
            AutoKeyCheck::Always,
            AutoKeyCheck::Learn,
            AutoKeyCheck::Never,
        ];
        let check = modes[usize::try_from(w.ctx.rand(0..3)).unwrap_or(0)];
        let learnt = check == AutoKeyCheck::Learn && w.ctx.rand(0..2) == 0;
        w.repair_at_rest = w.ctx.faults.mint && check != AutoKeyCheck::Always;
        w.ctx.log(format!(
            "tenant auto_key_check={check}{}",
            if learnt {
                " (learnt: not checking)"
            } else {
                ""
            }
        ));
        w.replicas[0]
            .create_tenant(
                &Actor::system("sim"),
                NewTenant {
                    id: w.tenant.clone(),
                    display_name: "Acme".into(),
                    base_url: "https://api.clarifai.example".into(),
                    upstream_user_id: UpstreamUserId::parse("acme-ml")
                        .unwrap_or_else(|e| panic!("{e}")),
                    pat: Pat::parse("sim-pat").unwrap_or_else(|e| panic!("{e}")),
                    app_defaults: None,
                    rate_limit: None,
                    allowed_scopes: w.scopes.clone(),
                    default_scope_profile: Some(standard.clone()),
                    scope_profiles: [(standard, w.scopes.clone())].into_iter().collect(),
                    auto_key_check: Some(check),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("create_tenant: {e}"));
        if learnt {
            let account = "https://api.clarifai.example acme-ml";
            for _ in 0..crate::service::LEARN_CLEAN_CHECKS {
                let _ = w
                    .store
                    .inner
                    .record_auto_key_check(account, false, w.ctx.base)
                    .await;
            }
        }
        lock(&w.upstream.state).mint = w.ctx.faults.mint;
        for (i, id) in FOREIGN_APPS
            .iter()
            .enumerate()
            .filter(|_| w.ctx.faults.foreign)
        {
            let mut st = lock(&w.upstream.state);
            st.apps.insert(
                (*id).to_owned(),
                super::upstream::SimApp {
                    metadata: serde_json::Value::Null,
                },
            );
            st.keys.insert(
                foreign_key(i),
                super::upstream::SimKey {
                    app_id: (*id).to_owned(),
                    description: super::upstream::MINTED.to_owned(),
                    scopes: vec!["All".to_owned()],
                },
            );
        }
        w
    }

    /// The operations still running (not answered, not dropped).
    pub(crate) fn running(&self) -> std::collections::BTreeSet<u32> {
        self.inflight.iter().map(|o| o.id).collect()
    }

    fn replica(&self, skew_ms: i64) -> Provisioner {
        Provisioner::new(
            self.store.clone(),
            self.upstream.clone(),
            Arc::new(SimClock {
                ctx: self.ctx.clone(),
                skew_ms,
            }),
            self.sealer.clone(),
            config(),
        )
    }

    /// Starts one operation of a random kind on a random replica and user.
    fn start_op(&mut self, replica: usize, kind: OpKind, user: Option<usize>) {
        let id = u32::try_from(self.ops.len()).unwrap_or(u32::MAX - 1) + 1;
        let p = self
            .replicas
            .get(replica)
            .cloned()
            .unwrap_or_else(|| self.replica(0));
        let tenant = self.tenant.clone();
        let ext = user.map(|u| self.users[u].clone());
        let actor = Actor {
            subject: "client".into(),
            request_id: Some(format!("op{id}")),
            lane: crate::budget::Lane::Interactive,
        };
        let fut: Pin<Box<dyn Future<Output = Outcome>>> = Box::pin(async move {
            let err = |e: crate::DomainError| Outcome::Err(e.to_string());
            let ext =
                ext.unwrap_or_else(|| ExternalId::parse("none").unwrap_or_else(|e| panic!("{e}")));
            match kind {
                OpKind::Provision => {
                    let req = ProvisionRequest {
                        scopes: ScopeRequest::Default,
                        display_name: None,
                        metadata: None,
                    };
                    match p.provision(&actor, &tenant, &ext, req).await {
                        Ok(r) => Outcome::Ok { secret: r.secret },
                        Err(e) => err(e),
                    }
                }
                OpKind::Rotate { grace, revoke } => {
                    match p.rotate_key(&actor, &tenant, &ext, grace, revoke).await {
                        Ok(r) => Outcome::Ok { secret: r.secret },
                        Err(e) => err(e),
                    }
                }
                OpKind::Deprovision => match p.deprovision(&actor, &tenant, &ext).await {
                    Ok(_) => Outcome::Ok { secret: None },
                    Err(e) => err(e),
                },
                OpKind::Reconcile => match p.reconcile(&actor, &tenant, true).await {
                    Ok(_) => Outcome::Ok { secret: None },
                    Err(e) => err(e),
                },
                OpKind::Recovery => match p.run_recovery_pass(50).await {
                    Ok(_) => Outcome::Ok { secret: None },
                    Err(e) => err(e),
                },
            }
        });
        let on = user.map_or(String::new(), |u| format!(" {}", self.users[u]));
        self.ctx
            .log(format!("op{id} START r{replica} {kind:?}{on}"));
        let start_seq = self.ctx.next_seq();
        self.ops.push(OpRecord {
            id,
            kind,
            user,
            start_seq,
            end_seq: None,
            outcome: None,
        });
        lock(&self.ctx.stats).ops += 1;
        self.inflight.push(InFlight { id, replica, fut });
    }

    fn random_op(&mut self) {
        let c = &self.ctx;
        let replica = usize::try_from(c.rand(0..self.replicas.len() as u64)).unwrap_or(0);
        let user = usize::try_from(c.rand(0..self.users.len() as u64)).unwrap_or(0);
        let total: u64 = self.mix.iter().map(|(_, w)| w).sum();
        let mut r = c.rand(0..total.max(1));
        let mut name = "provision";
        for (n, w) in &self.mix {
            if r < *w {
                name = n;
                break;
            }
            r -= w;
        }
        let kind = match name {
            "rotate0" => OpKind::Rotate {
                grace: 0,
                revoke: c.rand(0..2) == 1,
            },
            "rotateg" => OpKind::Rotate {
                grace: u32::try_from(c.rand(1..u64::from(MAX_GRACE) + 1)).unwrap_or(1),
                revoke: c.rand(0..2) == 1,
            },
            "deprovision" => OpKind::Deprovision,
            "reconcile" => OpKind::Reconcile,
            "recovery" => OpKind::Recovery,
            _ => OpKind::Provision,
        };
        let user = matches!(
            kind,
            OpKind::Provision | OpKind::Rotate { .. } | OpKind::Deprovision
        )
        .then_some(user);
        self.start_op(replica, kind, user);
    }

    /// Polls every in-flight operation, in start order, until `ms` of virtual time passed.
    async fn run_for(&mut self, ms: u64) {
        let ctx = self.ctx.clone();
        let inflight = &mut self.inflight;
        let mut done: Vec<(u32, Outcome, u64)> = Vec::new();
        let mut tick = Box::pin(tokio::time::sleep(Duration::from_millis(ms)));
        std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < inflight.len() {
                set_current_op(inflight[i].id);
                let r = inflight[i].fut.as_mut().poll(cx);
                set_current_op(0);
                match r {
                    Poll::Ready(out) => {
                        let f = inflight.remove(i);
                        let seq = ctx.next_seq();
                        let shown = match &out {
                            Outcome::Ok { secret } => format!(
                                "ok{}",
                                secret.as_ref().map_or(String::new(), |s| format!(
                                    " secret={}",
                                    short(s.expose())
                                ))
                            ),
                            Outcome::Err(e) => format!("err {e}"),
                        };
                        ctx.log(format!("op{} END {shown}", f.id));
                        done.push((f.id, out, seq));
                    }
                    Poll::Pending => i += 1,
                }
            }
            tick.as_mut().poll(cx)
        })
        .await;
        for (id, out, seq) in done {
            if let Some(op) = self.ops.iter_mut().find(|o| o.id == id) {
                op.end_seq = Some(seq);
                op.outcome = Some(out);
            }
        }
    }

    fn drop_op(&mut self, index: usize, why: &str) {
        let f = self.inflight.remove(index);
        self.ctx.log(format!("op{} DROPPED ({why})", f.id));
        lock(&self.ctx.stats).crashes += 1;
        lock(&self.ctx.hung).remove(&f.id);
    }

    /// Time passes at once for everyone (a stall of the whole world: every replica's wall
    /// clock and monotonic clock move together; a holder paused past its lease must notice).
    async fn jump(&mut self, ms: i64) {
        tokio::time::advance(std::time::Duration::from_millis(
            u64::try_from(ms).unwrap_or(0),
        ))
        .await;
        self.ctx.log(format!("CLOCK JUMPS {ms}ms"));
        if self.ctx.faulty() {
            lock(&self.ctx.stats).jumps += 1;
        }
        self.upstream.land_late(false);
    }

    /// The run phase: random operations and faults until `total_ops` have started and ended.
    async fn run(&mut self, total_ops: u64, max_in_flight: usize) {
        self.ctx.faults_on.store(true, Ordering::SeqCst);
        let f = self.ctx.faults;
        let mut started = 0;
        let mut ticks = 0;
        while (started < total_ops || !self.inflight.is_empty()) && ticks < MAX_TICKS {
            ticks += 1;
            if started < total_ops && self.inflight.len() < max_in_flight && self.ctx.roll(450) {
                started += 1;
                self.random_op();
            }
            // Operations stuck in a port call that never returns: the process died there.
            let hung: Vec<u32> = lock(&self.ctx.hung).iter().copied().collect();
            for id in hung {
                if self.ctx.roll(500)
                    && let Some(i) = self.inflight.iter().position(|o| o.id == id)
                {
                    self.drop_op(i, "hung call");
                }
            }
            if f.crash && !self.inflight.is_empty() && self.ctx.roll(40) {
                let i = usize::try_from(self.ctx.rand(0..self.inflight.len() as u64)).unwrap_or(0);
                self.drop_op(i, "crash at an await point");
            }
            if f.replica_crash && self.ctx.roll(15) {
                let r = usize::try_from(self.ctx.rand(0..self.replicas.len() as u64)).unwrap_or(0);
                self.crash_replica(r).await;
            }
            if f.jump && self.ctx.roll(25) {
                let extra = i64::try_from(self.ctx.rand(0..5_000)).unwrap_or(0);
                self.jump(i64::try_from(LEASE_TTL.as_millis()).unwrap_or(10_000) + extra)
                    .await;
            }
            let ms = self.ctx.rand(1..200);
            self.run_for(ms).await;
            if self.violation.is_none() {
                self.violation = super::checks::during(self).await;
            }
            if self.violation.is_some() {
                return;
            }
        }
        while !self.inflight.is_empty() {
            self.drop_op(0, "run phase over");
        }
    }

    async fn crash_replica(&mut self, r: usize) {
        let graceful = self.ctx.roll(500);
        self.ctx.log(format!(
            "REPLICA r{r} CRASHES ({})",
            if graceful {
                "shutdown: releases its leases"
            } else {
                "kill -9"
            }
        ));
        lock(&self.ctx.stats).replica_crashes += 1;
        while let Some(i) = self.inflight.iter().position(|o| o.replica == r) {
            self.drop_op(i, "replica crashed");
        }
        let fresh = self.replica(self.skews[r]);
        let old = std::mem::replace(&mut self.replicas[r], fresh);
        if graceful {
            let _ = old.release_own_leases().await;
        }
    }

    pub(crate) async fn rows(&self) -> Vec<User> {
        self.store
            .inner
            .list_users(&self.tenant, None, None, 1000)
            .await
            .unwrap_or_default()
    }

    /// Every row settled: nothing pending, no key in grace.
    async fn settled(&self) -> bool {
        self.rows()
            .await
            .iter()
            .all(|u| u.step == crate::model::Step::Idle && u.retired_key.is_none())
    }

    /// Faults stop, time moves past every lease and grace period, and a fresh replica runs
    /// recovery until every row is settled.
    async fn quiesce(&mut self) {
        self.ctx.faults_on.store(false, Ordering::SeqCst);
        self.ctx.log("QUIESCENCE: faults off".into());
        self.upstream.land_late(true);
        let fresh = self.replicas.len();
        self.replicas.push(self.replica(0));
        self.jump(
            i64::try_from((LEASE_TTL + RETRY_MAX).as_millis()).unwrap_or(0)
                + i64::from(MAX_GRACE) * 1000
                + 1000,
        )
        .await;
        if !self.settle(fresh).await {
            return;
        }
        if self.repair_at_rest {
            self.ctx
                .log("QUIESCENCE: an admin repair deletes what the policy left".into());
            self.start_op(fresh, OpKind::Reconcile, None);
            while !self.inflight.is_empty() {
                self.run_for(100).await;
            }
            self.settle(fresh).await;
        }
    }

    /// Recovery passes on replica `fresh` until every row is settled; false (and a violation)
    /// when it does not converge.
    async fn settle(&mut self, fresh: usize) -> bool {
        for _ in 0..MAX_QUIESCENCE_PASSES {
            if self.settled().await {
                return true;
            }
            self.start_op(fresh, OpKind::Recovery, None);
            let mut n = 0;
            while !self.inflight.is_empty() && n < 10_000 {
                n += 1;
                self.run_for(100).await;
            }
            while !self.inflight.is_empty() {
                self.drop_op(0, "recovery pass never ended");
            }
            self.jump(i64::try_from((RETRY_MAX + LEASE_TTL).as_millis()).unwrap_or(0))
                .await;
        }
        if !self.settled().await {
            let pending: Vec<String> = self
                .rows()
                .await
                .iter()
                .filter(|u| u.step != crate::model::Step::Idle || u.retired_key.is_some())
                .map(|u| {
                    format!(
                        "{} {}/{} last_error={:?}",
                        u.external_id, u.status, u.step, u.last_error
                    )
                })
                .collect();
            self.violation = Some(Violation {
                invariant: "quiescence: recovery does not converge".into(),
                detail: format!(
                    "after {MAX_QUIESCENCE_PASSES} passes without faults: {}",
                    pending.join("; ")
                ),
            });
            return false;
        }
        true
    }
}
