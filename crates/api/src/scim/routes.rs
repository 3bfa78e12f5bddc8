//! The SCIM 2.0 endpoints of a tenant, under `/scim/v2/{tenant_id}` (RFC 7644 §3, §4).
//!
//! Users: `GET /Users` (filter, `startIndex`, `count`), `POST /Users` (201 + `Location`),
//! `GET/PUT/PATCH /Users/{id}` (200, the full resource), `DELETE /Users/{id}` (204), and the
//! search form `POST /Users/.search` (also `POST /.search`: users are the only resources).
//! Groups are not supported: `GET /Groups` answers an empty list (the identity providers'
//! connection tests read it), `/Groups/{id}` is 404 and `POST /Groups` 501 — group
//! provisioning must be turned off in the identity provider. Discovery:
//! `/ServiceProviderConfig`, `/ResourceTypes[/User]`, `/Schemas[/{urn}]`, GET only (405).
//!
//! Every answer is `application/scim+json`; every error a SCIM error ([`super::error`]),
//! including unknown URLs under `/scim` (404), wrong methods (405) and extractor failures.
//! `attributes` / `excludedAttributes` apply to every answer holding users.

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, Resource, Route, web};
use provisioner_core::scim::{ScimAttributes, ScimQuery};
use provisioner_core::service::ScimApplyError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::ScimCaller;
use super::body::ScimBody;
use super::discovery::{self, LIST_RESPONSE_URN, MAX_RESULTS};
use super::error::{SCIM_JSON, ScimError};
use super::filter::parse_filter;
use super::patch::apply_patch;
use super::projection::Projection;
use super::resource::{
    base_path, get_ci, opt_string, parse_user, profile_hint, render_user, user_location,
};
use crate::ApiState;

/// Page size of a list that names no `count`.
pub const DEFAULT_COUNT: u32 = 100;

/// URN of the SearchRequest message.
const SEARCH_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// A SCIM JSON answer.
fn scim_json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, SCIM_JSON))
        .body(body.to_string())
}

/// A resource answering `routes`; any other method is a SCIM 405 with `Allow`.
fn resource<const N: usize>(path: &str, routes: [(Method, Route); N]) -> Resource {
    let allow = routes
        .iter()
        .map(|(m, _)| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut resource = web::resource(path);
    for (method, route) in routes {
        resource = resource.route(route.method(method));
    }
    resource.default_service(web::to(move || {
        let allow = allow.clone();
        async move { Err::<HttpResponse, _>(ScimError::method_not_allowed(&allow)) }
    }))
}

/// Unknown URLs under `/scim`.
async fn not_found() -> Result<HttpResponse, ScimError> {
    Err(ScimError::not_found("no such SCIM endpoint"))
}

/// Mounts `/scim/v2/{tenant_id}/...` with SCIM errors for every extractor and unknown URL.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use Method as M;
    let tenant = web::scope("/v2/{tenant_id}")
        .service(resource(
            "/Users",
            [
                (M::GET, web::to(list_users)),
                (M::POST, web::to(create_user)),
            ],
        ))
        .service(resource(
            "/Users/.search",
            [(M::POST, web::to(search_users))],
        ))
        .service(resource(
            "/Users/{id}",
            [
                (M::GET, web::to(get_user)),
                (M::PUT, web::to(replace_user)),
                (M::PATCH, web::to(patch_user)),
                (M::DELETE, web::to(delete_user)),
            ],
        ))
        .service(resource("/.search", [(M::POST, web::to(search_users))]))
        .service(resource(
            "/Groups",
            [
                (M::GET, web::to(list_groups)),
                (M::POST, web::to(create_group)),
            ],
        ))
        .service(resource(
            "/Groups/{id}",
            [
                (M::GET, web::to(no_group)),
                (M::PUT, web::to(no_group)),
                (M::PATCH, web::to(no_group)),
                (M::DELETE, web::to(no_group)),
            ],
        ))
        .service(resource(
            "/ServiceProviderConfig",
            [(M::GET, web::to(service_provider_config))],
        ))
        .service(resource(
            "/ResourceTypes",
            [(M::GET, web::to(resource_types))],
        ))
        .service(resource(
            "/ResourceTypes/{id}",
            [(M::GET, web::to(resource_type))],
        ))
        .service(resource("/Schemas", [(M::GET, web::to(schemas))]))
        .service(resource("/Schemas/{id}", [(M::GET, web::to(schema))]))
        .default_service(web::to(not_found));
    cfg.service(
        web::scope("/scim")
            .app_data(
                web::PathConfig::default()
                    .error_handler(|_, _| ScimError::not_found("no such SCIM resource").into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                ScimError::invalid_syntax(format!("invalid query string: {e}")).into()
            }))
            .service(tenant)
            .default_service(web::to(not_found)),
    );
}

