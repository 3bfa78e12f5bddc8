//! `POST /v1/tenants/{tenant_id}/reconcile`: body and report.

use provisioner_core::service::{
    OrphanApp, OrphanKey, ReconcileReport, ScopeDrift, UnmanagedApp, UnmarkedKey, UserRef,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What to do: report only (default), or repair too.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileIn {
    /// Repair what is found (delete orphans and the unmarked keys of managed apps, re-create
    /// what is missing, replace drifted keys). Needs `provisioner:admin`.
    #[serde(default)]
    pub repair: bool,
}

/// An app carrying this service's marker for the tenant that no user records.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrphanAppOut {
    /// Upstream app id.
    pub app_id: String,
}

/// An app with the tenant's id prefix but without this service's marker: reported, never touched.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmanagedAppOut {
    /// Upstream app id.
    pub app_id: String,
}

/// A key carrying this service's marker on an active user's app that is neither its current
/// key nor its key in grace (the late effect of a create that got no answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrphanKeyOut {
    /// The app it was found on.
    pub app_id: String,
    /// First 8 hex of the SHA-256 of its secret (never the secret).
    pub key_fingerprint: String,
    /// Its upstream description.
    pub description: String,
    /// Always true: the key carries this service's marker (unmarked keys are in
    /// `unmarked_keys`); kept for clients of earlier versions.
    pub marked: bool,
}

/// A key without this service's marker on an active user's app: minted by the upstream with
/// the app, or added by hand. A repair deletes it when the app carries the tenant's marker.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmarkedKeyOut {
    /// The user whose app holds it.
    pub external_id: String,
    /// The app it was found on.
    pub app_id: String,
    /// First 8 hex of the SHA-256 of its secret (never the secret).
    pub key_fingerprint: String,
    /// Its upstream description.
    pub description: String,
    /// The scopes it holds upstream, sorted.
    pub scopes: Vec<String>,
    /// Other apps the key reaches as well: then it was not minted with this app, and a repair
    /// never deletes it.
    pub other_apps: Vec<String>,
    /// Whether the app carries this user's marker: only then does a repair delete the key.
    pub app_managed: bool,
}

/// A user whose app or key is missing upstream.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRefOut {
    /// The caller's id of the user.
    pub external_id: String,
    /// Its app id.
    pub app_id: String,
}

/// A key whose scopes upstream differ from the recorded ones.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeDriftOut {
    /// The caller's id of the user.
    pub external_id: String,
    /// Its app id.
    pub app_id: String,
    /// Recorded scopes.
    pub expected: Vec<String>,
    /// Scopes upstream.
    pub actual: Vec<String>,
}

/// What reconciliation found (and, with `repair`, fixed).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileOut {
    /// Apps with the tenant's marker that no user holding an app records.
    pub orphan_apps: Vec<OrphanAppOut>,
    /// Keys with this service's marker on active users' apps that no record holds.
    pub orphan_keys: Vec<OrphanKeyOut>,
    /// Keys without this service's marker on active users' apps (e.g. minted with the app).
    pub unmarked_keys: Vec<UnmarkedKeyOut>,
    /// Active users whose app is gone upstream.
    pub missing_apps: Vec<UserRefOut>,
    /// Active users whose key is gone upstream.
    pub missing_keys: Vec<UserRefOut>,
    /// Keys whose scopes drifted upstream.
    pub scope_drift: Vec<ScopeDriftOut>,
    /// Apps with the tenant's id prefix but without this service's marker (never touched).
    pub unmanaged_apps: Vec<UnmanagedAppOut>,
    /// True when a repair was asked for and every repair succeeded.
    pub repaired: bool,
    /// Repairs that failed or were skipped because their finding no longer held under the
    /// user's lease (retry the call).
    pub repair_errors: Vec<String>,
}

fn user_ref(u: UserRef) -> UserRefOut {
    UserRefOut {
        external_id: u.external_id.to_string(),
        app_id: u.app_id.to_string(),
    }
}

impl From<ReconcileReport> for ReconcileOut {
    fn from(r: ReconcileReport) -> Self {
        Self {
            orphan_apps: r
                .orphan_apps
                .into_iter()
                .map(|OrphanApp { app_id }| OrphanAppOut { app_id })
                .collect(),
            orphan_keys: r
                .orphan_keys
                .into_iter()
                .map(
                    |OrphanKey {
                         app_id,
                         key_fingerprint,
                         description,
                     }| OrphanKeyOut {
                        app_id,
                        key_fingerprint,
                        description,
                        marked: true,
                    },
                )
                .collect(),
            unmarked_keys: r
                .unmarked_keys
                .into_iter()
                .map(
                    |UnmarkedKey {
                         external_id,
                         app_id,
                         key_fingerprint,
                         description,
                         scopes,
                         other_apps,
                         app_managed,
                     }| UnmarkedKeyOut {
                        external_id: external_id.to_string(),
                        app_id: app_id.to_string(),
                        key_fingerprint,
                        description,
                        scopes,
                        other_apps,
                        app_managed,
                    },
                )
                .collect(),
            missing_apps: r.missing_apps.into_iter().map(user_ref).collect(),
            missing_keys: r.missing_keys.into_iter().map(user_ref).collect(),
            scope_drift: r
                .scope_drift
                .into_iter()
                .map(
                    |ScopeDrift {
                         external_id,
                         app_id,
                         expected,
                         actual,
                     }| ScopeDriftOut {
                        external_id: external_id.to_string(),
                        app_id: app_id.to_string(),
                        expected,
                        actual,
                    },
                )
                .collect(),
            unmanaged_apps: r
                .unmanaged_apps
                .into_iter()
                .map(|UnmanagedApp { app_id }| UnmanagedAppOut { app_id })
                .collect(),
            repaired: r.repaired,
            repair_errors: r.repair_errors,
        }
    }
}
