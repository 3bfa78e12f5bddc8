//! SCIM 2.0 as Okta and Entra ID speak it (reference: shared scim.md §3, §4, §6): Okta's SPEC
//! test steps in order, Okta's and Entra's request shapes (both PATCH dialects), the full
//! assign → deactivate → reactivate → delete cycle under both deactivation policies with the
//! simulator's state checked after each step, and the SCIM tokens' boundaries.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Resp, SIM_USER, TestApp, assert_problem, captured_logs, enc};

crate::on_both_backends!(
    okta_spec_test_steps,
    okta_request_shapes,
    entra_default_dialect,
    entra_flagged_dialect,
    cycle_under_revoke_key,
    cycle_under_deprovision,
    scim_tokens_are_bound_to_scim_and_one_tenant,
    checks_come_in_order_and_errors_log_no_personal_data,
);

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The tenant's standard profile (the default), sorted.
const STANDARD_SCOPES: [&str; 2] = ["Inputs:Get", "Predict"];

// --- helpers --------------------------------------------------------------------------------

/// Issues a SCIM token for `tenant` through the admin API (201, the secret shown once).
async fn issue_token(app: &TestApp, tenant: &str, body: Value) -> (String, String) {
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{tenant}/scim/tokens"),
            Some(&app.admin),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for k in ["id", "token", "created_at"] {
        assert!(r.body[k].is_string(), "token field {k}: {}", r.text);
    }
    assert!(r.body.get("expires_at").is_some(), "{}", r.text);
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["token"].as_str().unwrap().to_owned(),
    )
}

/// A tenant `acme` with a SCIM token.
async fn acme_with_token(app: &TestApp) -> String {
    app.create_tenant("acme").await;
    issue_token(app, "acme", json!({})).await.1
}

