//! Bulk onboarding over HTTP: `users:batch` validates the whole batch or stores nothing; a job
//! provisions every user once, reports per-user errors, is tenant-bound, cancellable; and the
//! real binary SIGKILLed in the middle of a job resumes it with nobody provisioned twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{SIM_USER, TestApp, assert_problem, token};
use crate::process::{Server, ServerEnv, call, free_port, simulator, tenant_body};

crate::on_both_backends!(
    a_batch_becomes_a_job_that_provisions_everyone_once,
    a_bad_batch_is_refused_whole,
    a_keyed_batch_repeated_answers_the_same_job
);

async fn a_keyed_batch_repeated_answers_the_same_job(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let body = json!({"users": [{"external_id": "k1"}, {"external_id": "k2"}]});
    let send = |body: Value, key: &'static str| {
        let (http, base, w) = (app.http.clone(), app.base.clone(), w.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/tenants/acme/users:batch"))
                .bearer_auth(&w)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, location, r.json::<Value>().await.unwrap())
        }
    };
    let (s1, l1, b1) = send(body.clone(), "batch-key-1").await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{b1}");
    let (s2, l2, b2) = send(body.clone(), "batch-key-1").await;
    assert_eq!(s2, StatusCode::ACCEPTED, "{b2}");
    assert_eq!(
        b1["job_id"], b2["job_id"],
        "the repeat answers the same job"
    );
    assert_eq!(l1, l2);
    assert_eq!(
        l1.unwrap(),
        format!("/v1/jobs/{}", b1["job_id"].as_str().unwrap())
    );
    let list = app
        .call(Method::GET, "/v1/tenants/acme/jobs", Some(&w), None)
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
    // The same key with another body is refused, and starts nothing.
    let (s3, _, b3) = send(json!({"users": [{"external_id": "k3"}]}), "batch-key-1").await;
    assert_eq!(s3.as_u16(), 422, "{b3}");
    assert_eq!(b3["code"], "idempotency_key_reused");
    let job = wait_job(
        &app,
        &w,
        b1["job_id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(job["done"], 2, "{job}");
    assert_eq!(
        app.sim.apps(SIM_USER).len(),
        2,
        "each user provisioned once"
    );
}

/// Polls the job until it has finished (or panics after `within`).
async fn wait_job(app: &TestApp, token: &str, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = app
            .call(Method::GET, &format!("/v1/jobs/{id}"), Some(token), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if !r.body["finished_at"].is_null() {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still running: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_batch_becomes_a_job_that_provisions_everyone_once(app: TestApp) {
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let w = app.token("provisioner:write provisioner:secrets", Some("acme"));
    // "taken" already exists with other scopes: its user fails with `conflict`.
    let r = app
        .put_user("acme", "taken", &w, json!({"scope_profile": "annotator"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut users: Vec<Value> = (0..24)
        .map(|i| json!({"external_id": format!("user-{i:02}@acme.example")}))
        .collect();
    users.push(
        json!({"external_id": "annotator-1", "scope_profile": "annotator", "display_name": "Ann"}),
    );
    users.push(json!({"external_id": "taken"}));
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users:batch",
            Some(&w),
            Some(json!({ "users": users })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "running");
    let id = r.body["job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/v1/jobs/{id}").as_str())
    );
    let job = wait_job(&app, &w, &id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        (
            job["total"].as_i64(),
            job["done"].as_i64(),
            job["failed"].as_i64()
        ),
        (Some(26), Some(25), Some(1))
    );
    assert_eq!(
        job["errors"],
        json!([{"external_id": "taken", "code": "conflict",
            "detail": job["errors"][0]["detail"].clone()}])
    );
    // One app and one key each, and no secret in any job answer.
    let apps = app.sim.apps(SIM_USER);
    let keys = app.sim.keys(SIM_USER);
    assert_eq!((apps.len(), keys.len()), (26, 26));
    let per_app: BTreeMap<String, usize> = keys.iter().fold(BTreeMap::new(), |mut m, k| {
        *m.entry(k.app_ids[0].clone()).or_default() += 1;
        m
    });
    assert!(per_app.values().all(|n| *n == 1), "{per_app:?}");
    let listed = app
        .call(Method::GET, "/v1/tenants/acme/jobs", Some(&w), None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["items"][0]["job_id"], id.as_str());
    for text in [&listed.text, &job.to_string()] {
        assert!(
            keys.iter().all(|k| !text.contains(&k.id)),
            "a secret in a job answer"
        );
    }
    // The secret of a job's key: reveal-key (audited).
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/annotator-1/reveal-key",
            Some(&w),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let secret = r.body["secret"].as_str().unwrap();
    assert!(keys.iter().any(|k| k.id == secret));
    // Another tenant's token: not found; a read-only token cannot cancel.
    let other = app.token("provisioner:write", Some("globex"));
    for (m, p) in [
        (Method::GET, format!("/v1/jobs/{id}")),
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
    ] {
        assert_problem(&app.call(m, &p, Some(&other), None).await, 404, "not_found");
    }
    let read = app.token("provisioner:read", Some("acme"));
    assert_problem(
        &app.call(
            Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            Some(&read),
            None,
        )
        .await,
        403,
        "forbidden",
    );
    // Cancelling a finished job changes nothing.
    let r = app
        .call(
            Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            Some(&w),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "failed");
    assert_problem(
        &app.call(Method::GET, "/v1/jobs/no-such-job", Some(&w), None)
            .await,
        404,
        "not_found",
    );
}

async fn a_bad_batch_is_refused_whole(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let post = |body: Value| {
        let (app, w) = (&app, &w);
        async move {
            app.call(
                Method::POST,
                "/v1/tenants/acme/users:batch",
                Some(w),
                Some(body),
            )
            .await
        }
    };
    let r = post(json!({"users": [{"external_id": "ok"}, {"external_id": "bad\u{7}id"}]})).await;
    assert_problem(&r, 400, "invalid_request");
    assert_eq!(
        r.body["errors"][0]["pointer"], "/users/1/external_id",
        "{}",
        r.text
    );
    assert_problem(
        &post(json!({"users": [{"external_id": "a", "scope_profile": "nope"}]})).await,
        422,
        "validation_failed",
    );
    assert_problem(
        &post(json!({"users": [{"external_id": "a"}, {"external_id": "a"}]})).await,
        422,
        "validation_failed",
    );
    assert_problem(&post(json!({"users": []})).await, 422, "validation_failed");
    assert_problem(
        &post(json!({"users": [{"external_id": "a", "surprise": 1}]})).await,
        400,
        "invalid_request",
    );
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"external_id": format!("u{i}")}))
        .collect();
    assert_problem(
        &post(json!({ "users": too_many })).await,
        422,
        "validation_failed",
    );
    // Nothing stored, nothing sent upstream.
    let jobs = app
        .call(Method::GET, "/v1/tenants/acme/jobs", Some(&w), None)
        .await;
    assert_eq!(jobs.body["items"], json!([]), "{}", jobs.text);
    assert!(app.sim.apps(SIM_USER).is_empty());
}

/// The real binary, SIGKILLed while a job runs, restarted: the job ends with every user
/// provisioned exactly once (SQLite; the contract suite covers the claims on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_survives_sigkill_and_provisions_nobody_twice() {
    const USERS: usize = 200;
    let (url, _db) = provisioner_storage::testing::fresh_sqlite_url();
    let sim = simulator(40, 20).await;
    let sim_after = sim.clone();
    // Minting on as well: the purge of the minted key is one more step a kill can cut.
    sim.set_auto_app_key(true);
    let logs = tempfile::tempdir().expect("log dir");
    let jwt = SecretString::from(provisioner_core::secret::MasterKey::generate().to_base64());
    let env = ServerEnv::new(free_port(), &url, &jwt, &logs.path().join("serve.log"));
    let mut server = Server::new(env);
    server.start().await;
    let base = server.base();
    let http = reqwest::Client::new();
    let admin = token(&jwt, "provisioner:admin", None);
    let (s, _, t) = call(
        &http,
        Method::POST,
        &format!("{base}/v1/tenants"),
        &admin,
        Some(tenant_body("bulk", &sim.base_url())),
    )
    .await
    .expect("tenant");
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let users: Vec<Value> = (0..USERS)
        .map(|i| json!({"external_id": format!("u{i:03}")}))
        .collect();
    let (s, body, t) = call(
        &http,
        Method::POST,
        &format!("{base}/v1/tenants/bulk/users:batch"),
        &admin,
        Some(json!({ "users": users })),
    )
    .await
    .expect("batch");
    assert_eq!(s, StatusCode::ACCEPTED, "{t}");
    let id = body["job_id"].as_str().unwrap().to_owned();
    // Kill it twice in the middle of the job (asserted: it has not finished when killed).
    for pause in [700, 900] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (_, job, t) = call(
            &http,
            Method::GET,
            &format!("{base}/v1/jobs/{id}"),
            &admin,
            None,
        )
        .await
        .expect("job");
        assert!(
            job["finished_at"].is_null(),
            "the job ended before the kill: {t}"
        );
        server.kill();
        server.start().await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let (s, job, t) = call(
            &http,
            Method::GET,
            &format!("{base}/v1/jobs/{id}"),
            &admin,
            None,
        )
        .await
        .expect("job");
        assert_eq!(s, StatusCode::OK, "{t}");
        if !job["finished_at"].is_null() {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "job still running: {t}\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}\n{}", server.log_tail());
    assert_eq!(job["done"].as_i64(), Some(USERS as i64));
    // Late sweeps (creates cut off by a kill) are due one retry period later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let apps = sim_after.apps(SIM_USER);
    let keys = sim_after.keys(SIM_USER);
    assert_eq!(apps.len(), USERS, "one app per user");
    let mut per_app: BTreeMap<String, usize> = BTreeMap::new();
    for k in &keys {
        *per_app.entry(k.app_ids[0].clone()).or_default() += 1;
    }
    let extra: Vec<_> = per_app.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        extra.is_empty() && keys.len() == USERS,
        "one key per app: {extra:?} ({} keys)",
        keys.len()
    );
    server.kill();
}

