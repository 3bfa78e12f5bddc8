//! Idempotency keys (issue 7, defect 13): a repeat replays the answer or resumes the operation
//! its key started, never a second one; a secret is replayed to the same caller only.

use std::time::Duration;

use super::tests::{ext, put_default, tid, with_tenant};
use super::*;
use crate::idempotency::IdempotencyKey;
use crate::model::{Step, UserStatus};
use crate::ports::UserStore;
use crate::secret::KeySecret;
use crate::testing::{Call, Fault, TestService, test_config};

/// What a keyed request was answered, as the API layer would answer it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Answer {
    /// The use case ran (or resumed) now.
    Ran(Result<Provisioned, DomainError>),
    /// A kept answer was replayed.
    Replayed(ReplayedResponse),
}

impl Answer {
    fn secret(&self) -> Option<&KeySecret> {
        match self {
            Answer::Ran(Ok(p)) => p.secret.as_ref(),
            Answer::Ran(Err(_)) => None,
            Answer::Replayed(r) => r.secret.as_ref(),
        }
    }
    fn status(&self) -> u16 {
        match self {
            Answer::Ran(Ok(p)) if p.created => 201,
            Answer::Ran(Ok(_)) => 200,
            Answer::Ran(Err(e)) => status_of(e),
            Answer::Replayed(r) => r.status,
        }
    }
}

fn status_of(e: &DomainError) -> u16 {
    match e {
        DomainError::Invalid(_) => 400,
        DomainError::NotFound(_) => 404,
        DomainError::Conflict(_) => 409,
        DomainError::Forbidden(_) => 403,
        DomainError::Validation(_) | DomainError::IdempotencyKeyReused(_) => 422,
        DomainError::UpstreamRejected(_) => 502,
        DomainError::UpstreamUnavailable(_) | DomainError::UpstreamBusy(_) => 503,
        DomainError::Internal(_) => 500,
    }
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Rotate(u32),
}

fn caller(sub: &str) -> Actor {
    Actor {
        subject: sub.into(),
        request_id: Some(format!("req-{sub}")),
        lane: crate::budget::Lane::Interactive,
    }
}

fn request(key: &str, op: Op, user: &str, hash: &str) -> IdempotentRequest {
    IdempotentRequest {
        key: IdempotencyKey::parse(key).unwrap(),
        operation: match op {
            Op::Put => IdempotentOperation::Provision,
            Op::Rotate(_) => IdempotentOperation::RotateKey,
        },
        tenant_id: Some(tid()),
        target: format!("acme/users/{user}"),
        request_hash: hash.into(),
    }
}

/// A keyed request as the API runs it: begin, the keyed use case, complete.
async fn keyed(t: &TestService, who: &Actor, key: &str, op: Op, user: &str, hash: &str) -> Answer {
    let req = request(key, op, user, hash);
    let ticket = match t.service.idempotency_begin(who, &req).await {
        Ok(IdempotencyStart::Replay(r)) => return Answer::Replayed(r),
        Ok(IdempotencyStart::Proceed(ticket)) => ticket,
        Err(e) => return Answer::Ran(Err(e)),
    };
    let out = run_keyed(t, who, op, user, &ticket).await;
    let answer = Answer::Ran(out);
    let body = match &answer {
        Answer::Ran(Ok(p)) => format!("{{\"generation\":{}}}", p.user.generation),
        _ => "{}".into(),
    };
    t.service
        .idempotency_complete(&ticket, answer.status(), body, answer.secret())
        .await
        .unwrap();
    answer
}

async fn run_keyed(
    t: &TestService,
    who: &Actor,
    op: Op,
    user: &str,
    ticket: &IdempotencyTicket,
) -> Result<Provisioned, DomainError> {
    match op {
        Op::Put => {
            t.service
                .provision_keyed(who, &tid(), &ext(user), put_default(), ticket)
                .await
        }
        Op::Rotate(grace) => {
            t.service
                .rotate_key_keyed(who, &tid(), &ext(user), grace, false, ticket)
                .await
        }
    }
}

/// A keyed request cut off (the future dropped: a crash, or the caller's connection gone) after
/// `ms` milliseconds: its answer is lost, nothing is completed.
async fn keyed_cut_off(t: &TestService, who: &Actor, key: &str, op: Op, user: &str, ms: u64) {
    let req = request(key, op, user, "h");
    let Ok(IdempotencyStart::Proceed(ticket)) = t.service.idempotency_begin(who, &req).await else {
        panic!("a new key proceeds");
    };
    let cut = tokio::time::timeout(
        Duration::from_millis(ms),
        run_keyed(t, who, op, user, &ticket),
    )
    .await;
    assert!(cut.is_err(), "the request was cut off");
}