/// The `{id}` path segment (percent-decoded).
#[derive(Deserialize)]
struct IdPath {
    id: String,
}

/// Query parameters of a list (names case-insensitive; unknown ones ignored).
#[derive(Debug, Default)]
struct ListParams {
    filter: Option<String>,
    start_index: u64,
    count: u32,
    projection: Projection,
}

/// `startIndex` below 1 means 1; `count` below 0 means 0 and is capped at `maxResults`
/// (RFC 7644 §3.4.2.4).
fn page(start_index: Option<i64>, count: Option<i64>) -> (u64, u32) {
    let start = start_index.unwrap_or(1).max(1) as u64;
    let count = count.map_or(i64::from(DEFAULT_COUNT), |c| {
        c.clamp(0, i64::from(MAX_RESULTS))
    });
    (start, count as u32)
}

fn integer(name: &str, v: &str) -> Result<i64, ScimError> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer")))
}

impl ListParams {
    fn from_query(req: &HttpRequest) -> Result<Self, ScimError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| ScimError::invalid_syntax(format!("invalid query string: {e}")))?
            .into_inner();
        let get = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (start_index, count) = page(
            get("startIndex")
                .map(|v| integer("startIndex", v))
                .transpose()?,
            get("count").map(|v| integer("count", v)).transpose()?,
        );
        Ok(ListParams {
            // A blank filter is no filter.
            filter: get("filter")
                .filter(|f| !f.trim().is_empty())
                .map(str::to_owned),
            start_index,
            count,
            projection: Projection::new(get("attributes"), get("excludedAttributes")),
        })
    }

    /// From a SearchRequest body (RFC 7644 §3.4.3).
    fn from_search(body: &Value) -> Result<Self, ScimError> {
        let Value::Object(o) = body else {
            return Err(ScimError::invalid_syntax("the body must be a JSON object"));
        };
        let is_search = matches!(get_ci(o, "schemas"), Some(Value::Array(s))
            if s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(SEARCH_REQUEST_URN))));
        if !is_search {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must contain {SEARCH_REQUEST_URN}"
            )));
        }
        let int = |name: &str| match get_ci(o, name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
        };
        let list = |name: &str| match get_ci(o, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Some(_) => Err(ScimError::invalid_value(format!(
                "{name} must be an array of strings"
            ))),
        };
        let (start_index, count) = page(int("startIndex")?, int("count")?);
        let (attributes, excluded) = (list("attributes")?, list("excludedAttributes")?);
        Ok(ListParams {
            filter: opt_string(get_ci(o, "filter"), "filter")?,
            start_index,
            count,
            projection: Projection::new(attributes.as_deref(), excluded.as_deref()),
        })
    }
}

/// A ListResponse of users.
async fn list(
    state: &ApiState,
    caller: &ScimCaller,
    p: ListParams,
) -> Result<HttpResponse, ScimError> {
    let filter = p.filter.as_deref().map(parse_filter).transpose()?;
    let (users, total) = match &filter {
        Some(f) if f.matches_nothing => (Vec::new(), 0),
        _ => {
            let query = filter.map(|f| f.query).unwrap_or_else(ScimQuery::default);
            state
                .service
                .scim_list_users(&caller.tenant, &query, p.start_index, p.count)
                .await?
        }
    };
    let resources: Vec<Value> = users
        .iter()
        .map(|u| p.projection.apply(render_user(u)))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_URN],
            "totalResults": total,
            "itemsPerPage": resources.len(),
            "startIndex": p.start_index,
            "Resources": resources,
        }),
    ))
}

