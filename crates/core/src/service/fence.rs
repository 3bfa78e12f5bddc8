//! Leases and fencing (docs/design.md, "Leases and fencing").
//!
//! A lease is short and its holder renews it with a compare-and-swap on (owner, generation)
//! before every upstream call, then every `lease_ttl / 3` while the call is in flight (the
//! heartbeat). The call, its rate-limit wait included, is dropped as soon as a renewal is
//! refused (another holder took over) or the holder's own view of the expiry passes without a
//! successful renewal (the database is unreachable): no call leaves after its lease could have
//! lapsed, and a stale holder never calls again.
//!
//! Clocks: the expiry written is the holder's `now + lease_ttl`; a taker treats a lease as
//! expired only once `now - max_clock_skew` has passed it, and the holder measures its own
//! deadline on a monotonic clock from just before the renewal. So with replicas' clocks within
//! `max_clock_skew` of each other, a taker never starts while the holder may still call.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::UpstreamError;
use crate::model::{Timestamp, User};

use super::Provisioner;
use super::steps::Run;

/// Why a fenced call did not run to its end.
#[derive(Debug)]
pub(super) enum Fenced {
    /// The lease is no longer ours (renewal refused) or could have lapsed.
    LeaseLost,
}

impl Provisioner {
    /// The instant before which a taker must treat any lease as live: now minus the tolerated
    /// clock skew.
    pub(super) fn lease_horizon(&self) -> Timestamp {
        self.clock.now()
            - chrono::Duration::from_std(self.config.max_clock_skew)
                .unwrap_or(chrono::Duration::seconds(1))
    }

    /// Compare-and-swap renewal of `owner`'s lease on `user`'s row.
    async fn renew(&self, owner: &str, user: &User) -> Renewal {
        let started = Instant::now();
        let expires_at = self.clock.now() + self.lease_ttl();
        match self
            .store
            .renew_lease(
                &user.tenant_id,
                &user.external_id,
                owner,
                user.generation,
                expires_at,
            )
            .await
        {
            Ok(true) => Renewal::Until(started + self.config.lease_ttl),
            Ok(false) => Renewal::Refused,
            Err(e) => {
                tracing::warn!(tenant.id = %user.tenant_id, error.message = %e, "lease renewal failed");
                Renewal::Unknown
            }
        }
    }

    /// Runs one upstream call under the run's lease (see the module documentation).
    /// `Err(Fenced::LeaseLost)` means the call may or may not have been sent: treat it as
    /// ambiguous, and do not write the row (it is no longer ours).
    pub(super) async fn fenced<T>(
        &self,
        run: &Run<'_>,
        user: &User,
        call: impl Future<Output = Result<T, UpstreamError>>,
    ) -> Result<Result<T, UpstreamError>, Fenced> {
        self.fenced_as(&run.owner, user, call).await
    }

    /// [`Provisioner::fenced`] for a holder that has no [`Run`] (a repair holding a user's
    /// lease on its own).
    pub(super) async fn fenced_as<T>(
        &self,
        owner: &str,
        user: &User,
        call: impl Future<Output = Result<T, UpstreamError>>,
    ) -> Result<Result<T, UpstreamError>, Fenced> {
        let Renewal::Until(mut deadline) = self.renew(owner, user).await else {
            return Err(Fenced::LeaseLost);
        };
        let beat = heartbeat(self.config.lease_ttl);
        tokio::pin!(call);
        loop {
            let next_beat = (Instant::now() + beat).min(deadline);
            tokio::select! {
                // The deadline first: a holder that was paused past its lease (a stalled
                // process, a stopped VM) gives up before its call is polled again, so the call
                // cannot leave after the lease could have lapsed, even if it became ready to
                // send during the pause.
                biased;
                () = tokio::time::sleep_until(deadline) => return Err(Fenced::LeaseLost),
                out = &mut call => return Ok(out),
                () = tokio::time::sleep_until(next_beat) => {
                    match self.renew(owner, user).await {
                        Renewal::Until(d) => deadline = d,
                        Renewal::Refused => return Err(Fenced::LeaseLost),
                        // The store did not answer: try again at the next beat, until the
                        // deadline.
                        Renewal::Unknown => {}
                    }
                }
            }
        }
    }
}

/// The answer to a renewal.
enum Renewal {
    /// Renewed: the holder may act until this instant (monotonic).
    Until(Instant),
    /// Someone else holds the row now.
    Refused,
    /// The store failed; the lease may or may not still be ours.
    Unknown,
}

/// How often a holder renews its lease while a call is in flight.
fn heartbeat(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(10))
}
