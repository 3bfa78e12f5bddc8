//! GetUser, MyScopes (and its variants), ListScopes.

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use crate::auth::{Principal, authenticate, resolve_uid};
use crate::errors::{ApiError, ok};
use crate::shared::Shared;
use crate::state::field;

/// `{scopes, endpoints[, app]}` for a MyScopes answer.
fn scopes_body(scopes: &[String], endpoints: &[String], app: Option<Value>) -> Map<String, Value> {
    let mut body = field("scopes", json!(scopes));
    body.insert("endpoints".into(), json!(endpoints));
    if let Some(app) = app {
        body.insert("app".into(), app);
    }
    body
}

/// What this principal may do, with its app when it is an app key.
fn my_scopes_of(shared: &Shared, p: &Principal) -> Map<String, Value> {
    match p {
        Principal::Pat { scopes, .. } => scopes_body(scopes, &[], None),
        Principal::AppKey {
            user_id,
            app_id,
            scopes,
            endpoints,
        } => {
            let app = shared
                .state()
                .app(user_id, app_id)
                .ok()
                .map(|a| a.to_json());
            scopes_body(scopes, endpoints, app)
        }
    }
}

/// `GET /v2/users/{uid}` (PAT; `me` works).
pub(super) async fn get_user(
    req: HttpRequest,
    shared: Data<Shared>,
    uid: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = authenticate(&req, &shared)?.pat_for(&uid)?;
    Ok(ok(field("user", json!({ "id": user }))))
}

/// `GET /v2/myscopes` and `/v2/my_scopes` (PAT or app key).
pub(super) async fn my_scopes(
    req: HttpRequest,
    shared: Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let p = authenticate(&req, &shared)?;
    Ok(ok(my_scopes_of(&shared, &p)))
}

/// `GET /v2/users/{uid}/apps/{app_id}/myscopes` (PAT, or an app key for its own app).
pub(super) async fn my_scopes_app(
    req: HttpRequest,
    shared: Data<Shared>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (uid, app_id) = path.into_inner();
    let p = authenticate(&req, &shared)?;
    let user = resolve_uid(p.user_id(), &uid)?;
    if let Principal::AppKey { app_id: own, .. } = &p
        && *own != app_id
    {
        return Err(ApiError::not_found(format!("app '{app_id}' not found")));
    }
    let app = shared.state().app(&user, &app_id)?.to_json();
    let mut body = my_scopes_of(&shared, &p);
    body.insert("app".into(), app);
    Ok(ok(body))
}

/// `GET /v2/users/{uid}/myscopes` (PAT).
pub(super) async fn my_scopes_user(
    req: HttpRequest,
    shared: Data<Shared>,
    uid: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let p = authenticate(&req, &shared)?;
    p.pat_for(&uid)?;
    Ok(ok(my_scopes_of(&shared, &p)))
}

/// `GET /v2/myscopesroot` (PAT).
pub(super) async fn my_scopes_root(
    req: HttpRequest,
    shared: Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let p = authenticate(&req, &shared)?;
    p.pat_for("me")?;
    Ok(ok(my_scopes_of(&shared, &p)))
}

/// `GET /v2/users/{uid}/scopes` (ListScopes): session-token only upstream, so every key
/// (PAT or app key) is refused with 401 11008. Whether the real API refuses a PAT is unconfirmed.
pub(super) async fn list_scopes(
    req: HttpRequest,
    shared: Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &shared)?;
    Err(ApiError::key_invalid(
        "ListScopes needs a session token; API keys and personal access tokens are not accepted",
    ))
}
