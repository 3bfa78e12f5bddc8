//! In-memory implementations of the ports, for tests of core and of the API layer.
//!
//! `MemStore` keeps the same rules as the SQL stores (uniqueness, leases, audit in the same
//! "transaction"); `FakeUpstream` behaves like the Clarifai account (apps, keys, "not found",
//! "already exists") and can inject failures and crashes at a chosen call.

use std::sync::{Arc, Mutex};

use chrono::TimeZone as _;

use crate::model::Timestamp;
use crate::ports::Clock;
use crate::secret::{AesGcmSealer, MasterKey, Sealer};
use crate::service::{Provisioner, ServiceConfig};

mod jobs;
mod scim;
mod sender;
mod store;
mod upstream;
mod webhooks;

pub use sender::FakeSender;
pub use store::MemStore;
pub use upstream::{Call, FakeApp, FakeKey, FakeUpstream, Fault};

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct FakeClock(Mutex<Timestamp>);

impl FakeClock {
    /// Starts at 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self(Mutex::new(
            chrono::Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        ))
    }
    /// Moves time forward.
    pub fn advance(&self, d: chrono::Duration) {
        *lock(&self.0) += d;
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *lock(&self.0)
    }
}

/// A service over fresh in-memory ports.
pub struct TestService {
    /// The service.
    pub service: Provisioner,
    /// Its store.
    pub store: Arc<MemStore>,
    /// Its upstream.
    pub upstream: Arc<FakeUpstream>,
    /// Its clock.
    pub clock: Arc<FakeClock>,
    /// Its sealer.
    pub sealer: Arc<dyn Sealer>,
}

/// Builds a [`TestService`] with short waits.
pub fn service() -> TestService {
    service_with(
        Arc::new(MemStore::default()),
        Arc::new(FakeUpstream::default()),
        Arc::new(FakeClock::new()),
        Arc::new(AesGcmSealer::new(&MasterKey::generate())),
    )
}

/// Builds a [`TestService`] with short waits over the given ports: several services (say,
/// before and after a master key rotation) can share one store, upstream and clock.
pub fn service_with(
    store: Arc<MemStore>,
    upstream: Arc<FakeUpstream>,
    clock: Arc<FakeClock>,
    sealer: Arc<dyn Sealer>,
) -> TestService {
    service_with_config(store, upstream, clock, sealer, test_config())
}

/// The timing [`service`] uses: short waits.
pub fn test_config() -> ServiceConfig {
    ServiceConfig {
        lease_wait: std::time::Duration::from_secs(5),
        poll_interval: std::time::Duration::from_millis(2),
        ..ServiceConfig::default()
    }
}

/// [`service_with`] with the given timing.
pub fn service_with_config(
    store: Arc<MemStore>,
    upstream: Arc<FakeUpstream>,
    clock: Arc<FakeClock>,
    sealer: Arc<dyn Sealer>,
    config: ServiceConfig,
) -> TestService {
    let service = Provisioner::new(
        store.clone(),
        upstream.clone(),
        clock.clone(),
        sealer.clone(),
        config,
    );
    TestService {
        service,
        store,
        upstream,
        clock,
        sealer,
    }
}
