//! Tenant isolation and permissions: another tenant's token sees 404 everywhere (it cannot
//! learn what exists); a missing permission on one's own tenant is 403; neither changes anything.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem};

crate::on_both_backends!(isolation_matrix);

/// Every tenant route: (method, path, body, the permission it needs).
fn routes() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    vec![
        (Method::GET, "/v1/tenants/acme", None, "provisioner:read"),
        (
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"display_name": "x"})),
            "provisioner:admin",
        ),
        (
            Method::DELETE,
            "/v1/tenants/acme",
            None,
            "provisioner:admin",
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/upstream-credential",
            Some(json!({"pat": "whatever-pat"})),
            "provisioner:admin",
        ),
        (
            Method::GET,
            "/v1/tenants/acme/scope-profiles",
            None,
            "provisioner:read",
        ),
        (
            Method::GET,
            "/v1/tenants/acme/scope-profiles/standard",
            None,
            "provisioner:read",
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/scope-profiles/extra",
            Some(json!({"scopes": ["Predict"]})),
            "provisioner:admin",
        ),
        (
            Method::DELETE,
            "/v1/tenants/acme/scope-profiles/annotator",
            None,
            "provisioner:admin",
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/users/victim",
            Some(json!({})),
            "provisioner:write",
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/users/newcomer",
            Some(json!({})),
            "provisioner:write",
        ),
        (
            Method::GET,
            "/v1/tenants/acme/users/victim",
            None,
            "provisioner:read",
        ),
        (
            Method::GET,
            "/v1/tenants/acme/users/nobody",
            None,
            "provisioner:read",
        ),
        (
            Method::GET,
            "/v1/tenants/acme/users",
            None,
            "provisioner:read",
        ),
        (
            Method::POST,
            "/v1/tenants/acme/users/victim/rotate-key",
            Some(json!({})),
            "provisioner:write",
        ),
        (
            Method::POST,
            "/v1/tenants/acme/users/victim/reveal-key",
            None,
            "provisioner:secrets",
        ),
        (
            Method::DELETE,
            "/v1/tenants/acme/users/victim",
            None,
            "provisioner:write",
        ),
        (
            Method::GET,
            "/v1/audit-events?tenant_id=acme",
            None,
            "provisioner:audit",
        ),
    ]
}

async fn isolation_matrix(app: TestApp) {
    // Arrange: two tenants; acme has one user.
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let acme_w = app.token("provisioner:write", Some("acme"));
    let created = app.put_user("acme", "victim", &acme_w, json!({})).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    let upstream_before = app.upstream_counts();
    let requests_before = app.sim.request_count();

    // Act + assert: globex's all-powerful (non-admin) token gets 404 on every acme route.
    let globex = app.token(
        "provisioner:write provisioner:read provisioner:secrets provisioner:audit",
        Some("globex"),
    );
    for (method, path, body, _) in routes() {
        let r = app.call(method.clone(), path, Some(&globex), body).await;
        assert_problem(&r, 404, "not_found");
        assert!(
            !r.text.contains("victim") && !r.text.contains("acme corp"),
            "{method} {path} leaks: {}",
            r.text
        );
    }
    // A token bound to no tenant and without admin: 404 too.
    let unbound = app.token("provisioner:write provisioner:read", None);
    for (method, path, body, _) in routes() {
        let r = app.call(method.clone(), path, Some(&unbound), body).await;
        assert!(
            matches!(r.status.as_u16(), 403 | 404),
            "{method} {path}: {}",
            r.text
        );
    }

    // Missing permission on one's own tenant: 403.
    for (method, path, body, needed) in routes() {
        let others: Vec<&str> = [
            "provisioner:read",
            "provisioner:write",
            "provisioner:secrets",
            "provisioner:audit",
        ]
        .into_iter()
        .filter(|p| *p != needed && !(needed == "provisioner:read" && *p == "provisioner:write"))
        .collect();
        let t = app.token(&others.join(" "), Some("acme"));
        let r = app.call(method.clone(), path, Some(&t), body).await;
        assert_problem(&r, 403, "forbidden");
    }

    // Nothing changed, upstream or here.
    assert_eq!(app.upstream_counts(), upstream_before);
    assert_eq!(
        app.sim.request_count(),
        requests_before,
        "no upstream call from refused requests"
    );
    let g = app
        .call(
            Method::GET,
            "/v1/tenants/acme/users/victim",
            Some(&acme_w),
            None,
        )
        .await;
    assert_eq!(g.body["status"], "active");
    assert_eq!(g.body["key"], created.body["key"]);
    let t = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    assert_eq!(t.body["display_name"], "acme corp");
}