/// A SCIM request under `/scim/v2/{tenant}` with `Authorization: Bearer token` and a body of
/// `content_type` (`application/scim+json` unless given).
async fn scim_as(
    app: &TestApp,
    method: Method,
    tenant: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<(&str, &Value)>,
) -> Resp {
    let mut req = app
        .http
        .request(method, format!("{}/scim/v2/{tenant}{path}", app.base));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some((content_type, b)) = body {
        req = req
            .header("content-type", content_type)
            .body(serde_json::to_vec(b).unwrap());
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// A SCIM request on `acme` with the token, a body as `application/scim+json`.
async fn scim(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {token}");
    match body {
        Some(b) => {
            scim_as(
                app,
                method,
                "acme",
                path,
                Some(&auth),
                Some(("application/scim+json", &b)),
            )
            .await
        }
        None => scim_as(app, method, "acme", path, Some(&auth), None).await,
    }
}

/// `?filter=` with the expression percent-encoded.
fn filter(expr: &str) -> String {
    format!("/Users?filter={}", enc(expr))
}

/// A PatchOp message.
fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": ops})
}

fn content_type(r: &Resp) -> &str {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A success of `status` with a SCIM JSON body.
fn assert_scim_ok(r: &Resp, status: u16) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert!(
        content_type(r).starts_with("application/scim+json"),
        "content-type {}: {}",
        content_type(r),
        r.text
    );
}

/// A User resource: core schema, `id`, `meta`, and no `password` ever.
fn assert_user(r: &Resp, status: u16) {
    assert_scim_ok(r, status);
    let b = &r.body;
    assert!(
        b["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(USER_URN))),
        "{}",
        r.text
    );
    assert!(b["id"].is_string(), "{}", r.text);
    assert!(b["active"].is_boolean(), "{}", r.text);
    assert_eq!(b["meta"]["resourceType"], "User", "{}", r.text);
    for k in ["created", "lastModified", "location"] {
        assert!(b["meta"][k].is_string(), "meta.{k}: {}", r.text);
    }
    assert!(b.get("password").is_none(), "{}", r.text);
}

/// A SCIM error: `status` as a string, `detail`, the Error schema, SCIM content type.
fn assert_scim_error(r: &Resp, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert!(
        content_type(r).starts_with("application/scim+json"),
        "content-type {}: {}",
        content_type(r),
        r.text
    );
    assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{}", r.text);
    assert_eq!(r.body["status"], json!(status.to_string()), "{}", r.text);
    assert!(r.body["detail"].is_string(), "{}", r.text);
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{}", r.text);
    }
}

/// A ListResponse with integer counters; returns `Resources`.
fn assert_list(r: &Resp, total: u64) -> Vec<Value> {
    assert_scim_ok(r, 200);
    let b = &r.body;
    assert_eq!(b["schemas"], json!([LIST_URN]), "{}", r.text);
    for k in ["totalResults", "itemsPerPage", "startIndex"] {
        assert!(b[k].is_u64(), "{k} must be an integer: {}", r.text);
    }
    assert_eq!(b["totalResults"], total, "{}", r.text);
    let resources = b["Resources"].as_array().expect("Resources").clone();
    assert_eq!(b["itemsPerPage"], resources.len(), "{}", r.text);
    resources
}

/// Polls the /v1 user until it has `status` (20 s at most); returns it.
async fn wait_status(app: &TestApp, external_id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .call(
                Method::GET,
                &format!("/v1/tenants/acme/users/{}", enc(external_id)),
                Some(&app.admin),
                None,
            )
            .await;
        if r.status == StatusCode::OK && r.body["status"] == status {
            return r.body;
        }
        if Instant::now() >= deadline {
            // What the service did with this user (test cases on the two backends share names).
            let logs = captured_logs();
            let lines: Vec<&str> = logs
                .lines()
                .filter(|l| {
                    l.contains(external_id) || (l.contains("SCIM") && !l.contains("sqlx::query"))
                })
                .collect();
            panic!(
                "user {external_id} did not reach status {status} in 20 s; last: {} {}\n{}",
                r.status,
                r.text,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The simulator's keys of the tenant's account, sorted scopes each.
fn upstream_keys(app: &TestApp) -> Vec<(String, Vec<String>, Vec<String>)> {
    app.sim
        .keys(SIM_USER)
        .into_iter()
        .map(|k| {
            let mut scopes = k.scopes.clone();
            scopes.sort();
            (k.id, k.app_ids, scopes)
        })
        .collect()
}

fn upstream_app_ids(app: &TestApp) -> Vec<String> {
    app.sim.apps(SIM_USER).into_iter().map(|a| a.id).collect()
}

/// An Okta-shaped create body (Okta reference "Create Users").
fn okta_user(user_name: &str, given: &str, family: &str) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{given} {family}"),
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "active": true
    })
}

// --- a. Okta's SCIM 2.0 SPEC test, steps 1-12 -------------------------------------------------

async fn okta_spec_test_steps(app: TestApp) {
    let t = acme_with_token(&app).await;
    // "Create at least one user first."
    let seed = scim(
        &app,
        &t,
        Method::POST,
        "/Users",
        Some(okta_user("seed.user@example.com", "Seed", "User")),
    )
    .await;
    assert_user(&seed, 201);

    // 1. The first page of one user: ListResponse, integer counters, the fields Okta reads.
    let r = scim(&app, &t, Method::GET, "/Users?count=1&startIndex=1", None).await;
    let page = assert_list(&r, 1);
    assert_eq!(r.body["startIndex"], 1);
    assert_eq!(page.len(), 1);
    let first = &page[0];
    let id = first["id"].as_str().expect("id").to_owned();
    for v in [
        &first["name"]["familyName"],
        &first["name"]["givenName"],
        &first["userName"],
        &first["emails"][0]["value"],
    ] {
        assert!(v.is_string(), "{}", r.text);
    }
    assert!(first["active"].is_boolean(), "{}", r.text);

    // 2. That user by id: the same fields, the same id.
    let r = scim(&app, &t, Method::GET, &format!("/Users/{id}"), None).await;
    assert_user(&r, 200);
    assert_eq!(r.body["id"], id.as_str());
    for k in ["userName", "name", "emails", "active"] {
        assert_eq!(r.body[k], first[k], "{k}: {}", r.text);
    }

    // 3. A filter on an invalid address: 200, none.
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter("userName eq \"invalid-email\""),
        None,
    )
    .await;
    assert!(assert_list(&r, 0).is_empty());

    // 4. An id that does not exist: 404, SCIM error.
    let r = scim(
        &app,
        &t,
        Method::GET,
        &format!("/Users/{}", uuid::Uuid::new_v4()),
        None,
    )
    .await;
    assert_scim_error(&r, 404, None);

    // 5. A random address: 200, none.
    let random = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter(&format!("userName eq \"{random}\"")),
        None,
    )
    .await;
    assert!(assert_list(&r, 0).is_empty());

    // 6. Create that user, as Okta's test does: Content-Type application/json.
    let body = json!({
        "schemas": [USER_URN],
        "userName": random,
        "name": {"givenName": "Runscope", "familyName": "Tester"},
        "emails": [{"primary": true, "value": random, "type": "work"}],
        "active": true,
        "password": "Okta-Spec-Test-Password-1!"
    });
    let created = scim_as(
        &app,
        Method::POST,
        "acme",
        "/Users",
        Some(&format!("Bearer {t}")),
        Some(("application/json", &body)),
    )
    .await;
    assert_user(&created, 201);
    let new_id = created.body["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(created.body["active"], true);
    assert_eq!(created.body["userName"], random.as_str());
    assert_eq!(created.body["name"]["givenName"], "Runscope");
    assert_eq!(created.body["name"]["familyName"], "Tester");
    let location = created
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location on 201");
    assert!(
        location.ends_with(&format!("/scim/v2/acme/Users/{new_id}")),
        "{location}"
    );
    assert!(!created.text.contains("Okta-Spec-Test-Password-1!"));

    // 7. Read back: the same values.
    let r = scim(&app, &t, Method::GET, &format!("/Users/{new_id}"), None).await;
    assert_user(&r, 200);
    for k in ["id", "userName", "name", "emails", "active"] {
        assert_eq!(r.body[k], created.body[k], "{k}: {}", r.text);
    }

    // 8. The same user again: 409 uniqueness.
    let again = scim_as(
        &app,
        Method::POST,
        "acme",
        "/Users",
        Some(&format!("Bearer {t}")),
        Some(("application/json", &body)),
    )
    .await;
    assert_scim_error(&again, 409, Some("uniqueness"));

    // 9. userName is caseExact false: the upper-cased name finds the user.
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter(&format!("userName eq \"{}\"", random.to_uppercase())),
        None,
    )
    .await;
    let found = assert_list(&r, 1);
    assert_eq!(found[0]["id"], new_id.as_str());

    // Okta's connection test and its import paging (`startIndex` + `count` until
    // `totalResults`): stable pages that together hold every user once.
    let r = scim(&app, &t, Method::GET, "/Users?startIndex=1&count=2", None).await;
    assert_eq!(assert_list(&r, 2).len(), 2);
    let mut paged = Vec::new();
    for start in 1..=3 {
        let r = scim(
            &app,
            &t,
            Method::GET,
            &format!("/Users?startIndex={start}&count=1"),
            None,
        )
        .await;
        let page = assert_list(&r, 2);
        assert_eq!(r.body["startIndex"], start, "{}", r.text);
        paged.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
    }
    paged.sort();
    let mut both = vec![id.clone(), new_id.clone()];
    both.sort();
    assert_eq!(paged, both);

    // 10. Optional: /Groups answers 200 (an empty ListResponse).
    let r = scim(&app, &t, Method::GET, "/Groups", None).await;
    assert_scim_ok(&r, 200);
    assert_eq!(r.body["schemas"], json!([LIST_URN]), "{}", r.text);
    assert!(r.body["totalResults"].is_u64(), "{}", r.text);

    // 11. `Authorization: non-token`: 401 with the SCIM error body.
    let r = scim_as(&app, Method::GET, "acme", "/Users", Some("non-token"), None).await;
    assert_scim_error(&r, 401, None);

    // 12. A made-up numeric id: 404 with the SCIM error body.
    let r = scim(&app, &t, Method::GET, "/Users/00919288221112222", None).await;
    assert_scim_error(&r, 404, None);
}

