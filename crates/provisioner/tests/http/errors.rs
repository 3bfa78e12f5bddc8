//! Every error code of the table in docs/problems.md, with the case that triggers it; bad input changes nothing.

use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Db, SIM_PAT, TestApp, assert_problem, spawn_app_with};

crate::on_both_backends!(
    malformed_input_is_400_and_changes_nothing,
    jwt_attacks_are_401,
    validation_failures_are_422,
    oversized_bodies_are_413,
    upstream_failures_are_502_and_503,
    unknown_routes_are_problems,
);

async fn malformed_input_is_400_and_changes_nothing(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let before = app.sim.request_count();
    let raw = |body: &'static str| {
        app.http
            .put(format!("{}/v1/tenants/acme/users/u1", app.base))
            .bearer_auth(&w)
            .header("content-type", "application/json")
            .body(body)
    };
    for body in [
        "{not json",
        "[]",
        r#"{"scopes": "Predict"}"#,
        r#"{"unknown_field": 1}"#,
        r#"{"display_name": 42}"#,
    ] {
        let r = raw(body).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["code"], "invalid_request", "{body}: {v}");
    }
    let both = app
        .put_user(
            "acme",
            "u1",
            &w,
            json!({"scopes": ["Predict"], "scope_profile": "standard"}),
        )
        .await;
    assert!(matches!(both.status.as_u16(), 400 | 422), "{}", both.text);
    let control = app.put_user("acme", "bad\u{7}id", &w, json!({})).await;
    assert_problem(&control, 400, "invalid_request");
    let long = app.put_user("acme", &"x".repeat(129), &w, json!({})).await;
    assert_problem(&long, 400, "invalid_request");
    let bad_tenant = app
        .call(
            Method::GET,
            "/v1/tenants/Bad_Tenant",
            Some(&app.admin),
            None,
        )
        .await;
    assert_problem(&bad_tenant, 400, "invalid_request");
    let bad_limit = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users?limit=abc",
            Some(&w),
            None,
        )
        .await;
    assert_problem(&bad_limit, 400, "invalid_request");
    let bad_cursor = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users?cursor=%%%",
            Some(&w),
            None,
        )
        .await;
    assert!(bad_cursor.status.is_client_error(), "{}", bad_cursor.text);
    let bad_status = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users?status=sleeping",
            Some(&w),
            None,
        )
        .await;
    assert_problem(&bad_status, 400, "invalid_request");
    let mut tenant = app.tenant_body("t2");
    tenant["id"] = json!("9starts-with-digit");
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(tenant))
        .await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.text);
    assert_eq!(
        app.sim.request_count(),
        before,
        "no upstream call for bad input"
    );
    assert_eq!(app.upstream_counts(), (0, 0));
    let g = app
        .call(Method::GET, "/v1/tenants/acme/users/u1", Some(&w), None)
        .await;
    assert_problem(&g, 404, "not_found");
}