/// `GET /Users`.
#[tracing::instrument(skip_all)]
async fn list_users(
    state: web::Data<ApiState>,
    caller: ScimCaller,
    req: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    list(&state, &caller, ListParams::from_query(&req)?).await
}

/// `POST /Users/.search` and `POST /.search`.
#[tracing::instrument(skip_all)]
async fn search_users(
    state: web::Data<ApiState>,
    caller: ScimCaller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let body = ScimBody::read(&req, payload).await?;
    list(&state, &caller, ListParams::from_search(&body)?).await
}

/// The projection asked for in the query string of a single-resource request.
fn projection(req: &HttpRequest) -> Result<Projection, ScimError> {
    Ok(ListParams::from_query(req)?.projection)
}

/// `POST /Users`: 201 with the resource and its `Location`.
#[tracing::instrument(skip_all)]
async fn create_user(
    state: web::Data<ApiState>,
    caller: ScimCaller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let body = ScimBody::read(&req, payload).await?;
    let attrs = parse_user(&body, None)?;
    // Every check before the write: a bad query string must not answer 400 after storing.
    let projection = projection(&req)?;
    let config = state.service.scim_config(&caller.tenant).await?;
    let hint = config
        .profile_attribute
        .as_deref()
        .and_then(|a| profile_hint(&body, a));
    let user = state
        .service
        .scim_create_user(&caller.actor, &caller.tenant, attrs, hint)
        .await?;
    let mut res = scim_json(StatusCode::CREATED, &projection.apply(render_user(&user)));
    if let Ok(v) = user_location(caller.tenant.as_str(), &user.id)
        .parse::<actix_web::http::header::HeaderValue>()
    {
        res.headers_mut().insert(LOCATION, v);
    }
    Ok(res)
}

/// `GET /Users/{id}`.
#[tracing::instrument(skip_all)]
async fn get_user(
    state: web::Data<ApiState>,
    caller: ScimCaller,
    path: web::Path<IdPath>,
    req: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    let user = state
        .service
        .scim_get_user(&caller.tenant, &path.id)
        .await?;
    Ok(scim_json(
        StatusCode::OK,
        &projection(&req)?.apply(render_user(&user)),
    ))
}

/// Runs a modification (a PUT's replacement or a PATCH) through core.
async fn modify(
    state: &ApiState,
    caller: &ScimCaller,
    id: &str,
    action: &'static str,
    req: &HttpRequest,
    apply: impl Fn(&ScimAttributes) -> Result<ScimAttributes, ScimError> + Send + Sync,
) -> Result<HttpResponse, ScimError> {
    let projection = projection(req)?;
    let user = state
        .service
        .scim_modify_user(&caller.actor, &caller.tenant, id, action, |u| {
            apply(&u.attrs)
        })
        .await
        .map_err(|e| match e {
            ScimApplyError::Apply(e) => e,
            ScimApplyError::Domain(e) => e.into(),
        })?;
    Ok(scim_json(
        StatusCode::OK,
        &projection.apply(render_user(&user)),
    ))
}

/// `PUT /Users/{id}`: replaces the attributes (an omitted `active` stays as it is).
#[tracing::instrument(skip_all)]
async fn replace_user(
    state: web::Data<ApiState>,
    caller: ScimCaller,
    path: web::Path<IdPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let body = ScimBody::read(&req, payload).await?;
    let apply = |current: &ScimAttributes| parse_user(&body, Some(current));
    modify(&state, &caller, &path.id, "scim.user.replace", &req, apply).await
}

