//! `users:batch` accepts bodies beyond the general body limit (10,000 users need more than
//! 1 MiB), and still refuses one beyond its own.

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn a_full_batch_fits_while_other_routes_keep_their_limit() {
    let app = spawn().await;
    app.tenant("acme").await;
    // 10,000 users with 100-character ids: about 1.2 MB, over the general 1 MiB limit.
    let users: Vec<serde_json::Value> = (0..10_000)
        .map(|i| json!({"external_id": format!("{i:0>100}")}))
        .collect();
    let body = json!({ "users": users });
    assert!(body.to_string().len() > 1 << 20);
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/users:batch",
            Some(&admin()),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    // The same size on another route is 413.
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/users/someone",
            Some(&admin()),
            Some(json!({"display_name": "x", "metadata": {"big": "y".repeat(2 << 20)}})),
        )
        .await;
    r.problem(413, "payload_too_large");
}
