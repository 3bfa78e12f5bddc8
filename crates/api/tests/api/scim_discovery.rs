//! SCIM authentication, discovery documents, and SCIM error bodies for unknown URLs, wrong
//! methods and other tenants; the metrics label of SCIM routes.

use std::sync::{Arc, Mutex};

use actix_web::test::TestRequest;
use serde_json::json;

use crate::helpers::*;
use crate::scim::*;

#[actix_web::test]
async fn missing_unknown_and_foreign_credentials_are_scim_401s() {
    // Arrange
    let (app, _t) = acme().await;
    let jwt = admin();
    let acme_jwt = token("provisioner:admin provisioner:write", Some("acme"));
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("basic", Some("Basic dXNlcjpwYXNz".into())),
        ("unknown token", Some("Bearer scim_not-a-real-token".into())),
        ("garbage", Some("Bearer non-token".into())),
        ("an admin JWT of /v1", Some(format!("Bearer {jwt}"))),
        ("a tenant JWT of /v1", Some(format!("Bearer {acme_jwt}"))),
    ];
    for path in ["/Users", "/ServiceProviderConfig", "/Schemas"] {
        for (what, header) in &cases {
            let mut req = TestRequest::get().uri(&format!("/scim/v2/acme{path}"));
            if let Some(h) = header {
                req = req.insert_header(("authorization", h.as_str()));
            }
            // Act
            let r = app.send(req).await;
            // Assert
            let b = scim_error(&r, 401, None);
            assert_eq!(
                r.header("www-authenticate").as_deref(),
                Some("Bearer"),
                "{what}"
            );
            assert!(
                !b.to_string().contains(&jwt),
                "{what}: the token is not echoed"
            );
        }
    }
}

#[actix_web::test]
async fn a_scim_token_does_not_work_on_v1() {
    let (app, t) = acme().await;
    for path in [
        "/v1/tenants/acme",
        "/v1/tenants/acme/users",
        "/v1/tenants/acme/scim",
    ] {
        let r = app.call("GET", path, Some(&t), None).await;
        r.problem(401, "unauthenticated");
    }
}

#[actix_web::test]
async fn another_tenants_path_is_a_scim_404() {
    // Arrange: two tenants, a user each.
    let (app, acme_token) = acme().await;
    app.tenant("umbrella").await;
    let umbrella_token = scim_token(&app, "umbrella").await;
    let ann = create(&app, &acme_token, "ann@example.com").await;
    let id = ann["id"].as_str().unwrap();
    for (path, method) in [
        ("/Users", "GET"),
        ("/Users", "POST"),
        (&*format!("/Users/{id}"), "GET"),
        (&*format!("/Users/{id}"), "DELETE"),
        ("/ServiceProviderConfig", "GET"),
        ("/Groups", "GET"),
    ] {
        for tenant in ["umbrella", "ghost", "ACME"] {
            // Act: acme's token on another tenant's path.
            let mut req = TestRequest::default()
                .method(method.parse().unwrap())
                .uri(&format!("/scim/v2/{tenant}{path}"))
                .insert_header(("authorization", format!("Bearer {acme_token}")));
            if method == "POST" {
                req = req.set_json(okta_user("x@example.com"));
            }
            let r = app.send(req).await;
            // Assert
            scim_error(&r, 404, None);
        }
    }
    // Umbrella's token does not see acme's user through its own path either.
    let req = TestRequest::get()
        .uri(&format!("/scim/v2/umbrella/Users/{id}"))
        .insert_header(("authorization", format!("Bearer {umbrella_token}")));
    scim_error(&app.send(req).await, 404, None);
    let req = TestRequest::get()
        .uri("/scim/v2/umbrella/Users")
        .insert_header(("authorization", format!("Bearer {umbrella_token}")));
    assert_eq!(app.send(req).await.json()["totalResults"], 0);
    // Nothing happened to ann.
    assert_eq!(
        scim(
            &app,
            "GET",
            &format!("/Users/{id}"),
            Some(&acme_token),
            None
        )
        .await
        .json(),
        ann
    );
}