/// `PATCH /Users/{id}`: 200 with the full resource.
#[tracing::instrument(skip_all)]
async fn patch_user(
    state: web::Data<ApiState>,
    caller: ScimCaller,
    path: web::Path<IdPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ScimError> {
    let body = ScimBody::read(&req, payload).await?;
    let apply = |current: &ScimAttributes| apply_patch(current, &body);
    modify(&state, &caller, &path.id, "scim.user.patch", &req, apply).await
}

/// `DELETE /Users/{id}`: 204; the user's app and key are deprovisioned.
#[tracing::instrument(skip_all)]
async fn delete_user(
    state: web::Data<ApiState>,
    caller: ScimCaller,
    path: web::Path<IdPath>,
) -> Result<HttpResponse, ScimError> {
    state
        .service
        .scim_delete_user(&caller.actor, &caller.tenant, &path.id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /Groups`: always empty (groups are not supported).
async fn list_groups(_caller: ScimCaller, req: HttpRequest) -> Result<HttpResponse, ScimError> {
    let p = ListParams::from_query(&req)?;
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_RESPONSE_URN],
            "totalResults": 0,
            "itemsPerPage": 0,
            "startIndex": p.start_index,
            "Resources": [],
        }),
    ))
}

/// `POST /Groups`: 501.
async fn create_group(_caller: ScimCaller) -> Result<HttpResponse, ScimError> {
    Err(ScimError::not_implemented(
        "groups are not supported; turn off group provisioning in the identity provider",
    ))
}

/// `/Groups/{id}`: no group exists.
async fn no_group(_caller: ScimCaller) -> Result<HttpResponse, ScimError> {
    Err(ScimError::not_found(
        "no such group; groups are not supported",
    ))
}

/// `GET /ServiceProviderConfig`.
async fn service_provider_config(caller: ScimCaller) -> HttpResponse {
    let base = base_path(caller.tenant.as_str());
    scim_json(StatusCode::OK, &discovery::service_provider_config(&base))
}

/// `GET /ResourceTypes`.
async fn resource_types(caller: ScimCaller) -> HttpResponse {
    let base = base_path(caller.tenant.as_str());
    scim_json(
        StatusCode::OK,
        &discovery::list_of(vec![discovery::user_resource_type(&base)]),
    )
}

/// `GET /ResourceTypes/{id}`.
async fn resource_type(
    caller: ScimCaller,
    path: web::Path<IdPath>,
) -> Result<HttpResponse, ScimError> {
    if path.id != "User" {
        return Err(ScimError::not_found(format!(
            "no resource type {:?}",
            path.id
        )));
    }
    let base = base_path(caller.tenant.as_str());
    Ok(scim_json(
        StatusCode::OK,
        &discovery::user_resource_type(&base),
    ))
}

/// `GET /Schemas`.
async fn schemas(caller: ScimCaller) -> HttpResponse {
    let base = base_path(caller.tenant.as_str());
    scim_json(
        StatusCode::OK,
        &discovery::list_of(discovery::schemas(&base)),
    )
}

/// `GET /Schemas/{urn}`.
async fn schema(caller: ScimCaller, path: web::Path<IdPath>) -> Result<HttpResponse, ScimError> {
    let base = base_path(caller.tenant.as_str());
    discovery::schemas(&base)
        .into_iter()
        .find(|s| s["id"] == path.id.as_str())
        .map(|s| scim_json(StatusCode::OK, &s))
        .ok_or_else(|| ScimError::not_found(format!("no schema {:?}", path.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_follows_rfc_7644() {
        assert_eq!(page(None, None), (1, 100));
        assert_eq!(page(Some(0), Some(-5)), (1, 0));
        assert_eq!(page(Some(-3), Some(1000)), (1, 200));
        assert_eq!(page(Some(101), Some(2)), (101, 2));
    }

    #[test]
    fn a_search_request_reads_like_the_query_string() {
        let p = ListParams::from_search(&json!({
            "schemas": [SEARCH_REQUEST_URN],
            "filter": "userName eq \"a\"", "startIndex": 3, "count": 7,
            "attributes": ["userName"]
        }))
        .unwrap();
        assert_eq!(
            (p.filter.as_deref(), p.start_index, p.count),
            (Some("userName eq \"a\""), 3, 7)
        );
        assert_ne!(p.projection, Projection::All);
        assert!(ListParams::from_search(&json!({"filter": "x"})).is_err());
        assert!(
            ListParams::from_search(&json!({"schemas": [SEARCH_REQUEST_URN], "count": "x"}))
                .is_err()
        );
    }
}
