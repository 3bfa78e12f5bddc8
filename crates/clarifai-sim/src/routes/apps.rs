//! PostApps, GetApp, ListApps, DeleteApp.

use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::{json_body, optional_json, page, query};
use crate::auth::{Principal, authenticate, resolve_uid};
use crate::errors::{ApiError, ok};
use crate::shared::Shared;
use crate::state::{AppIn, SimApp, field};

#[derive(Default, Deserialize)]
#[serde(default)]
struct PostAppsBody {
    apps: Vec<AppIn>,
}

fn apps_json(apps: &[SimApp]) -> HttpResponse {
    ok(field(
        "apps",
        Value::Array(apps.iter().map(SimApp::to_json).collect()),
    ))
}

fn app_json(app: &SimApp) -> HttpResponse {
    ok(field("app", app.to_json()))
}

/// `POST /v2/users/{uid}/apps` (PAT): all or nothing; duplicate id 409 40010.
pub(super) async fn post_apps(
    req: HttpRequest,
    shared: Data<Shared>,
    uid: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    let body: PostAppsBody = json_body(&body)?;
    let apps = shared.state().create_apps(&user, body.apps, Utc::now())?;
    Ok(apps_json(&apps))
}

/// `GET /v2/users/{uid}/apps` (PAT): ordered by id, paginated; `"apps": []` when empty.
pub(super) async fn list_apps(
    req: HttpRequest,
    shared: Data<Shared>,
    uid: Path<String>,
) -> Result<HttpResponse, ApiError> {
    list_apps_of(&req, &shared, &uid)
}

fn list_apps_of(req: &HttpRequest, shared: &Shared, uid: &str) -> Result<HttpResponse, ApiError> {
    let user = authenticate(req, shared)?.pat_for(uid)?;
    let page = page(&query(req)?)?;
    let apps = shared.state().list_apps(&user, page);
    Ok(apps_json(&apps))
}

/// `GET /v2/apps` (PAT): the caller's own apps.
pub(super) async fn list_own_apps(
    req: HttpRequest,
    shared: Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    list_apps_of(&req, &shared, "me")
}

/// `GET /v2/users/{uid}/apps/{app_id}` (PAT, or an app key for its own app).
pub(super) async fn get_app(
    req: HttpRequest,
    shared: Data<Shared>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (uid, app_id) = path.into_inner();
    let user = match authenticate(&req, &shared)? {
        p @ Principal::Pat { .. } => p.pat_for(&uid)?,
        Principal::AppKey {
            user_id,
            app_id: own,
            ..
        } => {
            let user = resolve_uid(&user_id, &uid)?;
            if own != app_id {
                return Err(ApiError::not_found(format!("app '{app_id}' not found")));
            }
            user
        }
    };
    let state = shared.state();
    Ok(app_json(state.app(&user, &app_id)?))
}

/// `GET /v2/app` (app key): the key's own app.
pub(super) async fn get_key_app(
    req: HttpRequest,
    shared: Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    match authenticate(&req, &shared)? {
        Principal::AppKey {
            user_id, app_id, ..
        } => {
            let state = shared.state();
            Ok(app_json(state.app(&user_id, &app_id)?))
        }
        Principal::Pat { .. } => Err(ApiError::invalid(
            "a personal access token needs the user and app ids in the path",
        )),
    }
}

/// `DELETE /v2/users/{uid}/apps/{app_id}` (PAT): deletes the app and its keys. Body optional.
pub(super) async fn delete_app(
    req: HttpRequest,
    shared: Data<Shared>,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (uid, app_id) = path.into_inner();
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    optional_json(&body)?;
    shared.state().delete_app(&user, &app_id)?;
    Ok(ok(serde_json::Map::new()))
}