// --- b. Okta's request shapes -----------------------------------------------------------------

async fn okta_request_shapes(app: TestApp) {
    let t = acme_with_token(&app).await;
    let password = format!("Okta-Pw-{}", uuid::Uuid::new_v4().simple());
    let user_name = "okta.user@example.com";
    let mut texts = Vec::new();

    // Create: password, groups: [], locale, application/json.
    let mut body = okta_user(user_name, "Okta", "User");
    body["password"] = json!(password);
    let created = scim_as(
        &app,
        Method::POST,
        "acme",
        "/Users",
        Some(&format!("Bearer {t}")),
        Some(("application/json", &body)),
    )
    .await;
    assert_user(&created, 201);
    texts.push(created.text.clone());
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["externalId"], "00ujl29u0le5T6Aj10h7");
    assert_eq!(created.body["displayName"], "Okta User");
    assert!(created.body.get("locale").is_none() && created.body.get("groups").is_none());
    let v1 = wait_status(&app, user_name, "active").await;
    assert_eq!(v1["key"]["scopes"], json!(STANDARD_SCOPES));
    let key_before = v1["key"]["fingerprint"].clone();
    let path = format!("/Users/{id}");

    // Profile update by PUT (after a GET), the password sent again.
    let got = scim(&app, &t, Method::GET, &path, None).await;
    let mut full = got.body.clone();
    full["name"]["familyName"] = json!("Renamed");
    full["password"] = json!(password);
    let put = scim_as(
        &app,
        Method::PUT,
        "acme",
        &path,
        Some(&format!("Bearer {t}")),
        Some(("application/json", &full)),
    )
    .await;
    assert_user(&put, 200);
    texts.push(put.text.clone());
    assert_eq!(put.body["name"]["familyName"], "Renamed");
    assert_eq!(put.body["active"], true);
    let r = scim(&app, &t, Method::GET, &path, None).await;
    assert_eq!(r.body["name"]["familyName"], "Renamed");
    texts.push(r.text.clone());
    // The key is untouched by a profile change.
    let v1 = wait_status(&app, user_name, "active").await;
    assert_eq!(v1["key"]["fingerprint"], key_before);

    // A PUT without `active` leaves it as it is (scim.md §9).
    let mut no_active = full.clone();
    no_active.as_object_mut().unwrap().remove("active");
    no_active["displayName"] = json!("Still Active");
    let r = scim(&app, &t, Method::PUT, &path, Some(no_active)).await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], true, "{}", r.text);

    // Deactivation by PUT (Okta AIW apps): `active: false` in the full body.
    let mut off = full.clone();
    off["active"] = json!(false);
    let r = scim(&app, &t, Method::PUT, &path, Some(off)).await;
    assert_user(&r, 200);
    texts.push(r.text.clone());
    assert_eq!(r.body["active"], false);
    let v1 = wait_status(&app, user_name, "suspended").await;
    assert!(v1["key"].is_null(), "{v1}");
    assert_eq!(upstream_keys(&app).len(), 0);
    // Okta reads it back: still there, inactive.
    let r = scim(&app, &t, Method::GET, &path, None).await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], false);

    // Reactivation by PUT.
    let mut on = full.clone();
    on["active"] = json!(true);
    let r = scim(&app, &t, Method::PUT, &path, Some(on)).await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], true);
    let v1 = wait_status(&app, user_name, "active").await;
    assert_ne!(v1["key"]["fingerprint"], key_before, "a new key");

    // PATCH, no path (OIN apps): deactivate, then reactivate.
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "replace", "value": {"active": false}}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], false);
    wait_status(&app, user_name, "suspended").await;
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(json!([{"op": "replace", "value": {"active": true}}]))),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], true);
    wait_status(&app, user_name, "active").await;

    // Password sync: a no-path replace with `password` — accepted and ignored.
    let before = scim(&app, &t, Method::GET, &path, None).await;
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "replace", "value": {"password": password}}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    texts.push(r.text.clone());
    for k in ["userName", "name", "emails", "active", "displayName"] {
        assert_eq!(r.body[k], before.body[k], "{k}: {}", r.text);
    }

    // The password is in no answer, no audit event and no log line.
    for text in &texts {
        assert!(!text.contains(&password), "a password in an answer: {text}");
    }
    let audit = app.token("provisioner:audit", Some("acme"));
    let ev = app
        .call(
            Method::GET,
            "/v1/audit-events?tenant_id=acme&limit=100",
            Some(&audit),
            None,
        )
        .await;
    assert_eq!(ev.status, StatusCode::OK, "{}", ev.text);
    let actions: Vec<&str> = ev.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"scim.user.create"), "{actions:?}");
    let create = ev.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "scim.user.create")
        .unwrap();
    assert_eq!(create["actor"], "scim:acme", "{create}");
    assert!(!ev.text.contains(&password), "a password in the audit log");
    assert!(
        !captured_logs().contains(&password),
        "a password in the logs"
    );
}

