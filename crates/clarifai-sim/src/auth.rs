//! Authentication: `Authorization: Key <token>`, resolved to a PAT or an app-specific key.
//!
//! - Missing or malformed header (not exactly `Key`, one space, a token): 401, 11102.
//! - Unknown token: 401, 11009.
//! - A PAT acts for its own user id or `me`; another user id: 404, 11101 (docs/upstream.md, "Authentication").
//! - App keys are refused on PAT-only routes: 403, 11007.
//! - The per-account rate limit is applied here, once the account is known.

use std::time::Instant;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;

use crate::errors::ApiError;
use crate::shared::{Shared, lock};

/// Who is calling.
#[derive(Clone, Debug)]
pub(crate) enum Principal {
    /// A personal access token of an account.
    Pat {
        user_id: String,
        scopes: Vec<String>,
    },
    /// An app-specific key created in the simulator.
    AppKey {
        user_id: String,
        app_id: String,
        scopes: Vec<String>,
        endpoints: Vec<String>,
    },
}

impl Principal {
    /// The account the caller belongs to.
    pub(crate) fn user_id(&self) -> &str {
        match self {
            Self::Pat { user_id, .. } | Self::AppKey { user_id, .. } => user_id,
        }
    }

    /// For PAT-only routes: the user id the path names, resolved (`me` included).
    pub(crate) fn pat_for(&self, uid: &str) -> Result<String, ApiError> {
        match self {
            Self::Pat { user_id, .. } => resolve_uid(user_id, uid),
            Self::AppKey { .. } => Err(ApiError::insufficient_scopes(
                "this route needs a personal access token; app-specific keys cannot use it",
            )),
        }
    }
}

/// `uid` if the caller `owner` may act for it (`me` means the owner), else 404 11101.
pub(crate) fn resolve_uid(owner: &str, uid: &str) -> Result<String, ApiError> {
    if uid == "me" || uid == owner {
        Ok(owner.to_owned())
    } else {
        Err(ApiError::not_found(format!("user '{uid}' not found")))
    }
}

/// The token of a well-formed `Authorization: Key <token>` header.
pub(crate) fn bearer_key(req: &HttpRequest) -> Result<String, ApiError> {
    let mut values = req.headers().get_all(AUTHORIZATION);
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::malformed_auth());
    };
    let text = value.to_str().map_err(|_| ApiError::malformed_auth())?;
    match text.strip_prefix("Key ") {
        Some(token) if !token.is_empty() && !token.contains(char::is_whitespace) => {
            Ok(token.to_owned())
        }
        _ => Err(ApiError::malformed_auth()),
    }
}

/// Authenticates the request and applies the account's rate limit.
pub(crate) fn authenticate(req: &HttpRequest, shared: &Shared) -> Result<Principal, ApiError> {
    let token = bearer_key(req)?;
    let principal = lookup(shared, &token).ok_or_else(ApiError::key_not_found)?;
    let verdict = lock(&shared.limiter).check(principal.user_id(), Instant::now());
    if let Err(limit) = verdict {
        shared.count(|c| &mut c.rate_limited);
        return Err(ApiError::throttled(limit, shared.throttle_code_as_name()));
    }
    Ok(principal)
}

fn lookup(shared: &Shared, token: &str) -> Option<Principal> {
    let state = shared.state();
    if let Some(a) = state.account_by_pat(token) {
        return Some(Principal::Pat {
            user_id: a.user_id.clone(),
            scopes: a.scopes.clone(),
        });
    }
    let key = state.key_by_secret(token)?;
    Some(Principal::AppKey {
        user_id: key.user_id.clone(),
        app_id: key.app_ids.first().cloned().unwrap_or_default(),
        scopes: key.scopes.clone(),
        endpoints: key.endpoints.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn with_auth(value: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header((AUTHORIZATION, value))
            .to_http_request()
    }

    #[test]
    fn only_the_exact_key_form_is_accepted() {
        assert_eq!(
            bearer_key(&with_auth("Key abc")).ok().as_deref(),
            Some("abc")
        );
        for bad in [
            "key abc",
            "Key  abc",
            "Key ",
            "Bearer abc",
            "Key a b",
            "Keyabc",
        ] {
            assert!(bearer_key(&with_auth(bad)).is_err(), "{bad}");
        }
        assert!(bearer_key(&TestRequest::default().to_http_request()).is_err());
    }

    #[test]
    fn me_and_own_id_resolve_other_ids_do_not() {
        assert_eq!(resolve_uid("u1", "me").ok().as_deref(), Some("u1"));
        assert_eq!(resolve_uid("u1", "u1").ok().as_deref(), Some("u1"));
        let err = resolve_uid("u1", "u2").expect_err("other user");
        assert_eq!(err.http.as_u16(), 404);
    }
}
