//! `/v1/tenants/{tenant}/webhook-endpoints`: endpoints, secrets shown once, messages and
//! attempts written by provisioning (core's in-memory outbox; nothing is sent here), resend and
//! recover, permissions.

use provisioner_core::ids::TenantId;
use provisioner_core::ports::{Clock, WebhookStore};
use provisioner_core::webhooks::{AttemptOutcome, DeliveryAttempt, DeliveryStatus, EventType};
use serde_json::{Value, json};

use crate::helpers::*;

const EPS: &str = "/v1/tenants/acme/webhook-endpoints";

/// Creates an endpoint of acme as admin; returns the answer's body.
async fn create(app: &TestApp, body: Value) -> Value {
    let r = app.call("POST", EPS, Some(&admin()), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// An app with tenants acme and umbrella.
async fn setup() -> TestApp {
    let app = spawn().await;
    app.tenant("acme").await;
    app.tenant("umbrella").await;
    app
}

/// Records a failed attempt of `event` to `endpoint`, as the delivery worker would.
async fn fail_attempt(app: &TestApp, endpoint: &str, event: &str, attempt: i64) {
    let at = app.core.clock.now();
    let outcome = AttemptOutcome {
        attempt: DeliveryAttempt {
            event_id: event.into(),
            endpoint_id: endpoint.into(),
            attempt,
            at,
            status_code: Some(500),
            error: Some("the endpoint answered 500".into()),
            duration_ms: 42,
        },
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        failing_since: Some(at),
        disable: None,
    };
    app.core
        .store
        .record_attempt(&TenantId::parse("acme").unwrap(), &outcome)
        .await
        .expect("recorded");
}

async fn messages(app: &TestApp, endpoint: &str, query: &str) -> Value {
    let r = app
        .call(
            "GET",
            &format!("{EPS}/{endpoint}/messages{query}"),
            Some(&admin()),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[actix_web::test]
async fn an_endpoint_is_created_with_its_secret_shown_once() {
    // Arrange
    let app = setup().await;
    // Act
    let r = app
        .call(
            "POST",
            EPS,
            Some(&admin()),
            Some(json!({
                "url": "https://hooks.example.com/in",
                "description": "listener",
                "event_types": ["user.provisioned", "job.completed", "user.provisioned"]
            })),
        )
        .await;
    // Assert
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let b = r.json();
    let id = b["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ep_"), "{id}");
    assert_eq!(r.header("location"), Some(format!("{EPS}/{id}")));
    let secret = b["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    assert_eq!(b["tenant_id"], "acme");
    assert_eq!(b["url"], "https://hooks.example.com/in");
    assert_eq!(b["description"], "listener");
    assert_eq!(
        b["event_types"],
        json!(["job.completed", "user.provisioned"])
    );
    assert_eq!(b["enabled"], true);
    assert_eq!(b["disabled_reason"], Value::Null);
    assert_eq!(b["failing_since"], Value::Null);
    assert_eq!(b["secret_count"], 1);
    assert!(b["created_at"].is_string() && b["updated_at"].is_string());
    // The secret is never shown again.
    let one = app
        .call("GET", &format!("{EPS}/{id}"), Some(&admin()), None)
        .await;
    assert_eq!(one.status, 200, "{}", one.text());
    let list = app.call("GET", EPS, Some(&admin()), None).await;
    assert_eq!(list.status, 200);
    for r in [&one, &list] {
        assert!(!r.text().contains(&secret), "{}", r.text());
        assert!(!r.text().contains("whsec_"), "{}", r.text());
    }
    let mut expected = b.clone();
    expected.as_object_mut().unwrap().remove("secret");
    assert_eq!(one.json(), expected);
    assert_eq!(list.json(), json!({"items": [expected]}));
    // Without a filter, every event type; without a description, none.
    let all = create(&app, json!({"url": "https://b.example.com/"})).await;
    assert_eq!(all["event_types"], json!([]));
    assert_eq!(all["description"], Value::Null);
    assert_ne!(all["secret"], secret);
    let list = app.call("GET", EPS, Some(&admin()), None).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn bad_endpoints_are_refused_and_a_tenant_has_at_most_twenty() {
    let app = setup().await;
    let a = admin();
    let post = |body| app.call("POST", EPS, Some(&a), Some(body));
    // Not HTTPS, not a URL: 422.
    for url in [
        "http://hooks.example.com/in",
        "ftp://x",
        "https://",
        "https:// x",
    ] {
        post(json!({"url": url}))
            .await
            .problem(422, "validation_failed");
    }
    // An unknown event type: 422 at its index, the known ones listed.
    let b = post(
        json!({"url": "https://a.example", "event_types": ["user.provisioned", "user.exploded"]}),
    )
    .await
    .problem(422, "validation_failed");
    assert_eq!(b["errors"][0]["pointer"], "/event_types/1");
    let detail = b["detail"].as_str().unwrap();
    assert!(detail.contains("user.exploded"), "{detail}");
    for t in EventType::ALL {
        assert!(detail.contains(t.as_str()), "{detail}");
    }
    // Shape errors: 400.
    for body in [
        json!({"url": "https://a.example", "secret": "whsec_mine"}),
        json!({"description": "no url"}),
        json!({"url": "https://a.example", "description": ""}),
        json!({"url": "https://a.example", "event_types": "user.provisioned"}),
        json!({"url": 5}),
    ] {
        post(body.clone()).await.problem(400, "invalid_request");
    }
    // Nothing was created.
    let list = app.call("GET", EPS, Some(&a), None).await.json();
    assert_eq!(list["items"], json!([]));
    // An unknown tenant.
    app.call(
        "POST",
        "/v1/tenants/ghost/webhook-endpoints",
        Some(&a),
        Some(json!({"url": "https://a.example"})),
    )
    .await
    .problem(404, "not_found");
    // At most 20 per tenant.
    for i in 0..20 {
        create(&app, json!({"url": format!("https://h{i}.example")})).await;
    }
    post(json!({"url": "https://one-too-many.example"}))
        .await
        .problem(409, "conflict");
}

#[actix_web::test]
async fn an_endpoint_is_changed_disabled_and_enabled() {
    // Arrange
    let app = setup().await;
    let ep = create(
        &app,
        json!({"url": "https://a.example/in", "description": "first", "event_types": ["job.completed"]}),
    )
    .await;
    let path = format!("{EPS}/{}", ep["id"].as_str().unwrap());
    let a = admin();
    let patch = |body| app.call("PATCH", &path, Some(&a), Some(body));
    // Act: a new URL; the rest is kept.
    let r = patch(json!({"url": "https://b.example/in"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(
        (&b["url"], &b["description"], &b["event_types"]),
        (
            &json!("https://b.example/in"),
            &json!("first"),
            &json!(["job.completed"])
        )
    );
    assert!(b.get("secret").is_none());
    // `null` clears the description; an empty filter means every type.
    let b = patch(json!({"description": null, "event_types": []}))
        .await
        .json();
    assert_eq!(b["description"], Value::Null);
    assert_eq!(b["event_types"], json!([]));
    assert_eq!(b["url"], "https://b.example/in");
    // Disable, then enable.
    let b = patch(json!({"enabled": false})).await.json();
    assert_eq!(b["enabled"], false);
    assert_eq!(b["disabled_reason"], "disabled by an operator");
    let b = patch(json!({"enabled": true, "description": "back"}))
        .await
        .json();
    assert_eq!(
        (&b["enabled"], &b["disabled_reason"], &b["description"]),
        (&json!(true), &Value::Null, &json!("back"))
    );
    assert_eq!(
        app.call("GET", &path, Some(&a), None).await.json(),
        b,
        "the change is stored"
    );
    // Refused changes change nothing.
    patch(json!({"url": "http://plain.example"}))
        .await
        .problem(422, "validation_failed");
    patch(json!({"event_types": ["nope"]}))
        .await
        .problem(422, "validation_failed");
    patch(json!({"enabled": "yes"}))
        .await
        .problem(400, "invalid_request");
    patch(json!({"secret_count": 2}))
        .await
        .problem(400, "invalid_request");
    patch(json!({"description": ""}))
        .await
        .problem(400, "invalid_request");
    assert_eq!(app.call("GET", &path, Some(&a), None).await.json(), b);
    app.call(
        "PATCH",
        &format!("{EPS}/ep_nope"),
        Some(&a),
        Some(json!({"enabled": false})),
    )
    .await
    .problem(404, "not_found");
}

#[actix_web::test]
async fn rotating_the_secret_gives_a_new_one_and_both_sign_for_a_day() {
    // Arrange: the service's clock at the wall clock's time (the answer counts the secrets
    // that sign now).
    let app = setup().await;
    let lag = chrono::Utc::now() - app.core.clock.now();
    app.core.clock.advance(lag);
    let ep = create(&app, json!({"url": "https://a.example/in"})).await;
    let path = format!("{EPS}/{}", ep["id"].as_str().unwrap());
    // Act
    let r = app
        .call(
            "POST",
            &format!("{path}/rotate-secret"),
            Some(&admin()),
            None,
        )
        .await;
    // Assert
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let b = r.json();
    let secret = b["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_ne!(secret, ep["secret"].as_str().unwrap());
    assert_eq!(b["id"], ep["id"]);
    assert_eq!(b["secret_count"], 2, "the previous secret still signs");
    let got = app.call("GET", &path, Some(&admin()), None).await;
    assert_eq!(got.json()["secret_count"], 2);
    assert!(!got.text().contains("whsec_"));
    app.call(
        "POST",
        &format!("{EPS}/ep_nope/rotate-secret"),
        Some(&admin()),
        None,
    )
    .await
    .problem(404, "not_found");
}

#[actix_web::test]
async fn a_deleted_endpoint_is_gone_with_its_messages() {
    let app = setup().await;
    let ep = create(&app, json!({"url": "https://a.example/in"})).await;
    let id = ep["id"].as_str().unwrap();
    let path = format!("{EPS}/{id}");
    app.user("acme", "alice").await;
    // Act
    let r = app.call("DELETE", &path, Some(&admin()), None).await;
    // Assert
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    for (method, suffix, body) in [
        ("GET", "", None),
        ("DELETE", "", None),
        ("PATCH", "", Some(json!({"enabled": true}))),
        ("POST", "/rotate-secret", None),
        ("GET", "/messages", None),
        (
            "POST",
            "/recover",
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
    ] {
        app.call(method, &format!("{path}{suffix}"), Some(&admin()), body)
            .await
            .problem(404, "not_found");
    }
    assert_eq!(
        app.call("GET", EPS, Some(&admin()), None).await.json()["items"],
        json!([])
    );
}

#[actix_web::test]
async fn another_tenants_endpoint_is_not_found_through_ones_own_tenant() {
    // Arrange: an endpoint of umbrella, with a message.
    let app = setup().await;
    let r = app
        .call(
            "POST",
            "/v1/tenants/umbrella/webhook-endpoints",
            Some(&admin()),
            Some(json!({"url": "https://u.example/in"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let theirs = r.json()["id"].as_str().unwrap().to_owned();
    app.user("umbrella", "bob").await;
    let umbrella_eps = format!("/v1/tenants/umbrella/webhook-endpoints/{theirs}");
    let listed = app
        .call(
            "GET",
            &format!("{umbrella_eps}/messages"),
            Some(&admin()),
            None,
        )
        .await
        .json();
    let event = listed["items"][0]["event_id"].as_str().unwrap().to_owned();
    // Act / Assert: through acme's routes, umbrella's endpoint does not exist, even for admin.
    let path = format!("{EPS}/{theirs}");
    for (method, suffix, body) in [
        ("GET", "".to_owned(), None),
        ("PATCH", "".to_owned(), Some(json!({"enabled": false}))),
        ("DELETE", "".to_owned(), None),
        ("POST", "/rotate-secret".to_owned(), None),
        ("GET", "/messages".to_owned(), None),
        ("GET", format!("/messages/{event}/attempts"), None),
        ("POST", format!("/messages/{event}/resend"), None),
        (
            "POST",
            "/recover".to_owned(),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
    ] {
        app.call(method, &format!("{path}{suffix}"), Some(&admin()), body)
            .await
            .problem(404, "not_found");
    }
    // A token of acme with every non-admin permission sees nothing of umbrella's either.
    let acme = token(
        "provisioner:write provisioner:read provisioner:secrets provisioner:audit",
        Some("acme"),
    );
    for path in [
        "/v1/tenants/umbrella/webhook-endpoints".to_owned(),
        umbrella_eps.clone(),
    ] {
        app.call("GET", &path, Some(&acme), None)
            .await
            .problem(404, "not_found");
    }
    // Umbrella's endpoint is untouched.
    let b = app
        .call("GET", &umbrella_eps, Some(&admin()), None)
        .await
        .json();
    assert_eq!(
        (b["enabled"].as_bool(), b["secret_count"].as_i64()),
        (Some(true), Some(1))
    );
}

#[actix_web::test]
async fn messages_and_attempts_are_listed_after_a_provisioning() {
    // Arrange: one endpoint for user events, one for jobs only.
    let app = setup().await;
    let users = create(
        &app,
        json!({"url": "https://a.example/in", "event_types": ["user.provisioned"]}),
    )
    .await;
    let users = users["id"].as_str().unwrap().to_owned();
    let jobs = create(
        &app,
        json!({"url": "https://b.example/in", "event_types": ["job.completed"]}),
    )
    .await;
    let jobs = jobs["id"].as_str().unwrap().to_owned();
    // Act
    app.user("acme", "alice").await;
    // Assert: a pending message for the endpoint that wants it.
    let page = messages(&app, &users, "").await;
    assert_eq!(page["next_cursor"], Value::Null);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let m = &items[0];
    let event = m["event_id"].as_str().unwrap().to_owned();
    assert!(event.starts_with("msg_"), "{event}");
    assert_eq!(m["event_type"], "user.provisioned");
    assert_eq!(m["status"], "pending");
    assert_eq!(m["attempts"], 0);
    assert_eq!(
        (m["last_status"].clone(), m["last_error"].clone()),
        (Value::Null, Value::Null)
    );
    assert!(m["created_at"].is_string() && m["updated_at"].is_string());
    assert!(m.get("next_attempt_at").is_some());
    assert_eq!(messages(&app, &jobs, "").await["items"], json!([]));
    assert_eq!(
        messages(&app, &users, "?status=delivered").await["items"],
        json!([])
    );
    assert_eq!(
        messages(&app, &users, "?status=pending").await["items"][0]["event_id"],
        event.as_str()
    );
    let attempts = format!("{EPS}/{users}/messages/{event}/attempts");
    let r = app.call("GET", &attempts, Some(&admin()), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"items": []}));

    // A failed attempt shows in the message and in its attempts.
    fail_attempt(&app, &users, &event, 1).await;
    let m = &messages(&app, &users, "?status=failed").await["items"][0];
    assert_eq!(
        (
            &m["status"],
            &m["attempts"],
            &m["last_status"],
            &m["last_error"]
        ),
        (
            &json!("failed"),
            &json!(1),
            &json!(500),
            &json!("the endpoint answered 500")
        )
    );
    let a = app
        .call("GET", &attempts, Some(&admin()), None)
        .await
        .json();
    let a = &a["items"];
    assert_eq!(a.as_array().unwrap().len(), 1, "{a}");
    assert_eq!(
        (
            &a[0]["attempt"],
            &a[0]["status_code"],
            &a[0]["error"],
            &a[0]["duration_ms"]
        ),
        (
            &json!(1),
            &json!(500),
            &json!("the endpoint answered 500"),
            &json!(42)
        )
    );
    assert!(a[0]["at"].is_string());
    // An event the endpoint never received: no attempts.
    let other = format!("{EPS}/{jobs}/messages/{event}/attempts");
    assert_eq!(
        app.call("GET", &other, Some(&admin()), None).await.json(),
        json!({"items": []})
    );
}

#[actix_web::test]
async fn messages_are_paged_newest_first_and_bad_queries_are_400() {
    // Arrange
    let app = setup().await;
    let ep = create(&app, json!({"url": "https://a.example/in"})).await;
    let ep = ep["id"].as_str().unwrap().to_owned();
    for u in ["alice", "bob", "carol"] {
        app.user("acme", u).await;
    }
    // Act
    let first = messages(&app, &ep, "?limit=2").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = messages(&app, &ep, &format!("?limit=2&cursor={cursor}")).await;
    // Assert
    let ids = |p: &Value| -> Vec<String> {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut all = ids(&first);
    all.extend(ids(&second));
    assert_eq!(all.len(), 3, "{first} {second}");
    assert_eq!(second["next_cursor"], Value::Null);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(all, sorted, "newest event first");
    for q in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?cursor=%%%",
        "?status=sent",
        "?after=1",
    ] {
        app.call(
            "GET",
            &format!("{EPS}/{ep}/messages{q}"),
            Some(&admin()),
            None,
        )
        .await
        .problem(400, "invalid_request");
    }
}

#[actix_web::test]
async fn resend_and_recover_make_messages_pending_again() {
    // Arrange: two failed messages.
    let app = setup().await;
    let ep = create(&app, json!({"url": "https://a.example/in"})).await;
    let ep = ep["id"].as_str().unwrap().to_owned();
    app.user("acme", "alice").await;
    app.user("acme", "bob").await;
    let events: Vec<String> = messages(&app, &ep, "").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events.len(), 2);
    for e in &events {
        fail_attempt(&app, &ep, e, 1).await;
    }
    let a = admin();
    // Act: resend one.
    let r = app
        .call(
            "POST",
            &format!("{EPS}/{ep}/messages/{}/resend", events[0]),
            Some(&a),
            None,
        )
        .await;
    // Assert
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), json!({"status": "pending"}));
    let pending = messages(&app, &ep, "?status=pending").await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 1);
    assert_eq!(pending["items"][0]["event_id"], events[0].as_str());
    // Act: recover what failed since before the events.
    let r = app
        .call(
            "POST",
            &format!("{EPS}/{ep}/recover"),
            Some(&a),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        )
        .await;
    // Assert
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), json!({"requeued": 1}));
    assert_eq!(
        messages(&app, &ep, "?status=failed").await["items"],
        json!([])
    );
    // Nothing failed since a later instant.
    fail_attempt(&app, &ep, &events[1], 2).await;
    let later = (app.core.clock.now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = app
        .call(
            "POST",
            &format!("{EPS}/{ep}/recover"),
            Some(&a),
            Some(json!({"since": later})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.json()), (202, json!({"requeued": 0})));
    // Refused: an event never sent to it, a bad body.
    app.call(
        "POST",
        &format!("{EPS}/{ep}/messages/msg_nope/resend"),
        Some(&a),
        None,
    )
    .await
    .problem(404, "not_found");
    for body in [
        json!({}),
        json!({"since": "yesterday"}),
        json!({"since": "2020-01-01T00:00:00Z", "until": "2021-01-01T00:00:00Z"}),
    ] {
        app.call("POST", &format!("{EPS}/{ep}/recover"), Some(&a), Some(body))
            .await
            .problem(400, "invalid_request");
    }
    // Resend and recover are audited.
    let audit = app
        .call("GET", "/v1/audit-events?tenant_id=acme", Some(&a), None)
        .await
        .json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "webhook_endpoint.create",
        "webhook_message.resend",
        "webhook_endpoint.recover",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[actix_web::test]
async fn a_disabled_endpoint_is_not_queued_new_events() {
    let app = setup().await;
    let ep = create(&app, json!({"url": "https://a.example/in"})).await;
    let ep = ep["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            "PATCH",
            &format!("{EPS}/{ep}"),
            Some(&admin()),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, 200);
    app.user("acme", "alice").await;
    assert_eq!(messages(&app, &ep, "").await["items"], json!([]));
}

#[actix_web::test]
async fn only_admin_manages_endpoints() {
    // Arrange
    let app = setup().await;
    let ep = create(&app, json!({"url": "https://a.example/in"})).await;
    let path = format!("{EPS}/{}", ep["id"].as_str().unwrap());
    for scope in [
        "provisioner:read",
        "provisioner:write",
        "provisioner:write provisioner:read provisioner:secrets provisioner:audit",
    ] {
        let t = token(scope, Some("acme"));
        for (method, p, body) in [
            (
                "POST",
                EPS.to_owned(),
                Some(json!({"url": "https://b.example"})),
            ),
            ("GET", EPS.to_owned(), None),
            ("GET", path.clone(), None),
            ("PATCH", path.clone(), Some(json!({"enabled": false}))),
            ("POST", format!("{path}/rotate-secret"), None),
            ("GET", format!("{path}/messages"), None),
            ("DELETE", path.clone(), None),
        ] {
            // Act / Assert
            app.call(method, &p, Some(&t), body)
                .await
                .problem(403, "forbidden");
        }
    }
    // Nothing changed.
    let b = app.call("GET", &path, Some(&admin()), None).await.json();
    assert_eq!(
        (b["enabled"].as_bool(), b["secret_count"].as_i64()),
        (Some(true), Some(1))
    );
    assert_eq!(
        app.call("GET", EPS, Some(&admin()), None).await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `POST /v1/tenants/{t}/rotate-keys`: admin only, a job over the active users, bounds.
#[actix_web::test]
async fn rotate_keys_starts_a_job_for_admins_only() {
    let app = setup().await;
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/rotate-keys",
            Some(&admin()),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 409, "no active user yet: {}", r.text());
    for u in ["ann", "bob"] {
        let r = app
            .call(
                "PUT",
                &format!("/v1/tenants/acme/users/{u}"),
                Some(&admin()),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let writer = token("provisioner:write provisioner:read", Some("acme"));
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/rotate-keys",
            Some(&writer),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/rotate-keys",
            Some(&admin()),
            Some(json!({"grace_seconds": 86401})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/rotate-keys",
            Some(&admin()),
            Some(json!({"grace": 1})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/rotate-keys",
            Some(&admin()),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("/v1/jobs/{id}").as_str())
    );
    let job = app
        .call("GET", &format!("/v1/jobs/{id}"), Some(&admin()), None)
        .await;
    assert_eq!(job.json()["total"], json!(2));
}

/// Found by schemathesis: a body whose fields are all optional was read from a JSON array.
#[actix_web::test]
async fn bodies_must_be_json_objects() {
    let app = setup().await;
    for (method, path) in [
        ("POST", "/v1/tenants/acme/rotate-keys"),
        ("POST", "/v1/tenants/acme/scim/tokens"),
        ("PUT", "/v1/tenants/acme/scim"),
    ] {
        let r = app
            .call(method, path, Some(&admin()), Some(json!([])))
            .await;
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
    }
}