// --- c. Entra ID, default dialect ---------------------------------------------------------------

async fn entra_default_dialect(app: TestApp) {
    let t = acme_with_token(&app).await;

    // Test Connection: a user that does not exist is 200 with an empty ListResponse.
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter(&format!("userName eq \"{}\"", uuid::Uuid::new_v4())),
        None,
    )
    .await;
    assert_list(&r, 0);
    assert_eq!(r.body["Resources"], json!([]), "{}", r.text);
    // ... and a group (groups are not stored: an empty list too).
    let r = scim(
        &app,
        &t,
        Method::GET,
        &format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc(&format!("displayName eq \"{}\"", uuid::Uuid::new_v4()))
        ),
        None,
    )
    .await;
    assert_list(&r, 0);

    // Create as Entra sends it (core + enterprise schemas, meta, roles).
    let user_name = "Ann.Lee@contoso.example";
    let created = scim(
        &app,
        &t,
        Method::POST,
        "/Users",
        Some(json!({
            "schemas": [USER_URN, ENTERPRISE_URN],
            "externalId": "annlee",
            "userName": user_name,
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": "ann.lee@contoso.example"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Ann Lee", "familyName": "Lee", "givenName": "Ann"},
            "roles": []
        })),
    )
    .await;
    assert_user(&created, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");

    // Matching by externalId and by the work e-mail.
    for expr in [
        "externalId eq \"annlee\"".to_owned(),
        "emails[type eq \"work\"].value eq \"ann.lee@contoso.example\"".to_owned(),
    ] {
        let r = scim(&app, &t, Method::GET, &filter(&expr), None).await;
        let found = assert_list(&r, 1);
        assert_eq!(found[0]["id"], id.as_str(), "{expr}");
    }
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter("emails[type eq \"home\"].value eq \"ann.lee@contoso.example\""),
        None,
    )
    .await;
    assert_list(&r, 0);
    wait_status(&app, user_name, "active").await;

    // "Add" of a single attribute.
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "Add", "path": "displayName", "value": "Ann L."}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["displayName"], "Ann L.");

    // Several path operations in one request.
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(json!([
            {"op": "Replace", "path": "name.givenName", "value": "Annie"},
            {"op": "Replace", "path": "name.familyName", "value": "Lee-Smith"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "annie@contoso.example"},
            {"op": "Replace", "path": "externalId", "value": "annie"}
        ]))),
    )
    .await;
    assert_user(&r, 200);
    let got = scim(&app, &t, Method::GET, &path, None).await;
    assert_user(&got, 200);
    assert_eq!(got.body["name"]["givenName"], "Annie");
    assert_eq!(got.body["name"]["familyName"], "Lee-Smith");
    assert_eq!(got.body["emails"][0]["value"], "annie@contoso.example");
    assert_eq!(got.body["emails"][0]["type"], "work");
    assert_eq!(got.body["externalId"], "annie");
    assert_eq!(got.body["displayName"], "Ann L.");
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter("externalId eq \"annie\""),
        None,
    )
    .await;
    assert_list(&r, 1);

    // Disable: "Replace" with the string "False".
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], false, "a boolean, not the string");
    wait_status(&app, user_name, "suspended").await;
    // Entra's "Disable User" test re-reads through the filter: `active` is there.
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter(&format!("userName eq \"{user_name}\"")),
        None,
    )
    .await;
    assert_eq!(assert_list(&r, 1)[0]["active"], false);

    // Anything but a boolean or its string is refused, and nothing changes.
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "Replace", "path": "active", "value": "maybe"}]),
        )),
    )
    .await;
    assert_scim_error(&r, 400, Some("invalidValue"));

    // Enable: "True".
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], true);
    wait_status(&app, user_name, "active").await;
}

