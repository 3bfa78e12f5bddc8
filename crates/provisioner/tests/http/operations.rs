//! The operator's side of the real binary: secrets given as `_FILE`s, `config check`,
//! `healthcheck` (the container HEALTHCHECK), and the demo moving off a taken default port.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use provisioner_core::secret::MasterKey;
use secrecy::SecretString;

use crate::cli::clean_env;
use crate::process::{Server, ServerEnv, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_provisioner");

/// A child killed when dropped (a failing test leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `GET {base}/readyz` until 200 (at most 20 s); panics if the child exits first.
async fn wait_ready(child: &mut Child, base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited before it was ready: {status}");
        }
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} not ready after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_given_as_files_are_used_and_never_together_with_their_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (url, db_dir) = provisioner_storage::testing::fresh_sqlite_url();
    let hs256 = "hs256-secret-from-a-file-0123456789abcdef";
    let key = MasterKey::generate().to_base64();
    let write = |name: &str, value: &str| {
        let p = dir.path().join(name);
        // As `kubectl create secret` or an editor leaves them: with a trailing newline.
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p
    };
    let (key_file, hs_file, url_file) = (
        write("master-key", &key),
        write("jwt-hs256-secret", hs256),
        write("database-url", &url),
    );

    // serve with every secret as a file: the database is the file's, tokens signed with the
    // file's secret are accepted.
    let port = free_port();
    let mut child = Running(
        clean_env(&mut Command::new(BIN))
            .arg("serve")
            .env("PROVISIONER_MASTER_KEY_FILE", &key_file)
            .env("PROVISIONER_JWT_HS256_SECRET_FILE", &hs_file)
            .env("PROVISIONER_DATABASE_URL_FILE", &url_file)
            .env("PROVISIONER_LISTEN", format!("127.0.0.1:{port}"))
            .env("PROVISIONER_METRICS_LISTEN", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&mut child.0, &base).await;
    assert!(
        db_dir.path().join("db.sqlite").exists(),
        "the database named in PROVISIONER_DATABASE_URL_FILE is used"
    );
    let admin = provisioner::token::mint(
        &SecretString::from(hs256),
        "provisioner:admin",
        None,
        600,
        "file-test",
        None,
        None,
    )
    .unwrap();
    let r = reqwest::Client::new()
        .get(format!("{base}/v1/tenants"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "a token signed with the file's secret"
    );
    drop(child);

    // A variable and its _FILE together: refused, naming both, showing neither value.
    for (var, value, file) in [
        ("PROVISIONER_JWT_HS256_SECRET", hs256, &hs_file),
        ("PROVISIONER_DATABASE_URL", url.as_str(), &url_file),
        ("PROVISIONER_MASTER_KEY", key.as_str(), &key_file),
    ] {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .arg("serve")
            .env("PROVISIONER_MASTER_KEY_FILE", &key_file)
            .env("PROVISIONER_JWT_HS256_SECRET_FILE", &hs_file)
            .env("PROVISIONER_DATABASE_URL_FILE", &url_file)
            .env(var, value)
            .env(format!("{var}_FILE"), file);
        let out = cmd.output().unwrap();
        let all = text(&out);
        assert!(!out.status.success(), "{var} and its _FILE: {all}");
        assert!(
            all.contains(&format!("{var} and {var}_FILE are both set")),
            "{all}"
        );
        assert!(!all.contains(hs256) && !all.contains(&key), "{all}");
    }

    // An unreadable _FILE is named with its path.
    let out = clean_env(&mut Command::new(BIN))
        .arg("serve")
        .env("PROVISIONER_DATABASE_URL_FILE", dir.path().join("missing"))
        .output()
        .unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("PROVISIONER_DATABASE_URL_FILE"), "{all}");
}

