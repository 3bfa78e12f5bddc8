//! SCIM 2.0 (RFC 7643, RFC 7644) for identity providers (Okta, Entra ID): the protocol layer
//! over core's SCIM use cases ([`provisioner_core::service::Provisioner::scim_create_user`]
//! and its siblings). Mounted at `/scim/v2/{tenant_id}` beside `/v1`, with its own
//! authentication (a tenant's SCIM token, [`auth`]), its own error format ([`error`]) and bodies
//! that ignore unknown attributes ([`resource`]). The tenant's settings and tokens are
//! administered on `/v1` (`routes::scim_admin`).

pub mod auth;
pub mod body;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod patch;
pub mod projection;
pub mod resource;
pub mod routes;

pub use auth::ScimCaller;
pub use error::{SCIM_JSON, ScimError, ScimType};
pub use routes::configure;