// --- d. Entra ID with aadOptscim062020 ----------------------------------------------------------

async fn entra_flagged_dialect(app: TestApp) {
    let t = acme_with_token(&app).await;
    let user_name = "bo.chen@contoso.example";
    let created = scim(
        &app,
        &t,
        Method::POST,
        "/Users?aadOptscim062020",
        Some(json!({
            "schemas": [USER_URN, ENTERPRISE_URN],
            "externalId": "bochen",
            "userName": user_name,
            "active": true,
            "name": {"familyName": "Chen", "givenName": "Bo"},
            ENTERPRISE_URN: {"employeeNumber": "701"}
        })),
    )
    .await;
    assert_user(&created, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}?aadOptscim062020");
    wait_status(&app, user_name, "active").await;

    // One no-path replace with dotted and URN keys (the enterprise one is not stored).
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(json!([{
            "op": "replace",
            "value": {
                "name.givenName": "Bob",
                "name.familyName": "Chen-Wu",
                "displayName": "Bob Chen-Wu",
                "urn:ietf:params:scim:schemas:core:2.0:User:externalId": "bobchen",
                format!("{ENTERPRISE_URN}:employeeNumber"): "702"
            }
        }]))),
    )
    .await;
    assert_user(&r, 200);
    let got = scim(&app, &t, Method::GET, &path, None).await;
    assert_user(&got, 200);
    assert_eq!(got.body["name"]["givenName"], "Bob", "{}", got.text);
    assert_eq!(got.body["name"]["familyName"], "Chen-Wu");
    assert_eq!(got.body["displayName"], "Bob Chen-Wu");
    assert_eq!(got.body["externalId"], "bobchen");
    assert_eq!(got.body["userName"], user_name);
    assert!(!got.text.contains("702"), "{}", got.text);

    // Lowercase ops, boolean active.
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "replace", "path": "active", "value": false}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], false);
    wait_status(&app, user_name, "suspended").await;
    let r = scim(
        &app,
        &t,
        Method::PATCH,
        &path,
        Some(patch(
            json!([{"op": "replace", "path": "active", "value": true}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], true);
    wait_status(&app, user_name, "active").await;
}

// --- e. The full cycle, driven over SCIM, under both policies ------------------------------------

async fn set_policy(app: &TestApp, policy: &str) {
    let r = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/scim",
            Some(&app.admin),
            Some(json!({"external_id_from": "user_name", "on_deactivate": policy})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(Method::GET, "/v1/tenants/acme/scim", Some(&app.admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["on_deactivate"], policy, "{}", r.text);
    assert_eq!(r.body["external_id_from"], "user_name", "{}", r.text);
}

/// Assign: one app and one key with the tenant's default scopes, restricted to that app.
/// Returns (SCIM id, app id, upstream key id, key fingerprint).
async fn assign(app: &TestApp, t: &str, user_name: &str) -> (String, String, String, String) {
    let r = scim(
        app,
        t,
        Method::POST,
        "/Users",
        Some(okta_user(user_name, "Cy", "Cle")),
    )
    .await;
    assert_user(&r, 201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let v1 = wait_status(app, user_name, "active").await;
    let (app_id, key_id) = one_app_one_key(app);
    assert_eq!(v1["app"]["id"], app_id.as_str());
    assert_eq!(v1["key"]["scopes"], json!(STANDARD_SCOPES));
    (
        id,
        app_id,
        key_id,
        v1["key"]["fingerprint"].as_str().unwrap().to_owned(),
    )
}

/// Exactly one app and one key upstream, the key on that app with the standard scopes.
fn one_app_one_key(app: &TestApp) -> (String, String) {
    let apps = upstream_app_ids(app);
    let keys = upstream_keys(app);
    assert_eq!((apps.len(), keys.len()), (1, 1), "{apps:?} {keys:?}");
    let (key_id, key_apps, scopes) = keys.into_iter().next().unwrap();
    assert_eq!(key_apps, apps);
    assert_eq!(scopes, STANDARD_SCOPES);
    (apps.into_iter().next().unwrap(), key_id)
}

async fn set_active(app: &TestApp, t: &str, id: &str, active: bool) {
    let r = scim(
        app,
        t,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(
            json!([{"op": "replace", "path": "active", "value": active}]),
        )),
    )
    .await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], active);
}

async fn delete_and_check(app: &TestApp, t: &str, id: &str, user_name: &str) {
    let r = scim(app, t, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty(), "{}", r.text);
    let v1 = wait_status(app, user_name, "deleted").await;
    assert!(v1["key"].is_null(), "{v1}");
    assert_eq!(upstream_app_ids(app).len(), 0);
    assert_eq!(upstream_keys(app).len(), 0);
    let r = scim(app, t, Method::GET, &format!("/Users/{id}"), None).await;
    assert_scim_error(&r, 404, None);
    let r = scim(
        app,
        t,
        Method::GET,
        &filter(&format!("userName eq \"{user_name}\"")),
        None,
    )
    .await;
    assert_list(&r, 0);
    // A second DELETE: the resource is gone.
    let r = scim(app, t, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_scim_error(&r, 404, None);
}

async fn cycle_under_revoke_key(app: TestApp) {
    let t = acme_with_token(&app).await;
    set_policy(&app, "revoke_key").await;
    let user_name = "cycle.revoke@example.com";
    let (id, app_id, key_id, fingerprint) = assign(&app, &t, user_name).await;

    // Deactivate: the key is deleted upstream, the app is kept.
    set_active(&app, &t, &id, false).await;
    let v1 = wait_status(&app, user_name, "suspended").await;
    assert!(v1["key"].is_null(), "{v1}");
    assert_eq!(upstream_app_ids(&app), vec![app_id.clone()]);
    assert_eq!(upstream_keys(&app).len(), 0);
    // The identity provider decides when the user is active: a /v1 PUT does not revive it.
    let w = app.token("provisioner:write", Some("acme"));
    let r = app.put_user("acme", user_name, &w, json!({})).await;
    assert_problem(&r, 409, "conflict");
    assert_eq!(upstream_keys(&app).len(), 0);

    // Reactivate: a new key, same scopes, on the same app.
    set_active(&app, &t, &id, true).await;
    let v1 = wait_status(&app, user_name, "active").await;
    let (app_again, new_key) = one_app_one_key(&app);
    assert_eq!(app_again, app_id, "the same app");
    assert_ne!(new_key, key_id, "a new key upstream");
    assert_ne!(v1["key"]["fingerprint"], fingerprint.as_str());
    assert_eq!(v1["key"]["scopes"], json!(STANDARD_SCOPES));

    // Delete: deprovisioned.
    delete_and_check(&app, &t, &id, user_name).await;
}

async fn cycle_under_deprovision(app: TestApp) {
    let t = acme_with_token(&app).await;
    set_policy(&app, "deprovision").await;
    let user_name = "cycle.deprovision@example.com";
    let (id, _app_id, key_id, fingerprint) = assign(&app, &t, user_name).await;

    // Deactivate: key and app deleted.
    set_active(&app, &t, &id, false).await;
    let v1 = wait_status(&app, user_name, "deleted").await;
    assert!(v1["key"].is_null(), "{v1}");
    assert_eq!(upstream_app_ids(&app).len(), 0);
    assert_eq!(upstream_keys(&app).len(), 0);
    // SCIM still shows the user, inactive.
    let r = scim(&app, &t, Method::GET, &format!("/Users/{id}"), None).await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], false);

    // Reactivate: a new app and a new key.
    set_active(&app, &t, &id, true).await;
    let v1 = wait_status(&app, user_name, "active").await;
    let (_, new_key) = one_app_one_key(&app);
    assert_ne!(new_key, key_id);
    assert_ne!(v1["key"]["fingerprint"], fingerprint.as_str());

    // Delete: deprovisioned again.
    delete_and_check(&app, &t, &id, user_name).await;
}

// --- f. Tokens ----------------------------------------------------------------------------------

async fn scim_tokens_are_bound_to_scim_and_one_tenant(app: TestApp) {
    let (first_id, first) = {
        app.create_tenant("acme").await;
        issue_token(&app, "acme", json!({})).await
    };
    app.create_tenant("globex").await;
    let (_, globex) = issue_token(&app, "globex", json!({})).await;
    assert!(first.starts_with("scim_"), "a recognisable prefix");

    // A SCIM token is no /v1 credential.
    let r = app
        .call(Method::GET, "/v1/tenants/acme/users", Some(&first), None)
        .await;
    assert_problem(&r, 401, "unauthenticated");
    // A /v1 JWT (even the admin's) is no SCIM credential: 401 with the SCIM body.
    let r = scim(&app, &app.admin, Method::GET, "/Users", None).await;
    assert_scim_error(&r, 401, None);
    let write = app.token("provisioner:write provisioner:read", Some("acme"));
    let r = scim(&app, &write, Method::GET, "/Users", None).await;
    assert_scim_error(&r, 401, None);
    // No Authorization at all: 401, SCIM body.
    let r = scim_as(&app, Method::GET, "acme", "/Users", None, None).await;
    assert_scim_error(&r, 401, None);

    // Another tenant's token on acme's path: 404, SCIM body, for reads and writes alike.
    let created = scim(
        &app,
        &first,
        Method::POST,
        "/Users",
        Some(okta_user("victim@example.com", "Vic", "Tim")),
    )
    .await;
    assert_user(&created, 201);
    let victim = created.body["id"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        (Method::GET, "/Users".to_owned(), None),
        (Method::GET, format!("/Users/{victim}"), None),
        (
            Method::POST,
            "/Users".to_owned(),
            Some(okta_user("intruder@example.com", "In", "Truder")),
        ),
        (
            Method::PATCH,
            format!("/Users/{victim}"),
            Some(patch(
                json!([{"op": "replace", "path": "active", "value": false}]),
            )),
        ),
        (Method::DELETE, format!("/Users/{victim}"), None),
    ] {
        let r = scim(&app, &globex, method.clone(), &path, body).await;
        assert_scim_error(&r, 404, None);
        assert!(!r.text.contains("victim"), "{method} {path}: {}", r.text);
    }
    // globex's own path works with its token, and does not see acme's user.
    let auth = format!("Bearer {globex}");
    let r = scim_as(&app, Method::GET, "globex", "/Users", Some(&auth), None).await;
    assert_list(&r, 0);
    let r = scim_as(
        &app,
        Method::GET,
        "globex",
        &format!("/Users/{victim}"),
        Some(&auth),
        None,
    )
    .await;
    assert_scim_error(&r, 404, None);
    // acme's user is untouched.
    let r = scim(&app, &first, Method::GET, &format!("/Users/{victim}"), None).await;
    assert_user(&r, 200);
    assert_eq!(r.body["active"], true);

    // Rotation: a new token with an overlap; both work meanwhile.
    let (second_id, second) = issue_token(&app, "acme", json!({"overlap_seconds": 3600})).await;
    assert_ne!(second, first);
    for tok in [&first, &second] {
        let r = scim(&app, tok, Method::GET, "/Users", None).await;
        assert_list(&r, 1);
    }
    // The list shows both, without secrets.
    let r = app
        .call(
            Method::GET,
            "/v1/tenants/acme/scim/tokens",
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text.contains(&first_id) && r.text.contains(&second_id),
        "{}",
        r.text
    );
    assert!(
        !r.text.contains(&first) && !r.text.contains(&second),
        "a secret in the list"
    );

    // Revoking the old one stops it at once; the new one goes on.
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/scim/tokens/{first_id}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{} {}", r.status, r.text);
    let r = scim(&app, &first, Method::GET, "/Users", None).await;
    assert_scim_error(&r, 401, None);
    let r = scim(&app, &second, Method::GET, "/Users", None).await;
    assert_list(&r, 1);
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/scim/tokens/{first_id}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_problem(&r, 404, "not_found");

    // A rotation without overlap ends the earlier token at once.
    let (_, third) = issue_token(&app, "acme", json!({"overlap_seconds": 0})).await;
    let r = scim(&app, &second, Method::GET, "/Users", None).await;
    assert_scim_error(&r, 401, None);
    let r = scim(&app, &third, Method::GET, "/Users", None).await;
    assert_list(&r, 1);
    // globex's token was never affected.
    let r = scim_as(&app, Method::GET, "globex", "/Users", Some(&auth), None).await;
    assert_list(&r, 0);

    // No token secret reaches the logs, used, refused or revoked.
    let logs = captured_logs();
    for secret in [&first, &second, &third, &globex] {
        assert!(!logs.contains(secret.as_str()), "a SCIM token in the logs");
    }
}

/// Found in review, on a real store: the token is checked before the body (401, then 404 for
/// another tenant's path, before any 400 or 413), a NUL in an id or a filter is a 404/400 (not
/// a PostgreSQL error), and a client error's detail naming a person is never logged.
async fn checks_come_in_order_and_errors_log_no_personal_data(app: TestApp) {
    let t = acme_with_token(&app).await;
    app.create_tenant("globex").await;
    let (_, globex) = issue_token(&app, "globex", json!({})).await;
    let text_plain = ("text/plain", &json!({"userName": "x"}));
    let unknown = "Bearer scim_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = scim_as(
        &app,
        Method::POST,
        "acme",
        "/Users",
        Some(unknown),
        Some(text_plain),
    )
    .await;
    assert_scim_error(&r, 401, None);
    let other = format!("Bearer {globex}");
    let r = scim_as(
        &app,
        Method::POST,
        "acme",
        "/Users",
        Some(&other),
        Some(("application/scim+json", &json!([1]))),
    )
    .await;
    assert_scim_error(&r, 404, None);

    let r = scim(&app, &t, Method::GET, "/Users/a%00b", None).await;
    assert_scim_error(&r, 404, None);
    let r = scim(
        &app,
        &t,
        Method::GET,
        "/Users?filter=userName%20eq%20%22a%5Cu0000b%22",
        None,
    )
    .await;
    assert_scim_error(&r, 400, Some("invalidFilter"));

    // Longer than a provisioning id (128), within a userName (256): its detail names it.
    let long = format!("{}@leak.example", "x".repeat(150));
    let r = scim(
        &app,
        &t,
        Method::POST,
        "/Users",
        Some(okta_user(&long, "Le", "Ak")),
    )
    .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    let r = scim(
        &app,
        &t,
        Method::GET,
        &filter("leak@example.com eq \"x\""),
        None,
    )
    .await;
    assert_scim_error(&r, 400, Some("invalidFilter"));
    let logs = captured_logs();
    assert!(
        !logs.contains("leak.example"),
        "a userName reached the logs"
    );
    assert!(
        !logs.contains("leak@example.com"),
        "a filter value reached the logs"
    );
}
