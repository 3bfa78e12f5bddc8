//! One access-log line per request (route template, never the path's ids), audit events on
//! their own log target once committed, and a metrics listener that counts by route.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, captured_logs};

crate::on_both_backends!(
    access_and_audit_lines_name_templates_not_ids,
    a_callers_trace_reaches_the_upstream_and_the_logs
);

async fn access_and_audit_lines_name_templates_not_ids(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let request_id = format!("obs-{}", uuid::Uuid::new_v4());
    let external_id = format!("ext-{}", uuid::Uuid::new_v4().simple());
    let r = app
        .http
        .put(format!("{}/v1/tenants/acme/users/{external_id}", app.base))
        .bearer_auth(&w)
        .header("x-request-id", &request_id)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let secret = r.json::<serde_json::Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // A request that fails authentication is logged too, with no tenant.
    let denied = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users",
            Some("not-a-token"),
            None,
        )
        .await;
    assert_eq!(denied.status.as_u16(), 401);

    let logs = captured_logs();
    let access: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("provisioner::access") && l.contains(&request_id))
        .collect();
    assert_eq!(
        access.len(),
        1,
        "one access line for the request:\n{access:#?}"
    );
    let line = access[0];
    for part in [
        "method=PUT",
        "route=/v1/tenants/{tenant_id}/users/{external_id}",
        "status=201",
        "tenant=acme",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "access line lacks {part}: {line}");
    }
    assert!(
        !line.contains(&external_id),
        "a path id in the access line: {line}"
    );
    assert!(
        logs.lines().any(|l| l.contains("provisioner::access")
            && l.contains("route=/v1/tenants/{tenant_id}/users")
            && l.contains("status=401")),
        "the refused request has its access line"
    );

    let audit: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("provisioner::audit") && l.contains(&request_id))
        .collect();
    assert!(
        audit
            .iter()
            .any(|l| l.contains("action=user.provision") && l.contains("tenant=acme")),
        "the provisioning's audit event on the audit target: {audit:#?}"
    );
    assert!(!logs.contains(&secret), "a key secret reached the logs");
}

async fn a_callers_trace_reaches_the_upstream_and_the_logs(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let r = app
        .http
        .put(format!("{}/v1/tenants/acme/users/traced", app.base))
        .bearer_auth(&w)
        .header("traceparent", &traceparent)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // Every upstream call of the PUT carries the caller's trace, each as a new child span.
    let seen: Vec<String> = app
        .sim
        .traceparents()
        .into_iter()
        .filter(|t| t.contains(&trace_id))
        .collect();
    assert!(
        seen.len() >= 2,
        "create app and create key carry the trace: {seen:?}"
    );
    for t in &seen {
        assert!(
            t.starts_with(&format!("00-{trace_id}-")) && t.ends_with("-01"),
            "{t}"
        );
        assert!(
            !t.contains("00f067aa0ba902b7"),
            "a child span, not the caller's: {t}"
        );
    }
    assert!(
        captured_logs()
            .lines()
            .any(|l| l.contains("provisioner::access")
                && l.contains(&format!("trace_id={trace_id}"))),
        "the access line names the trace"
    );
    // A malformed traceparent is ignored: the request still works, under a new trace.
    let before = app.sim.traceparents().len();
    let r = app
        .http
        .put(format!("{}/v1/tenants/acme/users/untraced", app.base))
        .bearer_auth(&w)
        .header("traceparent", "00-zz-bad")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let after = app.sim.traceparents();
    assert!(
        after.len() > before,
        "a new trace was started and passed on"
    );
    assert!(after.iter().all(|t| !t.contains("zz")));
}