#[actix_web::test]
async fn discovery_documents_describe_what_is_supported() {
    let (app, t) = acme().await;
    let r = scim(&app, "GET", "/ServiceProviderConfig", Some(&t), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(SCIM));
    let spc = r.json();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(spc["filter"], json!({"supported": true, "maxResults": 200}));
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    assert_eq!(
        spc["meta"]["location"],
        "/scim/v2/acme/ServiceProviderConfig"
    );

    let types = scim(&app, "GET", "/ResourceTypes", Some(&t), None)
        .await
        .json();
    assert_eq!(types["totalResults"], 1);
    assert_eq!(types["Resources"][0]["endpoint"], "/Users");
    let user_type = scim(&app, "GET", "/ResourceTypes/User", Some(&t), None)
        .await
        .json();
    assert_eq!(user_type, types["Resources"][0]);
    scim_error(
        &scim(&app, "GET", "/ResourceTypes/Group", Some(&t), None).await,
        404,
        None,
    );

    let schemas = scim(&app, "GET", "/Schemas", Some(&t), None).await.json();
    assert_eq!(schemas["Resources"][0]["id"], USER_URN);
    assert_eq!(schemas["totalResults"], 4);
    let user = scim(&app, "GET", &format!("/Schemas/{USER_URN}"), Some(&t), None).await;
    assert_eq!(user.status, 200);
    assert_eq!(user.json(), schemas["Resources"][0]);
    scim_error(
        &scim(
            &app,
            "GET",
            "/Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            Some(&t),
            None,
        )
        .await,
        404,
        None,
    );
}

#[actix_web::test]
async fn discovery_endpoints_refuse_other_methods_with_a_scim_405() {
    let (app, t) = acme().await;
    for path in [
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/Schemas",
        "/ResourceTypes/User",
    ] {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = scim(&app, method, path, Some(&t), Some(json!({}))).await;
            scim_error(&r, 405, None);
            assert_eq!(r.header("allow").as_deref(), Some("GET"), "{method} {path}");
        }
    }
    let r = scim(&app, "DELETE", "/Users", Some(&t), None).await;
    scim_error(&r, 405, None);
    assert_eq!(r.header("allow").as_deref(), Some("GET, POST"));
}

#[actix_web::test]
async fn unknown_urls_under_scim_are_scim_404s() {
    let (app, t) = acme().await;
    for path in [
        "/scim/v2/acme/Nope",
        "/scim/v2/acme/Users/a/b",
        "/scim/v2/acme",
        "/scim/v2",
        "/scim/v1/acme/Users",
        "/scim",
    ] {
        let req = TestRequest::get()
            .uri(path)
            .insert_header(("authorization", format!("Bearer {t}")));
        scim_error(&app.send(req).await, 404, None);
    }
    // Outside /scim, the API's own problem details as before.
    app.call("GET", "/nope", None, None)
        .await
        .problem(404, "not_found");
}

#[actix_web::test]
async fn groups_are_an_empty_list_and_cannot_be_created() {
    let (app, t) = acme().await;
    let r = scim(
        &app,
        "GET",
        "/Groups?startIndex=1&count=100&filter=displayName%20eq%20%22x%22",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Resources"], json!([]));
    scim_error(
        &scim(&app, "GET", "/Groups/g1", Some(&t), None).await,
        404,
        None,
    );
    let r = scim(
        &app,
        "POST",
        "/Groups",
        Some(&t),
        Some(json!({"displayName": "ml"})),
    )
    .await;
    scim_error(&r, 501, None);
}

/// The labels of one registered counter.
type LabelSet = Vec<(String, String)>;

/// A metrics recorder keeping the labels of `provisioner_http_requests_total`.
#[derive(Clone, Default)]
struct Labels(Arc<Mutex<Vec<LabelSet>>>);

impl metrics::Recorder for Labels {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == "provisioner_http_requests_total" {
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            self.0.lock().unwrap().push(labels);
        }
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[actix_web::test]
async fn the_metrics_route_label_of_scim_requests_is_the_template() {
    // Arrange
    let (app, t) = acme().await;
    let id = create(&app, &t, "ann@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec = Labels::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    // Act
    scim(&app, "GET", &format!("/Users/{id}"), Some(&t), None).await;
    scim(&app, "GET", "/Whatever/else", Some(&t), None).await;
    // Assert
    let routes: Vec<String> = rec
        .0
        .lock()
        .unwrap()
        .iter()
        .flat_map(|l| {
            l.iter()
                .filter(|(k, _)| k == "route")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(routes, ["/scim/v2/{tenant_id}/Users/{id}", "unmatched"]);
}
