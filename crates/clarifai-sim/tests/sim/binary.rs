//! The compiled `clarifai-sim` binary.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_its_url_first_and_serves() {
    // Arrange
    let mut child = Command::new(env!("CARGO_BIN_EXE_clarifai-sim"))
        .args([
            "--port",
            "0",
            "--account",
            "u1:pat1",
            "--latency-ms",
            "20",
            "--p-500",
            "0.0",
            "--auto-app-key",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn clarifai-sim");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("URL in time")
        .expect("read")
        .expect("a first line");
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with('/'),
        "{url}"
    );
    // Act
    let res = reqwest::Client::new()
        .get(format!("{url}/v2/users/me"))
        .header("Authorization", "Key pat1")
        .send()
        .await
        .expect("send");
    // Assert
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["user"]["id"], "u1");
    // `--auto-app-key`: a new app comes with a key.
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{url}/v2/users/me/apps"))
        .header("Authorization", "Key pat1")
        .json(&serde_json::json!({"apps": [{"id": "a1"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 200);
    let keys: serde_json::Value = http
        .get(format!("{url}/v2/users/me/apps/a1/keys"))
        .header("Authorization", "Key pat1")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1), "{keys}");
    child.start_kill().expect("kill");
    let status = child.wait().await.expect("wait");
    assert!(!status.success() || status.code().is_some());
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        tokio::io::AsyncReadExt::read_to_string(&mut e, &mut stderr)
            .await
            .expect("stderr");
    }
    assert!(!stderr.contains("pat1"), "logs never contain the PAT");
}
