//! Logs and errors never carry the PAT or a key id, even with faults and failures.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clarifai_sim::Faults;
use provisioner_clarifai::ClientConfig;
use secrecy::ExposeSecret;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::common::{PAT, USER, app_spec, client, client_with, key_spec, sim, test_config};

/// Everything logged by this test binary (the subscriber is global: tests run on many threads).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let writer = move || Capture(sink.clone());
        let targets = Targets::new()
            .with_target("provisioner_clarifai", LevelFilter::TRACE)
            .with_target("reqwest", LevelFilter::TRACE)
            .with_target("hyper", LevelFilter::TRACE)
            .with_target("hyper_util", LevelFilter::TRACE);
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false);
        let _ = tracing_subscriber::registry()
            .with(layer.with_filter(targets))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_or_errors() {
    let buf = captured();
    let sim = sim().await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(300),
        per_page: 2,
        ..test_config()
    };
    let c = client(&sim, config.clone());
    c.create_app(&app_spec("logs")).await.unwrap();
    let mut errors = String::new();
    let mut record =
        |e: provisioner_clarifai::ClarifaiError| errors.push_str(&format!("{e} {e:?}\n"));

    sim.set_faults(Faults {
        p_500: 0.15,
        p_429: 0.15,
        p_commit_drop: 0.15,
        p_hang: 0.1,
        hang_ms: 600,
        seed: Some(42),
        ..Faults::none()
    });
    let mut keys = Vec::new();
    for i in 0..6 {
        match c.create_key(&key_spec("logs", &format!("log-{i}"))).await {
            Ok(k) => keys.push(k),
            Err(e) => record(e),
        }
    }
    for k in &keys {
        c.get_key(&k.id)
            .await
            .map(|_| ())
            .unwrap_or_else(&mut record);
    }
    c.list_keys().await.map(|_| ()).unwrap_or_else(&mut record);
    c.list_app_keys("logs")
        .await
        .map(|_| ())
        .unwrap_or_else(&mut record);
    for k in &keys {
        c.delete_key(&k.id).await.unwrap_or_else(&mut record);
        // Deleted already: a 404 whose path held the key.
        c.delete_key(&k.id).await.unwrap_or_else(&mut record);
    }
    client_with(&sim, config, USER, "wrong-pat-also-secret")
        .my_scopes()
        .await
        .map(|_| ())
        .unwrap_or_else(&mut record);
    sim.set_faults(Faults::none());

    let mut secrets: Vec<String> = keys
        .iter()
        .map(|k| k.id.expose_secret().to_owned())
        .collect();
    secrets.extend(sim.keys(USER).into_iter().map(|k| k.id));
    secrets.push(PAT.to_owned());
    secrets.push("wrong-pat-also-secret".to_owned());
    assert!(
        keys.len() >= 2,
        "enough keys were created to exercise the key paths"
    );

    let logs = String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        logs.contains("/keys/{key}"),
        "key paths are logged, redacted"
    );
    assert!(logs.contains("create_key") && logs.contains("attempt"));
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "a secret reached the logs");
        assert!(
            !errors.contains(s.as_str()),
            "a secret reached an error: {errors}"
        );
    }
    sim.stop().await;
}