/// `provisioner import` against the service: bad rows skipped with their line numbers, a row
/// the service refuses reported and the rest of its chunk sent, a result file for every row,
/// and a second run that resumes from the state file without submitting anything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_onboards_a_file_reports_bad_rows_and_resumes() {
    let app = crate::helpers::spawn_app(crate::helpers::Db::Sqlite)
        .await
        .expect("app");
    app.create_tenant("acme").await;
    let dir = tempfile::tempdir().expect("dir");
    let input = dir.path().join("users.csv");
    let mut csv = String::from("external_id,scope_profile,scopes,display_name\n");
    for i in 0..11 {
        csv.push_str(&format!("user-{i:02},standard,,User {i}\n"));
    }
    csv.push_str("bad,standard,Predict,\n"); // line 13: both profile and scopes
    csv.push_str("ghost,no-such-profile,,\n"); // line 14: refused by the service
    csv.push_str(",standard,,\n"); // line 15: no id
    std::fs::write(&input, csv).expect("write");
    let opts = provisioner::import::ImportOptions {
        url: app.base.clone(),
        token: app.token("provisioner:write", Some("acme")),
        tenant: "acme".into(),
        input: input.clone(),
        result: None,
        state: None,
        chunk: 5,
        progress: false,
    };
    let s = provisioner::import::run(&opts).await.expect("import");
    assert_eq!(
        (s.rows, s.provisioned, s.failed, s.invalid),
        (14, 11, 0, 3),
        "{s:?}"
    );
    assert_eq!(app.sim.apps(SIM_USER).len(), 11);
    let result = std::fs::read_to_string(dir.path().join("users.csv.result.csv")).expect("result");
    let lines: Vec<&str> = result.lines().collect();
    assert_eq!(lines[0], "line,external_id,status,app_id,error");
    assert_eq!(lines.len(), 15, "{result}");
    assert!(
        lines[1].starts_with("2,user-00,provisioned,acme-"),
        "{}",
        lines[1]
    );
    assert!(
        lines[12].starts_with("13,,invalid,,") || lines[12].starts_with("13,bad,invalid"),
        "{}",
        lines[12]
    );
    assert!(
        lines[13].starts_with("14,ghost,invalid,,") && lines[13].contains("no-such-profile"),
        "{}",
        lines[13]
    );
    assert!(lines[14].starts_with("15,,invalid,,"), "{}", lines[14]);
    let jobs = app
        .call(Method::GET, "/v1/tenants/acme/jobs", Some(&app.admin), None)
        .await;
    let submitted = jobs.body["items"].as_array().unwrap().len();
    assert_eq!(submitted, 3, "chunks of 5, 5 and 1: {}", jobs.text);
    // A second run resumes from the state file: nothing submitted again, same summary.
    let again = provisioner::import::run(&opts).await.expect("resume");
    assert_eq!(again, s);
    let jobs = app
        .call(Method::GET, "/v1/tenants/acme/jobs", Some(&app.admin), None)
        .await;
    assert_eq!(jobs.body["items"].as_array().unwrap().len(), submitted);
    // A lost state file (a crash before it was written): submitting again provisions nobody
    // twice.
    std::fs::remove_file(dir.path().join("users.csv.import-state.json")).expect("rm");
    let calls = app.sim.request_count();
    let third = provisioner::import::run(&opts).await.expect("again");
    assert_eq!(third.provisioned, 11);
    assert_eq!(app.sim.request_count(), calls, "no upstream call");
}
