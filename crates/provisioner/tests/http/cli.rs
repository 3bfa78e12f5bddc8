//! The real binary's command line: `serve` refuses to start without its secrets, `migrate`
//! migrates, `token` mints a token the service accepts, SIGTERM stops it cleanly, and
//! `reseal` moves every stored secret to a new master key.

use std::process::{Command, Stdio};

use provisioner_core::secret::MasterKey;

use crate::helpers::{SIM_USER, token};
use crate::process::{Server, ServerEnv, call, free_port, simulator, tenant_body};

const BIN: &str = env!("CARGO_BIN_EXE_provisioner");

pub(crate) fn clean_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("PROVISIONER_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PROVISIONER_LOG", "warn")
}

#[test]
fn serve_refuses_to_start_without_a_master_key_or_a_jwt_verifier() {
    let (url, _dir) = provisioner_storage::testing::fresh_sqlite_url();
    let out = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_DATABASE_URL", &url)
        .env(
            "PROVISIONER_JWT_HS256_SECRET",
            "a-jwt-secret-for-tests-0123456789",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PROVISIONER_MASTER_KEY"));

    let out = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_DATABASE_URL", &url)
        .env("PROVISIONER_MASTER_KEY", MasterKey::generate().to_base64())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JWT"), "{err}");
    assert!(!err.contains("a-jwt-secret-for-tests-0123456789"));

    let out = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_DATABASE_URL", &url)
        .env("PROVISIONER_MASTER_KEY", "c2hvcnQ=")
        .env("PROVISIONER_JWT_HS256_SECRET", "x")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a master key that is not 32 bytes is refused"
    );

    let short = "31-bytes-is-one-too-few-0123456";
    let out = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_DATABASE_URL", &url)
        .env("PROVISIONER_MASTER_KEY", MasterKey::generate().to_base64())
        .env("PROVISIONER_JWT_HS256_SECRET", short)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a short HS256 secret is refused");
    assert!(err.contains("at least 32 bytes"), "{err}");
    assert!(!err.contains(short), "{err}");
}