#[derive(serde::Serialize)]
struct RawClaims {
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

fn b64(v: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

async fn jwt_attacks_are_401(_unused: TestApp) {
    // An app that also checks issuer and audience.
    let db = if _unused.db_url.starts_with("postgres") {
        Db::Postgres
    } else {
        Db::Sqlite
    };
    let app = spawn_app_with(db, |s| {
        s.jwt_issuer = Some("https://idp.example".into());
        s.jwt_audience = Some("provisioner".into());
    })
    .await
    .expect("app");
    use secrecy::ExposeSecret as _;
    let key = EncodingKey::from_secret(app.jwt_secret.expose_secret().as_bytes());
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: Option<i64>, iss: Option<&str>, aud: Option<&str>| RawClaims {
        sub: "attacker".into(),
        exp,
        scope: "provisioner:admin".into(),
        iss: iss.map(str::to_owned),
        aud: aud.map(str::to_owned),
    };
    let sign =
        |c: &RawClaims, k: &EncodingKey| jsonwebtoken::encode(&Header::default(), c, k).unwrap();
    let good = sign(
        &claims(
            Some(now + 600),
            Some("https://idp.example"),
            Some("provisioner"),
        ),
        &key,
    );
    let ok = app
        .call(Method::GET, "/v1/tenants", Some(&good), None)
        .await;
    assert_eq!(
        ok.status.as_u16(),
        200,
        "the control token works: {}",
        ok.text
    );

    let payload = serde_json::to_vec(&json!({"sub": "attacker", "exp": now + 600, "scope": "provisioner:admin", "iss": "https://idp.example", "aud": "provisioner"})).unwrap();
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&payload)
    );
    let mut tampered = good.clone();
    tampered.replace_range(good.len() - 4.., "AAAA");
    let attacks = vec![
        ("alg none", none),
        (
            "expired",
            sign(
                &claims(
                    Some(now - 600),
                    Some("https://idp.example"),
                    Some("provisioner"),
                ),
                &key,
            ),
        ),
        (
            "missing exp",
            sign(
                &claims(None, Some("https://idp.example"), Some("provisioner")),
                &key,
            ),
        ),
        (
            "wrong signature",
            sign(
                &claims(
                    Some(now + 600),
                    Some("https://idp.example"),
                    Some("provisioner"),
                ),
                &EncodingKey::from_secret(b"another secret entirely"),
            ),
        ),
        ("tampered", tampered),
        (
            "wrong issuer",
            sign(
                &claims(
                    Some(now + 600),
                    Some("https://evil.example"),
                    Some("provisioner"),
                ),
                &key,
            ),
        ),
        (
            "wrong audience",
            sign(
                &claims(Some(now + 600), Some("https://idp.example"), Some("other")),
                &key,
            ),
        ),
        (
            "no issuer",
            sign(&claims(Some(now + 600), None, Some("provisioner")), &key),
        ),
        ("garbage", "not.a.jwt".into()),
        ("empty", String::new()),
    ];
    for (name, t) in attacks {
        let r = app.call(Method::GET, "/v1/tenants", Some(&t), None).await;
        assert_eq!(r.status.as_u16(), 401, "{name}: {}", r.text);
        assert_problem(&r, 401, "unauthenticated");
    }
    let missing = app.call(Method::GET, "/v1/tenants", None, None).await;
    assert_problem(&missing, 401, "unauthenticated");
    let basic = app
        .http
        .get(format!("{}/v1/tenants", app.base))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
}

async fn validation_failures_are_422(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let before = app.sim.request_count();
    for body in [
        json!({"scopes": ["Teleport"]}),
        json!({"scopes": ["All"]}),
        json!({"scopes": ["Models:Get"]}),
        json!({"scopes": ["Inputs:Patch"]}),
        json!({"scope_profile": "no-such-profile"}),
        json!({"scopes": []}),
    ] {
        let r = app.put_user("acme", "u1", &w, body.clone()).await;
        assert_problem(&r, 422, "validation_failed");
    }
    assert_eq!(
        app.sim.request_count(),
        before,
        "refused before anything is sent upstream"
    );
    let mut t = app.tenant_body("t2");
    t["upstream"]["pat"] = json!("definitely-wrong");
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(t))
        .await;
    assert_problem(&r, 422, "validation_failed");
}

async fn oversized_bodies_are_413(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let big = json!({"display_name": "x", "metadata": {"blob": "y".repeat(2 * 1024 * 1024)}});
    let r = app.put_user("acme", "u1", &w, big).await;
    assert_problem(&r, 413, "payload_too_large");
    assert_eq!(app.upstream_counts(), (0, 0));
}

async fn upstream_failures_are_502_and_503(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    // 503: the upstream keeps failing; the intent is kept, nothing half-done is acknowledged.
    app.sim.set_faults(clarifai_sim::Faults {
        p_500: 1.0,
        ..clarifai_sim::Faults::none()
    });
    let r = app.put_user("acme", "u1", &w, json!({})).await;
    assert_problem(&r, 503, "upstream_unavailable");
    assert!(!r.text.contains("98004") || r.body["detail"].is_string());
    // Healthy again: the retry resumes and finishes it.
    app.sim.set_faults(clarifai_sim::Faults::none());
    let r = app.put_user("acme", "u1", &w, json!({})).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    assert_eq!(app.upstream_counts(), (1, 1));
    // 502: the tenant's PAT was revoked upstream.
    assert!(app.sim.revoke_pat(SIM_PAT));
    let r = app.put_user("acme", "u2", &w, json!({})).await;
    assert_problem(&r, 502, "upstream_rejected");
    assert!(
        r.body["detail"].as_str().unwrap().contains("11009"),
        "the upstream's status.code is in detail: {}",
        r.text
    );
    assert!(!r.text.contains(SIM_PAT));
    assert_eq!(app.upstream_counts(), (1, 1));
}

async fn unknown_routes_are_problems(app: TestApp) {
    let r = app
        .call(Method::GET, "/v1/nothing-here", Some(&app.admin), None)
        .await;
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(r.body["code"], "not_found", "{}", r.text);
    assert!(r.headers.get("x-request-id").is_some());
}