#[test]
fn config_check_prints_the_settings_redacted_and_fails_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().to_base64();
    let previous = MasterKey::generate().to_base64();
    let previous_file = dir.path().join("previous-key");
    std::fs::write(&previous_file, &previous).unwrap();
    let hs256 = "config-check-hs256-secret-0123456789abcdef";
    let hs_file = dir.path().join("hs256");
    std::fs::write(&hs_file, format!("{hs256}\n")).unwrap();
    let db_password = "db-password-never-printed";
    // A host that does not resolve: `config check` must not connect to the database.
    let db_url = format!("postgres://app:{db_password}@db.invalid/prov?sslmode=require");
    let secrets = [key.as_str(), previous.as_str(), hs256, db_password];
    let check = |tweak: &dyn Fn(&mut Command)| {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .args(["config", "check"])
            .env("PROVISIONER_MASTER_KEY", &key)
            .env("PROVISIONER_MASTER_KEY_PREVIOUS_FILE", &previous_file)
            .env("PROVISIONER_JWT_HS256_SECRET_FILE", &hs_file)
            .env("PROVISIONER_DATABASE_URL", &db_url)
            .env("PROVISIONER_LISTEN", "0.0.0.0:8080")
            .env("PROVISIONER_METRICS_LISTEN", "0.0.0.0:9464");
        tweak(&mut cmd);
        let started = Instant::now();
        let out = cmd.output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "config check is quick"
        );
        let all = text(&out);
        for s in secrets {
            assert!(!all.contains(s), "a secret was printed: {all}");
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), all, stderr)
    };

    let (ok, all, _) = check(&|_| {});
    assert!(ok, "{all}");
    for line in [
        "configuration OK",
        "postgres://app:***@db.invalid/prov?sslmode=require",
        "PROVISIONER_MASTER_KEY ",
        "<redacted>",
        hs_file.to_str().unwrap(),
        previous_file.to_str().unwrap(),
        "0.0.0.0:9464",
    ] {
        assert!(all.contains(line), "{line:?} in {all}");
    }
    let line = |var: &str| {
        all.lines()
            .find(|l| l.split_whitespace().next() == Some(var))
            .unwrap_or_else(|| panic!("{var} listed: {all}"))
            .to_owned()
    };
    assert!(line("PROVISIONER_MASTER_KEY").ends_with("<redacted>"));
    assert!(line("PROVISIONER_JWT_HS256_SECRET").ends_with("<redacted>"));
    assert!(line("PROVISIONER_JWT_PUBLIC_KEY_FILE").ends_with("(not set)"));

    // A typo is reported (as `serve` would warn), not fatal.
    let (ok, all, _) = check(&|c| {
        c.env("PROVISIONER_MASTERKEY", "x");
    });
    assert!(ok, "{all}");
    assert!(all.contains("PROVISIONER_MASTERKEY"), "{all}");

    // Bad settings: non-zero, with the setting named.
    let short = "ten-bytes!";
    let hs_short = dir.path().join("hs256-short");
    std::fs::write(&hs_short, short).unwrap();
    type Tweak<'a> = &'a dyn Fn(&mut Command);
    let bad: [(&str, Tweak); 10] = [
        ("at least 32 bytes", &|c| {
            c.env_remove("PROVISIONER_JWT_HS256_SECRET_FILE")
                .env("PROVISIONER_JWT_HS256_SECRET", short);
        }),
        ("at least 32 bytes", &|c| {
            c.env("PROVISIONER_JWT_HS256_SECRET_FILE", &hs_short);
        }),
        ("PROVISIONER_MASTER_KEY", &|c| {
            c.env_remove("PROVISIONER_MASTER_KEY");
        }),
        ("PROVISIONER_MASTER_KEY_PREVIOUS", &|c| {
            c.env_remove("PROVISIONER_MASTER_KEY_PREVIOUS_FILE")
                .env("PROVISIONER_MASTER_KEY_PREVIOUS", &key);
        }),
        ("PROVISIONER_UPSTREAM_BUDGET", &|c| {
            c.env("PROVISIONER_UPSTREAM_BUDGET", "everywhere");
        }),
        ("PROVISIONER_LISTEN", &|c| {
            c.env("PROVISIONER_LISTEN", "not-an-address");
        }),
        ("PROVISIONER_METRICS_LISTEN", &|c| {
            c.env("PROVISIONER_METRICS_LISTEN", "127.0.0.1:port");
        }),
        ("is the API's address", &|c| {
            c.env("PROVISIONER_LISTEN", "127.0.0.1:18080")
                .env("PROVISIONER_METRICS_LISTEN", "127.0.0.1:18080");
        }),
        ("PROVISIONER_LOG_FORMAT", &|c| {
            c.env("PROVISIONER_LOG_FORMAT", "jsn");
        }),
        ("PROVISIONER_LOG", &|c| {
            c.env("PROVISIONER_LOG", "info,[[[");
        }),
    ];
    for (named, tweak) in bad {
        let (ok, all, stderr) = check(tweak);
        assert!(!ok, "{named}: {all}");
        assert!(stderr.contains("the configuration is invalid"), "{all}");
        assert!(stderr.contains(named), "{named} in the error: {all}");
        assert!(!all.contains(short), "{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_on_a_ready_service_and_1_otherwise() {
    let (url, dir) = provisioner_storage::testing::fresh_sqlite_url();
    let jwt = SecretString::from("jwt-secret-for-the-healthcheck-0123456789");
    let port = free_port();
    let mut server = Server::new(ServerEnv::new(
        port,
        &url,
        &jwt,
        &dir.path().join("serve.log"),
    ));
    server.start().await;
    let healthcheck = |tweak: &dyn Fn(&mut Command)| {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd).arg("healthcheck");
        tweak(&mut cmd);
        let started = Instant::now();
        let out = cmd.output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "healthcheck gives up within its 2 s timeout"
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // As in the image: PROVISIONER_LISTEN=0.0.0.0:PORT is checked on loopback.
    let (code, stdout) = healthcheck(&|c| {
        c.env("PROVISIONER_LISTEN", format!("0.0.0.0:{port}"));
    });
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        stdout.trim(),
        format!("ok: http://127.0.0.1:{port}/readyz: 200")
    );
    let (code, stdout) = healthcheck(&|c| {
        c.args(["--url", &format!("http://127.0.0.1:{port}/")]);
    });
    assert_eq!(code, Some(0), "{stdout}");

    // Nothing listening.
    server.kill();
    let (code, stdout) = healthcheck(&|c| {
        c.env("PROVISIONER_LISTEN", format!("127.0.0.1:{port}"));
    });
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("unhealthy: "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    // Something answering, but not ready.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let (code, stdout) = healthcheck(&|c| {
        c.env("PROVISIONER_LISTEN", format!("127.0.0.1:{busy}"));
    });
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("503"), "{stdout}");
    drop(dir);
}

