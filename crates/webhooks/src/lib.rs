//! Signed webhooks per Standard Webhooks 1.0 (docs/webhooks.md).
//!
//! - [`sign`]: `v1` signatures (HMAC-SHA256 over `{id}.{timestamp}.{body}`) and `whsec_`
//!   endpoint secrets.
//! - [`target`]: which endpoint URLs may be called (HTTPS only, no loopback, private or other
//!   non-public address, unless the deployment allows them).
//! - [`sender`]: [`HttpWebhookSender`], core's [`provisioner_core::ports::WebhookSender`] over
//!   reqwest: one attempt, no redirects, a timeout, host names checked at connect time.

pub mod sender;
pub mod sign;
pub mod target;

pub use sender::{BuildError, HttpWebhookSender, SenderConfig};
pub use sign::{SecretError, new_secret, parse_secret, signature_header};
pub use target::{check_url, is_non_public};
