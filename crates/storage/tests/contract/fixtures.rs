//! Builders of valid domain values for the contract cases.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use provisioner_core::app_id::derive_app_id;
use provisioner_core::ids::{ExternalId, ProfileName, TenantId, UpstreamUserId};
use provisioner_core::model::{
    AppDefaults, AuditEvent, AutoKeyCheck, Lease, ScopeProfile, Step, Tenant, TenantStatus,
    Timestamp, UpstreamRateLimit, User, UserStatus,
};
use provisioner_core::scope::ScopeSet;

/// Now, truncated to the millisecond the store keeps.
pub fn now() -> Timestamp {
    ms(Utc::now().timestamp_millis())
}

/// A timestamp from unix milliseconds.
pub fn ms(v: i64) -> Timestamp {
    DateTime::from_timestamp_millis(v).expect("timestamp in range")
}

/// `t` plus `secs` seconds.
pub fn plus(t: Timestamp, secs: i64) -> Timestamp {
    t + Duration::seconds(secs)
}

pub fn tid(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid tenant id")
}

pub fn xid(s: &str) -> ExternalId {
    ExternalId::parse(s).expect("valid external id")
}

pub fn pname(s: &str) -> ProfileName {
    ProfileName::parse(s).expect("valid profile name")
}

pub fn scopes(names: &[&str]) -> ScopeSet {
    ScopeSet::parse(names).expect("valid scopes")
}

/// An active tenant with a sealed PAT stand-in.
pub fn tenant(id: &str) -> Tenant {
    let at = now();
    Tenant {
        id: tid(id),
        display_name: format!("Tenant {id}"),
        status: TenantStatus::Active,
        base_url: "https://api.clarifai.com".into(),
        upstream_user_id: UpstreamUserId::parse("acme-ml").expect("valid user id"),
        pat_sealed: vec![0, 1, 2, 250, 255],
        pat_fingerprint: "ab".repeat(32),
        app_defaults: AppDefaults {
            id_prefix: format!("{id}-"),
            default_workflow: "Empty".into(),
            description: "Provisioned for {external_id}".into(),
        },
        rate_limit: UpstreamRateLimit::default(),
        allowed_scopes: scopes(&["Predict", "Inputs:Get", "Inputs:Add"]),
        default_scope_profile: Some(pname("standard")),
        auto_key_check: AutoKeyCheck::Learn,
        created_at: at,
        updated_at: at,
        version: 1,
    }
}

pub fn profile(tenant: &str, name: &str, names: &[&str]) -> ScopeProfile {
    let at = now();
    ScopeProfile {
        tenant_id: tid(tenant),
        name: pname(name),
        scopes: scopes(names),
        max_key_age_secs: None,
        rotation_grace_secs: 0,
        created_at: at,
        updated_at: at,
    }
}

/// A user being provisioned, leased by `owner` for a minute.
pub fn user(tenant: &str, external: &str, owner: &str) -> User {
    let at = now();
    let (t, x) = (tid(tenant), xid(external));
    User {
        app_id: derive_app_id(&format!("{tenant}-"), &t, &x),
        tenant_id: t,
        external_id: x,
        status: UserStatus::Provisioning,
        step: Step::CreateApp,
        generation: 1,
        scopes: scopes(&["Predict"]),
        profile: None,
        key: None,
        retired_key: None,
        display_name: None,
        metadata: BTreeMap::new(),
        lease: Some(Lease {
            owner: owner.into(),
            expires_at: plus(at, 60),
        }),
        last_error: None,
        attempts: 0,
        next_attempt_at: None,
        rotation_grace_secs: 0,
        secret_pending: false,
        version: 0,
        created_at: at,
        updated_at: at,
    }
}

/// A success event about `target` of `tenant`, with a fresh UUID v7 id.
pub fn event(tenant: Option<&str>, action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        at: now(),
        actor: "admin@example.com".into(),
        tenant_id: tenant.map(tid),
        action: action.into(),
        target: target.into(),
        outcome: "success".into(),
        request_id: Some("req-1".into()),
        events: Vec::new(),
    }
}

/// Compares every field (Tenant does not implement PartialEq: it holds a sealed secret).
pub fn assert_same_tenant(a: &Tenant, b: &Tenant) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.display_name, b.display_name);
    assert_eq!(a.status, b.status);
    assert_eq!(a.base_url, b.base_url);
    assert_eq!(a.upstream_user_id, b.upstream_user_id);
    assert_eq!(a.pat_sealed, b.pat_sealed);
    assert_eq!(a.pat_fingerprint, b.pat_fingerprint);
    assert_eq!(a.app_defaults, b.app_defaults);
    assert_eq!(a.rate_limit, b.rate_limit);
    assert_eq!(a.allowed_scopes, b.allowed_scopes);
    assert_eq!(a.default_scope_profile, b.default_scope_profile);
    assert_eq!(a.auto_key_check, b.auto_key_check);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}