/// Without the `otlp` feature, an OTLP endpoint is refused rather than silently not used.
#[cfg(not(feature = "otlp"))]
#[test]
fn serve_refuses_an_otlp_endpoint_in_a_build_without_the_exporter() {
    let (url, _dir) = provisioner_storage::testing::fresh_sqlite_url();
    let out = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_LISTEN", "127.0.0.1:0")
        .env("PROVISIONER_METRICS_LISTEN", "off")
        .env("PROVISIONER_DATABASE_URL", &url)
        .env("PROVISIONER_MASTER_KEY", MasterKey::generate().to_base64())
        .env(
            "PROVISIONER_JWT_HS256_SECRET",
            "a-jwt-secret-for-tests-0123456789",
        )
        .env("PROVISIONER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this build has no OTLP exporter: build with `--features otlp`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_token_serve_and_sigterm_work_end_to_end() {
    let (url, dir) = provisioner_storage::testing::fresh_sqlite_url();
    let key = MasterKey::generate().to_base64();
    let jwt = "jwt-secret-for-the-cli-test-0123456789";
    let status = clean_env(&mut Command::new(BIN))
        .arg("migrate")
        .env("PROVISIONER_DATABASE_URL", &url)
        .status()
        .unwrap();
    assert!(status.success());

    let out = clean_env(&mut Command::new(BIN))
        .args([
            "token",
            "--scope",
            "provisioner:admin",
            "--ttl",
            "10m",
            "--sub",
            "cli-test",
        ])
        .env("PROVISIONER_JWT_HS256_SECRET", jwt)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let port = free_port();
    // Its log goes to a file, as under systemd or `> serve.log`: plain text, no colour codes.
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("serve.log");
    let mut child = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_DATABASE_URL", &url)
        .env("PROVISIONER_MASTER_KEY", &key)
        .env("PROVISIONER_JWT_HS256_SECRET", jwt)
        .env("PROVISIONER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PROVISIONER_METRICS_LISTEN", "off")
        .env("PROVISIONER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "serve became ready");
    let r = http
        .get(format!("{base}/v1/tenants"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the minted token is accepted");

    // SIGTERM: a clean, prompt exit.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("serve did not stop within 5 s of SIGTERM")
    });
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("INFO"), "serve logged at info: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI escape codes in a log file: {log:?}"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_moves_every_secret_to_a_new_master_key() {
    use reqwest::{Method, StatusCode};
    use secrecy::SecretString;
    use serde_json::json;

    let (url, dir) = provisioner_storage::testing::fresh_sqlite_url();
    let (key_a, key_b) = (
        MasterKey::generate().to_base64(),
        MasterKey::generate().to_base64(),
    );
    let jwt = SecretString::from("jwt-secret-for-the-reseal-test-0123456789");
    let admin = token(&jwt, "provisioner:admin", None);
    let http = reqwest::Client::new();
    let sim = simulator(0, 0).await;
    let status = clean_env(&mut Command::new(BIN))
        .arg("migrate")
        .env("PROVISIONER_DATABASE_URL", &url)
        .status()
        .unwrap();
    assert!(status.success());

    // Under key A: a tenant, a user whose key was rotated with a grace period (two keys).
    let mut env = ServerEnv::new(free_port(), &url, &jwt, &dir.path().join("serve.log"));
    env.master_key = key_a.clone();
    let mut server = Server::new(env.clone());
    server.start().await;
    let base = server.base();
    let (st, _, text) = call(
        &http,
        Method::POST,
        &format!("{base}/v1/tenants"),
        &admin,
        Some(tenant_body("acme", &sim.base_url())),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{text}");
    let user = format!("{base}/v1/tenants/acme/users/alice");
    let (st, _, text) = call(&http, Method::PUT, &user, &admin, Some(json!({})))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{text}");
    let (st, body, text) = call(
        &http,
        Method::POST,
        &format!("{user}/rotate-key"),
        &admin,
        Some(json!({"grace_seconds": 3600})),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::OK, "{text}");
    let secret = body["secret"]
        .as_str()
        .expect("the new key's secret")
        .to_owned();
    assert_eq!(
        sim.keys(SIM_USER).len(),
        2,
        "the replaced key is in its grace period"
    );
    server.kill();

    // Re-seal: B current, A previous. Repeating it is harmless.
    let reseal = |previous: Option<&str>| {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .arg("reseal")
            .env("PROVISIONER_DATABASE_URL", &url)
            .env("PROVISIONER_MASTER_KEY", &key_b);
        if let Some(p) = previous {
            cmd.env("PROVISIONER_MASTER_KEY_PREVIOUS", p);
        }
        cmd.output().unwrap()
    };
    for _ in 0..2 {
        let out = reseal(Some(&key_a));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(
            stdout.contains(
                "1 tenant PAT(s), 1 user(s) (2 key(s)), 0 webhook endpoint(s); 0 user(s) skipped (busy); 0 failure(s)"
            ),
            "{stdout}"
        );
        for s in [&key_a, &key_b, &secret] {
            assert!(!stdout.contains(s.as_str()) && !stderr.contains(s.as_str()));
        }
    }
    // Everything is under B now: an unrelated previous key does not matter.
    let out = reseal(Some(&MasterKey::generate().to_base64()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "everything is under B already: {stdout}"
    );

    // Key B alone: the same secret is revealed, the PAT opens (a new user is provisioned), the
    // retired key opens (a rotation deletes it upstream).
    let mut env_b = env.clone();
    env_b.master_key = key_b.clone();
    let mut server = Server::new(env_b);
    server.start().await;
    let base = server.base();
    let user = format!("{base}/v1/tenants/acme/users/alice");
    let (st, body, text) = call(
        &http,
        Method::POST,
        &format!("{user}/reveal-key"),
        &admin,
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::OK, "{text}");
    assert_eq!(body["secret"].as_str(), Some(secret.as_str()));
    let (st, _, text) = call(
        &http,
        Method::PUT,
        &format!("{base}/v1/tenants/acme/users/bob"),
        &admin,
        Some(json!({})),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{text}");
    let (st, _, text) = call(
        &http,
        Method::POST,
        &format!("{user}/rotate-key"),
        &admin,
        // Her previous key is still in its grace period: revoke it with this rotation.
        Some(json!({"grace_seconds": 0, "revoke_previous": true})),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::OK, "{text}");
    assert_eq!(
        sim.keys(SIM_USER).len(),
        2,
        "alice's two old keys deleted upstream, her new key and bob's remain"
    );
    server.kill();

    // Had the operator kept only the old key, nothing would open: reseal reports every value.
    let out = {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .arg("reseal")
            .env("PROVISIONER_DATABASE_URL", &url)
            .env("PROVISIONER_MASTER_KEY", &key_a);
        cmd.output().unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("failed: tenants/acme:"), "{stdout}");
    assert!(
        stdout.contains("failed: tenants/acme/users/alice:"),
        "{stdout}"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_in_flight_requests_finish_and_a_restart_serves_on() {
    graceful_stop("-TERM").await;
}

/// Ctrl-C in a terminal: as graceful as SIGTERM (actix's own signal handling, which stops at
/// once on SIGINT, is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigint_is_as_graceful_as_sigterm() {
    graceful_stop("-INT").await;
}

async fn graceful_stop(signal: &'static str) {
    use crate::process::{Server, ServerEnv, simulator, tenant_body};
    // Arrange: every upstream call takes 600 ms, so a provisioning is in flight for ~1.2 s.
    let sim = simulator(600, 0).await;
    let (url, dir) = provisioner_storage::testing::fresh_sqlite_url();
    let jwt = secrecy::SecretString::from("jwt-secret-for-the-sigterm-test-0123456789");
    let env = ServerEnv::new(free_port(), &url, &jwt, &dir.path().join("serve.log"));
    let mut server = Server::new(env);
    server.start().await;
    let base = server.base();
    let admin = provisioner::token::mint(
        &jwt,
        "provisioner:admin",
        None,
        600,
        "sigterm-test",
        None,
        None,
    )
    .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(&admin)
        .json(&tenant_body("acme", &sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // Act: a PUT is in flight when the signal arrives.
    let put = {
        let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
        tokio::spawn(async move {
            let r = http
                .put(format!("{base}/v1/tenants/acme/users/in-flight"))
                .bearer_auth(admin)
                .json(&serde_json::json!({}))
                .send()
                .await?;
            Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = server.stop_with(signal, std::time::Duration::from_secs(10));
        (s, server)
    })
    .await
    .unwrap();
    let (exit, mut server) = status;

    // Assert: the request finished (201), then the process exited cleanly.
    let (code, body) = put
        .await
        .unwrap()
        .expect("the in-flight request got its answer");
    assert_eq!(code, 201, "{body}");
    assert!(exit.expect("exited within 10 s").success());
    assert_eq!(sim.apps(crate::helpers::SIM_USER).len(), 1);
    assert_eq!(sim.keys(crate::helpers::SIM_USER).len(), 1);

    // A restart serves on from the same database.
    server.start().await;
    let g = http
        .get(format!("{base}/v1/tenants/acme/users/in-flight"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(g.status().as_u16(), 200);
    let v: serde_json::Value = g.json().await.unwrap();
    assert_eq!(v["status"], "active");
}
