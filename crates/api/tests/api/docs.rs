//! The HTML API reference at `/docs`, rendered from the OpenAPI document.

use serde_json::Value;

use crate::helpers::*;

/// The reference page's HTML.
async fn reference() -> String {
    let app = spawn().await;
    let r = app.call("GET", "/docs", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    r.text()
}

/// The `<section>` of the operation with this anchor.
fn operation<'a>(page: &'a str, anchor: &str) -> &'a str {
    let start = page
        .find(&format!("<section class=\"op\" id=\"{anchor}\">"))
        .unwrap_or_else(|| panic!("{anchor} is not on the page"));
    let len = page[start..].find("</section>").expect("a closed section");
    &page[start..start + len]
}

#[actix_web::test]
async fn the_user_put_is_documented_with_its_parameters_request_fields_and_statuses() {
    // Act
    let page = reference().await;

    // Assert
    let op = operation(&page, "op-put_user");
    assert!(op.contains("<span class=\"m m-put\">PUT</span>"), "{op}");
    assert!(op.contains(
        "/v1/tenants/<span class=\"pp\">{tenant_id}</span>/users/<span class=\"pp\">{external_id}</span>"
    ));
    // Parameters with their constraints and examples.
    for param in ["tenant_id", "external_id", "Idempotency-Key"] {
        assert!(
            op.contains(&format!("<code class=\"fn\">{param}</code>")),
            "{param}"
        );
    }
    assert!(op.contains("<b>pattern</b> <code>^[a-z][a-z0-9-]{0,31}$</code>"));
    assert!(op.contains("<b>example</b> <code>&quot;acme&quot;</code>"));
    // The request body's fields, with their types and constraints.
    let body = &op[op.find("Request body").expect("a request body")..op.find("Responses").unwrap()];
    for field in ["scope_profile", "scopes", "display_name", "metadata"] {
        assert!(
            body.contains(&format!("<code class=\"fn\">{field}</code>")),
            "{field}: {body}"
        );
    }
    assert!(body.contains("array of string"));
    assert!(body.contains("map of string"));
    assert!(body.contains("<b>example</b> <code>&quot;standard&quot;</code>"));
    assert!(body.contains("No other fields are accepted."));
    // The answer's fields, nested objects expanded, and every status with its description.
    assert!(op.contains("<code class=\"fn\">app</code>"));
    assert!(op.contains("AppOut · 2 fields"), "AppOut expanded");
    assert!(op.contains("<b>one of</b> <code>provisioning</code> <code>active</code>"));
    assert!(op.contains("string&lt;date-time&gt;"));
    for status in [
        "200", "201", "400", "401", "403", "404", "409", "422", "429", "503",
    ] {
        assert!(op.contains(&format!(">{status}</span>")), "status {status}");
    }
    assert!(op.contains("Provisioned now; <code>secret</code> is shown this once"));
    // A request and an answer to copy.
    assert!(op.contains("curl -X PUT &quot;$BASE/v1/tenants/acme/users/"));
    assert!(op.contains("&#39;{&quot;scope_profile&quot;:&quot;standard&quot;}&#39;"));
}

#[actix_web::test]
async fn the_contents_list_users_and_tenants_first_and_operations_last() {
    // Act
    let page = reference().await;

    // Assert
    let nav = &page[page.find("<nav").unwrap()..page.find("</nav>").unwrap()];
    let tags: Vec<&str> = nav
        .split("class=\"tgn\" href=\"#")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(
        tags,
        [
            "tag-users",
            "tag-tenants",
            "tag-keys",
            "tag-scope-profiles",
            "tag-jobs",
            "tag-scim",
            "tag-webhooks",
            "tag-audit",
            "tag-operations",
            "schemas"
        ]
    );
    // Within a tag: create (or replace) first, then read, list, actions, delete.
    let users = &nav[nav.find("#tag-users").unwrap()..nav.find("#tag-tenants").unwrap()];
    let order: Vec<usize> = [
        "#op-put_user",
        "#op-get_user",
        "#op-list_users",
        "#op-delete_user",
    ]
    .iter()
    .map(|a| users.find(a).unwrap_or_else(|| panic!("{a} under users")))
    .collect();
    assert!(order.is_sorted(), "{users}");
    // A create under a tenant comes first too, though its path looks like an action.
    let hooks = &nav[nav.find("#tag-webhooks").unwrap()..nav.find("#tag-audit").unwrap()];
    let order: Vec<usize> = [
        "#op-create_webhook_endpoint",
        "#op-get_webhook_endpoint",
        "#op-list_webhook_endpoints",
        "#op-rotate_webhook_secret",
        "#op-delete_webhook_endpoint",
    ]
    .iter()
    .map(|a| {
        hooks
            .find(a)
            .unwrap_or_else(|| panic!("{a} under webhooks"))
    })
    .collect();
    assert!(order.is_sorted(), "{hooks}");
    // The sections follow the contents.
    assert!(page.find("id=\"tag-users\"").unwrap() < page.find("id=\"tag-tenants\"").unwrap());
}

#[actix_web::test]
async fn every_operation_of_the_document_is_on_the_page() {
    // Arrange
    let doc: Value = serde_json::from_str(&provisioner_api::openapi().to_json().unwrap()).unwrap();

    // Act
    let page = reference().await;

    // Assert
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap();
            operation(&page, &format!("op-{id}"));
            assert!(
                page.contains(&format!("<a href=\"#op-{id}\"")),
                "{id} in the contents"
            );
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("id=\"schema-{name}\"")),
            "schema {name}"
        );
    }
}

#[actix_web::test]
async fn markdown_of_the_document_is_rendered_and_its_text_escaped() {
    // Act
    let page = reference().await;

    // Assert: backticks become <code>, nothing is left raw.
    assert!(page.contains("<code>application/problem+json</code>"));
    assert!(page.contains("201 with <code>secret</code> when created"));
    let text_outside_pre: String = page
        .split("<pre")
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                s
            } else {
                s.split_once("</pre>").map_or("", |p| p.1)
            }
        })
        .collect();
    assert!(!text_outside_pre.contains('`'), "raw backticks left");
    // `/docs/problems#<code>` in a description is text, not markup.
    assert!(page.contains("<code>/docs/problems#&lt;code&gt;</code>"));
    assert!(!page.contains("#<code>"));
    // No external assets and no scripts.
    assert!(!page.contains("<script"));
    assert!(!page.contains("src=\"http"));
    assert!(!page.contains("<link"));
    assert!(!page.contains("@import"));
}
