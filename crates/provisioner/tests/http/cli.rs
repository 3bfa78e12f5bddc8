//! The real binary's command line: `serve` refuses to start without its secrets, `migrate`
//! migrates, `token` mints a token the service accepts, and SIGTERM stops it cleanly.

use std::process::{Command, Stdio};

use provisioner_core::secret::MasterKey;

use crate::process::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_provisioner");

fn clean_env(cmd: &mut Command) -> &mut Command {
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
        .env("PROVISIONER_JWT_HS256_SECRET", "a-jwt-secret-for-tests")
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
    assert!(!err.contains("a-jwt-secret-for-tests"));

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_token_serve_and_sigterm_work_end_to_end() {
    let (url, dir) = provisioner_storage::testing::fresh_sqlite_url();
    let key = MasterKey::generate().to_base64();
    let jwt = "jwt-secret-for-the-cli-test";
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
    let mut child = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_DATABASE_URL", &url)
        .env("PROVISIONER_MASTER_KEY", &key)
        .env("PROVISIONER_JWT_HS256_SECRET", jwt)
        .env("PROVISIONER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
    drop(dir);
}