#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_moves_off_a_taken_default_port_but_not_off_a_requested_one() {
    // Another program holds the demo's default port (8080 in real life; a free port here).
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let demo = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd)
            .arg("demo")
            .args(["--default-listen", &format!("127.0.0.1:{taken}")])
            .arg("--data-dir")
            .arg(data.path().join("demo"))
            .args(extra)
            .stdin(Stdio::null());
        cmd
    };

    let mut child = Running(
        demo(&[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no `export PROV=` line from the demo: {printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if let Some(url) = line.strip_prefix("export PROV=") {
            break url.to_owned();
        }
    };
    assert!(
        printed.contains(&format!(
            "127.0.0.1:{taken} (the demo's default address) is in use: the demo listens on {base} instead"
        )),
        "{printed}"
    );
    assert!(
        printed.contains("--listen or PROVISIONER_LISTEN"),
        "{printed}"
    );
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_ne!(base, format!("http://127.0.0.1:{taken}"));
    wait_ready(&mut child.0, &base).await;
    drop(child);

    // Asked for explicitly (flag or variable), a taken address is an error naming the setting.
    let requested = format!("127.0.0.1:{taken}");
    for out in [
        demo(&["--listen", &requested]).output().unwrap(),
        demo(&[])
            .env("PROVISIONER_LISTEN", &requested)
            .output()
            .unwrap(),
    ] {
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(
            all.contains(&format!(
                "{requested} is in use (set by --listen or PROVISIONER_LISTEN)"
            )),
            "{all}"
        );
    }
    drop(holder);
}
