//! The `/v2` routes, mapped as the official JSON client requests them.
//!
//! The official python JSON channel sends GET fields as query parameters (including
//! `user_app_id.user_id=...`, ignored here) and sends a JSON body on DELETE
//! (`{"user_app_id": {...}}`), so DELETE accepts an optional JSON body.

mod account;
mod apps;
mod keys;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

use crate::errors::ApiError;
use crate::state::Page;

/// Registers every `/v2` route. Unmatched paths and methods fall through to [`not_found`].
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/users/{uid}/apps", web::post().to(apps::post_apps))
        .route("/v2/users/{uid}/apps", web::get().to(apps::list_apps))
        .route("/v2/apps", web::get().to(apps::list_own_apps))
        .route("/v2/app", web::get().to(apps::get_key_app))
        .route(
            "/v2/users/{uid}/apps/{app_id}",
            web::get().to(apps::get_app),
        )
        .route(
            "/v2/users/{uid}/apps/{app_id}",
            web::delete().to(apps::delete_app),
        )
        .route(
            "/v2/users/{uid}/apps/{app_id}/keys",
            web::get().to(keys::list_app_keys),
        )
        .route(
            "/v2/users/{uid}/apps/{app_id}/myscopes",
            web::get().to(account::my_scopes_app),
        )
        .route("/v2/users/{uid}/keys", web::post().to(keys::post_keys))
        .route("/v2/users/{uid}/keys", web::get().to(keys::list_keys))
        .route(
            "/v2/users/{uid}/keys/{key_id}",
            web::get().to(keys::get_key),
        )
        .route(
            "/v2/users/{uid}/keys/{key_id}",
            web::delete().to(keys::delete_key),
        )
        .route(
            "/v2/users/{uid}/myscopes",
            web::get().to(account::my_scopes_user),
        )
        .route(
            "/v2/users/{uid}/scopes",
            web::get().to(account::list_scopes),
        )
        .route("/v2/users/{uid}", web::get().to(account::get_user))
        .route("/v2/myscopes", web::get().to(account::my_scopes))
        .route("/v2/my_scopes", web::get().to(account::my_scopes))
        .route("/v2/myscopesroot", web::get().to(account::my_scopes_root));
}

/// Any route the simulator does not serve: 404 with a status body.
pub(crate) async fn not_found() -> HttpResponse {
    ApiError::no_route().response()
}

/// Parses a JSON body; an empty body is the default value. Broken JSON: 400, 11100.
pub(crate) fn json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_format(format!("bad JSON body: {e}")))
}

/// Checks the optional body of a DELETE: empty, or a JSON object (its content is ignored).
pub(crate) fn optional_json(body: &Bytes) -> Result<(), ApiError> {
    json_body::<serde_json::Map<String, serde_json::Value>>(body).map(|_| ())
}

/// The query parameters, repeated names kept.
pub(crate) fn query(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| ApiError::bad_format("bad query string"))
}

/// The last value of a query parameter.
pub(crate) fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `page` and `per_page` from the query (0 or absent: defaults; `per_page` clamped to 1000).
pub(crate) fn page(q: &[(String, String)]) -> Result<Page, ApiError> {
    let number = |name: &str| -> Result<usize, ApiError> {
        match param(q, name) {
            None | Some("") => Ok(0),
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_format(format!("{name} must be a non-negative integer"))
            }),
        }
    };
    Ok(Page::new(number("page")?, number("per_page")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_parses_from_the_query() {
        let q = vec![
            ("page".to_owned(), "2".to_owned()),
            ("per_page".to_owned(), "5000".to_owned()),
        ];
        assert_eq!(
            page(&q).ok(),
            Some(Page {
                page: 2,
                per_page: 1000
            })
        );
        let bad = vec![("page".to_owned(), "x".to_owned())];
        assert!(page(&bad).is_err());
    }

    #[test]
    fn delete_bodies_are_optional_json() {
        assert!(optional_json(&Bytes::new()).is_ok());
        assert!(optional_json(&Bytes::from_static(b"{\"user_app_id\":{}}")).is_ok());
        assert!(optional_json(&Bytes::from_static(b"{nope")).is_err());
    }
}
