//! End users: provision, read, list, rotate, reveal, deprovision, look up.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{SIM_USER, TestApp, assert_problem, enc};

crate::on_both_backends!(
    put_twice_makes_one_app_and_one_key,
    concurrent_puts_make_one_user,
    rotation_replaces_the_key_upstream,
    deprovisioning_deletes_upstream_and_repeats,
    unicode_external_ids_work,
    users_list_pages_and_filters,
    reveal_and_lookup_find_the_user,
    audit_events_record_changes,
    health_readiness_and_openapi,
);

async fn put_twice_makes_one_app_and_one_key(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let first = app
        .put_user(
            "acme",
            "user-42@acme.example",
            &w,
            json!({"scope_profile": "standard", "display_name": "U 42"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let secret = first.body["secret"]
        .as_str()
        .expect("secret on 201")
        .to_owned();
    assert_eq!(first.body["status"], "active");
    assert_eq!(
        first.body["key"]["scopes"],
        json!(["Inputs:Get", "Predict"])
    );
    let app_id = first.body["app"]["id"].as_str().unwrap().to_owned();
    assert!(app_id.starts_with("acme-user-42-acme-"), "{app_id}");
    assert_eq!(first.body["app"]["user_id"], SIM_USER);

    let second = app
        .put_user(
            "acme",
            "user-42@acme.example",
            &w,
            json!({"scope_profile": "standard"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert!(
        second.body.get("secret").is_none_or(|s| s.is_null()),
        "{}",
        second.text
    );
    assert_eq!(app.upstream_counts(), (1, 1));

    // The key upstream: restricted to the user's app, exactly the profile's scopes.
    let key = &app.sim.keys(SIM_USER)[0];
    assert_eq!(key.id, secret);
    assert_eq!(key.app_ids, vec![app_id]);
    let mut scopes = key.scopes.clone();
    scopes.sort();
    assert_eq!(scopes, vec!["Inputs:Get", "Predict"]);

    // Other scopes: 409, nothing created.
    let other = app
        .put_user(
            "acme",
            "user-42@acme.example",
            &w,
            json!({"scope_profile": "annotator"}),
        )
        .await;
    assert_problem(&other, 409, "conflict");
    assert_eq!(app.upstream_counts(), (1, 1));
}

async fn concurrent_puts_make_one_user(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let http = app.http.clone();
        let url = format!("{}/v1/tenants/acme/users/same-user", app.base);
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            http.put(url)
                .bearer_auth(w)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(app.upstream_counts(), (1, 1));
}

async fn rotation_replaces_the_key_upstream(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let first = app.put_user("acme", "rot", &w, json!({})).await;
    let old = first.body["secret"].as_str().unwrap().to_owned();
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/rot/rotate-key",
            Some(&w),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new = r.body["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(old, new);
    assert_eq!(r.body["key"]["scopes"], first.body["key"]["scopes"]);
    let keys = app.sim.keys(SIM_USER);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, new, "old key gone upstream, new one there");
    // With a grace period both keys live until it ends.
    let g = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/rot/rotate-key",
            Some(&w),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    assert_eq!(app.sim.keys(SIM_USER).len(), 2);
    // Out of range: refused, nothing changes.
    let bad = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/rot/rotate-key",
            Some(&w),
            Some(json!({"grace_seconds": 86401})),
        )
        .await;
    assert!(matches!(bad.status.as_u16(), 400 | 422), "{}", bad.text);
    assert_eq!(app.sim.keys(SIM_USER).len(), 2);
}

async fn deprovisioning_deletes_upstream_and_repeats(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    app.put_user("acme", "bye", &w, json!({})).await;
    assert_eq!(app.upstream_counts(), (1, 1));
    let d = app
        .call(Method::DELETE, "/v1/tenants/acme/users/bye", Some(&w), None)
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert_eq!(d.body["status"], "deleted");
    assert_eq!(app.upstream_counts(), (0, 0));
    let again = app
        .call(Method::DELETE, "/v1/tenants/acme/users/bye", Some(&w), None)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["status"], "deleted");
    let missing = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/users/never-was",
            Some(&w),
            None,
        )
        .await;
    assert_problem(&missing, 404, "not_found");
}

async fn unicode_external_ids_work(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    for ext in ["ユーザー🙂", "josé/álvarez@example.com", "a b+c?d#e"] {
        let r = app.put_user("acme", ext, &w, json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{ext}: {}", r.text);
        assert_eq!(r.body["external_id"], ext);
        let g = app
            .call(
                Method::GET,
                &format!("/v1/tenants/acme/users/{}", enc(ext)),
                Some(&w),
                None,
            )
            .await;
        assert_eq!(g.status, StatusCode::OK, "{ext}: {}", g.text);
        assert_eq!(g.body["external_id"], ext);
    }
    assert_eq!(app.upstream_counts(), (3, 3));
}

async fn users_list_pages_and_filters(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    for i in 0..5 {
        app.put_user("acme", &format!("user-{i}"), &w, json!({}))
            .await;
    }
    app.call(
        Method::DELETE,
        "/v1/tenants/acme/users/user-0",
        Some(&w),
        None,
    )
    .await;
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let r = app
            .call(
                Method::GET,
                &format!("/v1/tenants/acme/users?limit=2{q}"),
                Some(&w),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        for u in r.body["items"].as_array().unwrap() {
            assert!(
                seen.insert(u["external_id"].as_str().unwrap().to_owned()),
                "no duplicates across pages"
            );
            assert!(u.get("secret").is_none_or(|s| s.is_null()));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let active = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users?status=active",
            Some(&w),
            None,
        )
        .await;
    assert_eq!(
        active.body["items"].as_array().unwrap().len(),
        4,
        "{}",
        active.text
    );
    let bad = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users?limit=0",
            Some(&w),
            None,
        )
        .await;
    assert!(bad.status.is_client_error(), "{}", bad.text);
    let bad = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users?limit=1001",
            Some(&w),
            None,
        )
        .await;
    assert!(bad.status.is_client_error(), "{}", bad.text);
}

async fn reveal_and_lookup_find_the_user(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let secret = app.put_user("acme", "leaky", &w, json!({})).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = app.token("provisioner:secrets", Some("acme"));
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/leaky/reveal-key",
            Some(&s),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["secret"], secret);
    let no = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/leaky/reveal-key",
            Some(&w),
            None,
        )
        .await;
    assert_problem(&no, 403, "forbidden");

    let l = app
        .call(
            Method::POST,
            "/v1/keys/lookup",
            Some(&app.admin),
            Some(json!({"secret": secret})),
        )
        .await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    assert_eq!(l.body, json!({"tenant_id": "acme", "external_id": "leaky"}));
    let l = app
        .call(
            Method::POST,
            "/v1/keys/lookup",
            Some(&app.admin),
            Some(json!({"secret": "not-a-key-we-know"})),
        )
        .await;
    assert_problem(&l, 404, "not_found");
    let l = app
        .call(
            Method::POST,
            "/v1/keys/lookup",
            Some(&w),
            Some(json!({"secret": secret})),
        )
        .await;
    assert_problem(&l, 403, "forbidden");
}

async fn audit_events_record_changes(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    app.put_user("acme", "audited", &w, json!({})).await;
    let s = app.token("provisioner:secrets", Some("acme"));
    let rid = "req-abc-123";
    let r = app
        .http
        .post(format!(
            "{}/v1/tenants/acme/users/audited/reveal-key",
            app.base
        ))
        .bearer_auth(&s)
        .header("x-request-id", rid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], rid);
    let a = app.token("provisioner:audit", Some("acme"));
    let ev = app
        .call(
            Method::GET,
            "/v1/audit-events?tenant_id=acme&limit=100",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(ev.status, StatusCode::OK, "{}", ev.text);
    let items = ev.body["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"tenant.create")
            && actions.contains(&"user.provision")
            && actions.contains(&"user.reveal_key"),
        "{actions:?}"
    );
    let reveal = items
        .iter()
        .find(|e| e["action"] == "user.reveal_key")
        .unwrap();
    assert_eq!(reveal["request_id"], rid);
    assert_eq!(reveal["actor"], "test-caller");
    for k in [
        "id",
        "at",
        "actor",
        "tenant_id",
        "action",
        "target",
        "outcome",
        "request_id",
    ] {
        assert!(reveal.get(k).is_some(), "audit event field {k}");
    }
    let no = app
        .call(
            Method::GET,
            "/v1/audit-events?tenant_id=acme",
            Some(&w),
            None,
        )
        .await;
    assert_problem(&no, 403, "forbidden");
}

async fn health_readiness_and_openapi(app: TestApp) {
    let h = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(h.status, StatusCode::OK);
    let r = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let o = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(o.status, StatusCode::OK);
    assert!(o.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = o.body["paths"].as_object().unwrap();
    for p in [
        "/v1/tenants",
        "/v1/tenants/{tenant_id}",
        "/v1/tenants/{tenant_id}/upstream-credential",
        "/v1/tenants/{tenant_id}/scope-profiles",
        "/v1/tenants/{tenant_id}/scope-profiles/{name}",
        "/v1/tenants/{tenant_id}/users",
        "/v1/tenants/{tenant_id}/users/{external_id}",
        "/v1/tenants/{tenant_id}/users/{external_id}/rotate-key",
        "/v1/tenants/{tenant_id}/users/{external_id}/reveal-key",
        "/v1/tenants/{tenant_id}/reconcile",
        "/v1/keys/lookup",
        "/v1/audit-events",
        "/healthz",
        "/readyz",
        "/docs",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }

    // /metrics: users per tenant and status, no secret.
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let secret = app.put_user("acme", "m1", &w, json!({})).await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not on the API's listener: its labels name tenants.
    assert!(
        !paths.contains_key("/metrics"),
        "/metrics is not part of the API"
    );
    let on_api = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(on_api.status, StatusCode::NOT_FOUND);
    let m = app
        .http
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), StatusCode::OK);
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text().await.unwrap();
    assert!(
        text.contains("provisioner_users{tenant=\"acme\",status=\"active\"} 1"),
        "{text}"
    );
    // Families the issue asks for, each declared once (the exporter groups them).
    for family in [
        "provisioner_build_info",
        "provisioner_http_requests_total",
        "provisioner_http_request_duration_seconds",
        "provisioner_upstream_requests_total",
        "provisioner_upstream_request_duration_seconds",
        "provisioner_db_pool_connections",
        "provisioner_db_pool_max_connections",
        "provisioner_users",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family} declared once in:\n{text}"
        );
    }
    // The PUT is counted by its route template, never by its path.
    assert!(
        text.contains("route=\"/v1/tenants/{tenant_id}/users/{external_id}\""),
        "{text}"
    );
    assert!(!text.contains("/users/m1"), "a path id reached a label");
    assert!(
        text.contains("operation=\"create_app\",outcome=\"ok\"")
            || text.contains("outcome=\"ok\",operation=\"create_app\""),
        "{text}"
    );
    assert!(!text.contains(&secret) && !text.contains(crate::helpers::SIM_PAT));
    assert!(
        !text.contains(&app.sim.base_url()),
        "an upstream base URL reached a label"
    );
    assert!(
        !text.contains(crate::helpers::SIM_USER),
        "an upstream user id reached a label"
    );

    // /docs: a self-contained reference page; /docs/problems: the problem types.
    let d = app.call(Method::GET, "/docs", None, None).await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(
        d.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        d.text
            .contains("/v1/tenants/{tenant_id}/users/{external_id}")
    );
    assert!(
        !d.text.contains("<script")
            && !d.text.contains("src=\"http")
            && !d.text.contains("href=\"http"),
        "no external assets"
    );
    let p = app.call(Method::GET, "/docs/problems", None, None).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.text.contains("id=\"conflict\"") && p.text.contains("upstream_unavailable"));
}
