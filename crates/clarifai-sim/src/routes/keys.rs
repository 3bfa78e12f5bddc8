//! PostKeys, GetKey, ListKeys, ListAppKeys, DeleteKey (all PAT-only).

use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::{json_body, optional_json, page, param, query};
use crate::auth::authenticate;
use crate::errors::{ApiError, ok};
use crate::keys::{KeyFilter, KeyIn, SimKey};
use crate::shared::Shared;
use crate::state::field;

#[derive(Default, Deserialize)]
#[serde(default)]
struct PostKeysBody {
    keys: Vec<KeyIn>,
}

fn keys_json(keys: &[SimKey]) -> HttpResponse {
    ok(field(
        "keys",
        Value::Array(keys.iter().map(SimKey::to_json).collect()),
    ))
}

/// `POST /v2/users/{uid}/keys`: one existing own app per key, known scopes, no PATs.
pub(super) async fn post_keys(
    req: HttpRequest,
    shared: Data<Shared>,
    uid: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    let body: PostKeysBody = json_body(&body)?;
    let keys = shared.state().create_keys(&user, body.keys, Utc::now())?;
    Ok(keys_json(&keys))
}

/// `GET /v2/users/{uid}/keys/{key_id}`.
pub(super) async fn get_key(
    req: HttpRequest,
    shared: Data<Shared>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (uid, key_id) = path.into_inner();
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    let state = shared.state();
    Ok(ok(field("key", state.key(&user, &key_id)?.to_json())))
}

/// `GET /v2/users/{uid}/keys`: every app key of the user (PATs are not listed).
pub(super) async fn list_keys(
    req: HttpRequest,
    shared: Data<Shared>,
    uid: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    let q = query(&req)?;
    let filter = KeyFilter {
        not_expired: param(&q, "not_expired") == Some("true"),
        only_pats: param(&q, "type") == Some("personal_access_token"),
    };
    let keys = shared.state().list_keys(&user, &filter, page(&q)?);
    Ok(keys_json(&keys))
}

/// `GET /v2/users/{uid}/apps/{app_id}/keys`: 404 11101 when the app is missing.
pub(super) async fn list_app_keys(
    req: HttpRequest,
    shared: Data<Shared>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (uid, app_id) = path.into_inner();
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    let page = page(&query(&req)?)?;
    let keys = shared.state().list_app_keys(&user, &app_id, page)?;
    Ok(keys_json(&keys))
}

/// `DELETE /v2/users/{uid}/keys/{key_id}`: body optional; 404 11101 when missing.
pub(super) async fn delete_key(
    req: HttpRequest,
    shared: Data<Shared>,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (uid, key_id) = path.into_inner();
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    optional_json(&body)?;
    shared.state().delete_key(&user, &key_id)?;
    Ok(ok(serde_json::Map::new()))
}
