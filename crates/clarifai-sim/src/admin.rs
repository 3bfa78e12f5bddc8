//! Admin routes under `/_sim` (no auth, no faults): state, faults, stats, rate limit, and
//! whether new apps get a key of their own.

use actix_web::HttpResponse;
use actix_web::web::{self, Bytes, Data};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Faults;
use crate::keys::SimKey;
use crate::shared::{Shared, lock};
use crate::state::SimApp;

/// Registers the admin routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/_sim/state", web::get().to(state))
        .route("/_sim/faults", web::get().to(get_faults))
        .route("/_sim/faults", web::put().to(put_faults))
        .route("/_sim/stats", web::get().to(stats))
        .route("/_sim/rate_limit", web::put().to(put_rate_limit))
        .route("/_sim/auto_app_key", web::get().to(get_auto_app_key))
        .route("/_sim/auto_app_key", web::put().to(put_auto_app_key));
}

/// Every user's apps and keys (key ids included: this is a test tool; PATs are not shown).
pub(crate) fn state_json(shared: &Shared) -> Value {
    let state = shared.state();
    let users: Vec<Value> = state
        .user_ids()
        .into_iter()
        .map(|user| {
            let scopes: Vec<String> = state
                .accounts
                .values()
                .find(|a| a.user_id == user)
                .map(|a| a.scopes.clone())
                .unwrap_or_default();
            let apps: Vec<Value> = state
                .apps
                .get(&user)
                .map(|m| m.values().map(SimApp::to_json).collect())
                .unwrap_or_default();
            let keys: Vec<Value> = state
                .keys_where(&user, |_| true)
                .iter()
                .map(SimKey::to_json)
                .collect();
            json!({"user_id": user, "scopes": scopes, "apps": apps, "keys": keys})
        })
        .collect();
    json!({ "accounts": users })
}

async fn state(shared: Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(state_json(&shared))
}

async fn get_faults(shared: Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(lock(&shared.faults).faults())
}

fn bad_request(e: &serde_json::Error) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": e.to_string()}))
}

async fn put_faults(shared: Data<Shared>, body: Bytes) -> HttpResponse {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            lock(&shared.faults).set(faults.clone());
            HttpResponse::Ok().json(faults)
        }
        Err(e) => bad_request(&e),
    }
}

async fn stats(shared: Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "requests": shared.request_count(),
        "faults": shared.fault_counts(),
        "rate_limit_per_sec": lock(&shared.limiter).limit(),
        "auto_app_key": shared.state().auto_app_key,
    }))
}

#[derive(Deserialize)]
struct RateLimitIn {
    per_sec: Option<u32>,
}

async fn put_rate_limit(shared: Data<Shared>, body: Bytes) -> HttpResponse {
    match serde_json::from_slice::<RateLimitIn>(&body) {
        Ok(r) => {
            lock(&shared.limiter).set(r.per_sec);
            HttpResponse::Ok().json(json!({ "rate_limit_per_sec": lock(&shared.limiter).limit() }))
        }
        Err(e) => bad_request(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoAppKeyIn {
    enabled: bool,
}

async fn get_auto_app_key(shared: Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "enabled": shared.state().auto_app_key }))
}

async fn put_auto_app_key(shared: Data<Shared>, body: Bytes) -> HttpResponse {
    match serde_json::from_slice::<AutoAppKeyIn>(&body) {
        Ok(r) => {
            shared.state().auto_app_key = r.enabled;
            HttpResponse::Ok().json(json!({ "enabled": r.enabled }))
        }
        Err(e) => bad_request(&e),
    }
}