fn past_leases() -> chrono::Duration {
    chrono::Duration::from_std(test_config().lease_ttl + test_config().max_clock_skew).unwrap()
        + chrono::Duration::milliseconds(1)
}

fn creates(t: &TestService) -> usize {
    t.upstream
        .calls()
        .iter()
        .filter(|c| **c == Call::CreateKey)
        .count()
}

async fn row(t: &TestService, id: &str) -> crate::model::User {
    t.store.get_user(&tid(), &ext(id)).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_a_201_replays_the_secret_to_the_same_caller_only() {
    let t = with_tenant().await;
    let svc = caller("onboarding-svc");
    let first = keyed(&t, &svc, "k-1", Op::Put, "alice", "h").await;
    assert_eq!(first.status(), 201);
    let secret = first.secret().expect("the new key's secret").clone();

    let again = keyed(&t, &svc, "k-1", Op::Put, "alice", "h").await;
    assert!(matches!(again, Answer::Replayed(_)), "{again:?}");
    assert_eq!(again.status(), 201, "the same answer again");
    assert_eq!(
        again.secret().map(KeySecret::expose),
        Some(secret.expose()),
        "with the secret it carried"
    );
    assert_eq!(creates(&t), 1, "nothing is done twice");
    assert!(
        t.store
            .audit_events()
            .iter()
            .any(|e| e.action == "idempotency.replay" && e.actor == "onboarding-svc"),
        "the replay is audited"
    );
    // Kept sealed: neither the body nor the sealed value holds the secret in clear.
    let rec = t.store.idempotency_records().pop().unwrap();
    let kept = rec.response.unwrap();
    assert!(!kept.body.contains(secret.expose()));
    let sealed = kept.secret_sealed.expect("kept sealed");
    assert!(!String::from_utf8_lossy(&sealed).contains(secret.expose()));

    // Another caller's identical key is another record: a PUT of its own, no secret.
    let other = keyed(&t, &caller("someone-else"), "k-1", Op::Put, "alice", "h").await;
    assert!(matches!(other, Answer::Ran(Ok(_))), "{other:?}");
    assert_eq!(other.status(), 200);
    assert!(other.secret().is_none(), "never another caller's secret");
    assert_eq!(creates(&t), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_repeated_with_another_request_is_refused_and_does_nothing() {
    let t = with_tenant().await;
    let svc = caller("svc");
    assert_eq!(
        keyed(&t, &svc, "k", Op::Put, "alice", "h1").await.status(),
        201
    );
    for (op, user, hash) in [
        (Op::Put, "alice", "h2"),
        (Op::Put, "bob", "h1"),
        (Op::Rotate(0), "alice", "h1"),
    ] {
        match keyed(&t, &svc, "k", op, user, hash).await {
            Answer::Ran(Err(DomainError::IdempotencyKeyReused(_))) => {}
            other => panic!("expected idempotency_key_reused, got {other:?}"),
        }
    }
    assert_eq!(creates(&t), 1);
    assert!(
        t.store
            .get_user(&tid(), &ext("bob"))
            .await
            .unwrap()
            .is_none()
    );
}

/// The lost answer: a rotation whose key was created upstream when the process died, finished
/// by recovery. The retry with the same key answers that rotation's secret and rotates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_answer_was_lost_answers_its_key_on_retry_and_rotates_nothing_more() {
    let t = with_tenant().await;
    let svc = caller("svc");
    t.service
        .provision(&svc, &tid(), &ext("u"), put_default())
        .await
        .unwrap();
    t.upstream
        .fault_on(Call::CreateKey, Fault::Hang { commit: true }, 1);
    keyed_cut_off(&t, &svc, "rot-1", Op::Rotate(0), "u", 200).await;
    t.clock.advance(past_leases());
    t.service.run_recovery_pass(10).await.unwrap();
    let finished = row(&t, "u").await;
    assert_eq!(
        (finished.status, finished.generation),
        (UserStatus::Active, 2)
    );
    assert!(finished.secret_pending, "recovery's key reached no one yet");
    let before = creates(&t);

    let retry = keyed(&t, &svc, "rot-1", Op::Rotate(0), "u", "h").await;
    let secret = retry.secret().expect("the rotation's secret");
    assert_eq!(
        secret.fingerprint(),
        finished.key.as_ref().unwrap().fingerprint,
        "the key that rotation created"
    );
    assert_eq!(creates(&t), before, "no second rotation");
    let after = row(&t, "u").await;
    assert_eq!(after.generation, 2);
    assert!(
        !after.secret_pending,
        "delivered: the next PUT carries nothing"
    );
    let put = t
        .service
        .provision(&svc, &tid(), &ext("u"), put_default())
        .await
        .unwrap();
    assert!(put.secret.is_none());
    // And again: the kept answer.
    let again = keyed(&t, &svc, "rot-1", Op::Rotate(0), "u", "h").await;
    assert!(matches!(again, Answer::Replayed(_)));
    assert_eq!(
        again.secret().map(KeySecret::fingerprint),
        Some(secret.fingerprint())
    );
    assert_eq!(
        t.upstream.keys().len(),
        1,
        "one key: the old one was deleted"
    );
}

/// The same, when nothing finished the rotation before the retry: the retry resumes it (finding
/// the key that landed by its marker) and answers its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_cut_off_is_resumed_by_its_retry_not_repeated() {
    for commit in [true, false] {
        let t = with_tenant().await;
        let svc = caller("svc");
        t.service
            .provision(&svc, &tid(), &ext("u"), put_default())
            .await
            .unwrap();
        t.upstream
            .fault_on(Call::CreateKey, Fault::Hang { commit }, 1);
        keyed_cut_off(&t, &svc, "rot", Op::Rotate(0), "u", 200).await;
        t.clock.advance(past_leases());
        let retry = keyed(&t, &svc, "rot", Op::Rotate(0), "u", "h").await;
        let secret = retry
            .secret()
            .expect("the resumed rotation's secret")
            .clone();
        let u = row(&t, "u").await;
        assert_eq!(u.generation, 2, "one rotation (commit={commit})");
        assert_eq!(u.key.unwrap().fingerprint, secret.fingerprint());
        assert_eq!(creates(&t), if commit { 2 } else { 3 });
        assert_eq!(t.upstream.keys().len(), 1);
        assert!(!u.secret_pending);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_retried_after_a_crash_resumes_its_provisioning() {
    for (commit, call) in [
        (true, Call::CreateKey),
        (false, Call::CreateKey),
        (true, Call::CreateApp),
    ] {
        let t = with_tenant().await;
        let svc = caller("svc");
        t.upstream.fault_on(call, Fault::Hang { commit }, 1);
        keyed_cut_off(&t, &svc, "put", Op::Put, "n", 200).await;
        assert_eq!(row(&t, "n").await.status, UserStatus::Provisioning);
        t.clock.advance(past_leases());
        let retry = keyed(&t, &svc, "put", Op::Put, "n", "h").await;
        assert_eq!(retry.status(), 201, "{retry:?}");
        let secret = retry
            .secret()
            .expect("the secret of the key it created")
            .clone();
        let u = row(&t, "n").await;
        assert_eq!((u.status, u.generation), (UserStatus::Active, 1));
        assert_eq!(u.key.unwrap().fingerprint, secret.fingerprint());
        assert_eq!(t.upstream.keys().len(), 1);
        assert_eq!(t.upstream.apps().len(), 1);
    }
}

/// A PUT whose provisioning recovery finished, retried with its key: 201 with the secret again
/// (the first PUT without the key would have carried it too, once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_finished_by_recovery_answers_its_secret_to_the_retry() {
    let t = with_tenant().await;
    let svc = caller("svc");
    t.upstream
        .fault_on(Call::CreateKey, Fault::Hang { commit: true }, 1);
    keyed_cut_off(&t, &svc, "put", Op::Put, "n", 200).await;
    t.clock.advance(past_leases());
    t.service.run_recovery_pass(10).await.unwrap();
    assert!(row(&t, "n").await.secret_pending);
    let retry = keyed(&t, &svc, "put", Op::Put, "n", "h").await;
    assert_eq!(retry.status(), 201);
    assert!(retry.secret().is_some());
    assert!(!row(&t, "n").await.secret_pending);
    assert_eq!(creates(&t), 1);
}

/// Repeats sent while the first request runs wait for it and get its outcome: one rotation, one
/// secret for all of them. Searched over seeds (how many, and when each starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_get_one_outcome() {
    let t = std::sync::Arc::new(with_tenant().await);
    let svc = caller("svc");
    for seed in 0..40u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let user = format!("c{seed}");
        let key = format!("key-{seed}");
        let op = if seed % 2 == 0 {
            Op::Put
        } else {
            Op::Rotate(0)
        };
        if matches!(op, Op::Rotate(_)) {
            t.service
                .provision(&svc, &tid(), &ext(&user), put_default())
                .await
                .unwrap();
        }
        let before = creates(&t);
        let n = rng.usize(2..5);
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (t, svc, user, key) = (t.clone(), svc.clone(), user.clone(), key.clone());
            let delay = rng.u64(0..3);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                keyed(&t, &svc, &key, op, &user, "h").await
            }));
        }
        let mut secrets = Vec::new();
        for task in tasks {
            let a = task.await.unwrap();
            let s = a
                .secret()
                .unwrap_or_else(|| panic!("seed {seed}: every repeat gets the outcome: {a:?}"));
            secrets.push(s.fingerprint());
        }
        secrets.dedup();
        assert_eq!(secrets.len(), 1, "seed {seed}: one outcome");
        assert_eq!(creates(&t), before + 1, "seed {seed}: one operation");
        let u = row(&t, &user).await;
        assert_eq!(u.key.unwrap().fingerprint, secrets[0]);
        assert_eq!((u.step, u.lease), (Step::Idle, None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expire_after_24_hours_and_recovery_deletes_them() {
    let t = with_tenant().await;
    let svc = caller("svc");
    keyed(&t, &svc, "k", Op::Put, "alice", "h1").await;
    t.clock.advance(chrono::Duration::hours(23));
    assert!(matches!(
        keyed(&t, &svc, "k", Op::Put, "alice", "h2").await,
        Answer::Ran(Err(DomainError::IdempotencyKeyReused(_)))
    ));
    t.clock.advance(chrono::Duration::hours(2));
    // Expired: the same key is a new request.
    assert!(matches!(
        keyed(&t, &svc, "k", Op::Put, "alice", "h2").await,
        Answer::Ran(Ok(_))
    ));
    t.clock.advance(chrono::Duration::hours(25));
    t.service.run_recovery_pass(10).await.unwrap();
    assert!(t.store.idempotency_records().is_empty());
}

/// A 5xx keeps nothing: the retry resumes the same operation and answers its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_5xx_the_retry_resumes_the_same_operation() {
    let t = with_tenant().await;
    let svc = caller("svc");
    t.upstream.fault_on(
        Call::CreateKey,
        Fault::Fail(crate::error::UpstreamError::Unavailable {
            message: "503".into(),
            ambiguous: false,
        }),
        1,
    );
    let first = keyed(&t, &svc, "k", Op::Put, "alice", "h").await;
    assert_eq!(first.status(), 503);
    let retry = keyed(&t, &svc, "k", Op::Put, "alice", "h").await;
    assert_eq!(retry.status(), 201, "{retry:?}");
    assert!(retry.secret().is_some());
    assert_eq!(row(&t, "alice").await.generation, 1);
    assert_eq!(t.upstream.keys().len(), 1);
}

/// A retry after a later operation replaced the key its rotation created: 409, no secret (not
/// the later key, which another caller got), nothing rotated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_later_rotation_is_409_and_reveals_nothing() {
    let t = with_tenant().await;
    let svc = caller("svc");
    t.service
        .provision(&svc, &tid(), &ext("u"), put_default())
        .await
        .unwrap();
    t.upstream
        .fault_on(Call::CreateKey, Fault::Hang { commit: true }, 1);
    keyed_cut_off(&t, &svc, "rot", Op::Rotate(0), "u", 200).await;
    t.clock.advance(past_leases());
    t.service.run_recovery_pass(10).await.unwrap();
    t.service
        .rotate_key(&caller("other"), &tid(), &ext("u"), 0, false)
        .await
        .unwrap();
    let before = creates(&t);
    let retry = keyed(&t, &svc, "rot", Op::Rotate(0), "u", "h").await;
    assert!(
        matches!(retry, Answer::Ran(Err(DomainError::Conflict(_)))),
        "{retry:?}"
    );
    assert_eq!(creates(&t), before);
    assert_eq!(row(&t, "u").await.generation, 3);
}
