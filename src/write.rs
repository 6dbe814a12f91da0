//! Applying a plan, as the daemon's writer and `reconcile --once` both do it, through one
//! [`Applier`]: decisions in their order (active streamers, then idle users, then users
//! released), policy writes under the rate limit (`daemon.max_writes_per_second`), each write
//! read-modify-write (read the user again, record the original and the intent in the ledger,
//! synced to disk, post the policy with only `RemoteClientBitrateLimit` changed), and the
//! `SetMaxStreamingBitrate` pushes once the limit is in place. What differs is what happens
//! to a write that failed: the writer retries it from the latest plan after [`retry_delay`],
//! a pass reports it.
//!
//! A write Jellyfin did not answer may still be applied later: it stays in flight in the
//! ledger until its [`landing_window`] is over, so no user leaves the ledger while a write of
//! ours could still overwrite the original.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tracing::{info, warn};

use crate::adapters::jellyfin::JellyfinError;
use crate::adapters::jellyfin::fleet::Fleet;
use crate::adapters::ledger::{LedgerHandle, Observed};
use crate::clock::unix_millis_now;
use crate::core::plan::{Decision, Push, Role, StreamRef};
use crate::core::rate::fmt_mbps;

/// How one write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The new limit was posted.
    Written,
    /// Jellyfin already held the target when we looked again.
    AlreadySet,
    /// Not written, on purpose (the value changed since the snapshot); the next pass decides.
    Skipped(String),
    /// The request failed; the ledger still knows the original.
    Failed(String),
}

/// What applying one decision did.
#[derive(Debug)]
pub struct Applied {
    /// The write, when the decision needed one.
    pub write: Option<WriteOutcome>,
    /// Each push sent (only once the limit is in place), with how it went.
    pub pushes: Vec<(StreamRef, Push, Result<(), String>)>,
}

impl WriteOutcome {
    /// The limit is in place: written now, or found set.
    pub fn landed(&self) -> bool {
        matches!(self, WriteOutcome::Written | WriteOutcome::AlreadySet)
    }
}

/// Applies decisions to the servers: the rate limit of the writes, each write, then its pushes.
pub struct Applier {
    client: Fleet,
    ledger: LedgerHandle,
    limiter: DefaultDirectRateLimiter,
}

impl Applier {
    /// At most `max_writes_per_second` policy writes a second.
    pub fn new(client: Fleet, ledger: LedgerHandle, max_writes_per_second: u32) -> Applier {
        Applier {
            client,
            ledger,
            limiter: RateLimiter::direct(Quota::per_second(
                NonZeroU32::new(max_writes_per_second).unwrap_or(NonZeroU32::MIN),
            )),
        }
    }

    /// The order decisions are applied in: active streamers first (their next item is what
    /// the budget is for), then idle users, then users released.
    pub fn rank(d: &Decision) -> u8 {
        match d.role {
            Role::Active { .. } => 0,
            Role::Idle => 1,
            Role::Release => 2,
        }
    }

    /// `decisions` in the order they are applied ([`Applier::rank`], then by user).
    pub fn in_order(decisions: &mut [Decision]) {
        decisions.sort_by(|a, b| (Self::rank(a), &a.user_id).cmp(&(Self::rank(b), &b.user_id)));
    }

    /// Wait until a write may go out under the rate limit.
    pub async fn ready(&self) {
        self.limiter.until_ready().await
    }

    /// Apply one decision ([`Applier::ready`] first when it needs a write): its write, then,
    /// when its limit is in place, its pushes (a pushed stream re-negotiates under the user's
    /// limit, so never before). `stop` gives up before the write is sent, and between pushes;
    /// a write on its way is never given up. `hand_changed` hears of a limit found changed by
    /// hand in the read before the write.
    pub async fn apply(
        &self,
        d: &Decision,
        stop: impl std::future::Future<Output = ()>,
        hand_changed: impl FnOnce(i64, i64),
    ) -> Applied {
        let stop = std::pin::pin!(stop);
        let mut stop = futures_util::FutureExt::fuse(stop);
        let write = if d.needs_write() {
            Some(apply_observed(&self.client, &self.ledger, d, &mut stop, hand_changed).await)
        } else {
            None
        };
        let mut pushes = Vec::new();
        // Only pushes: the limit is in place already.
        if write.as_ref().is_none_or(WriteOutcome::landed) {
            for (s, p) in d.pushes() {
                let sent = tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    r = push(&self.client, d, s, p) => r,
                };
                pushes.push((s.clone(), p, sent));
            }
        }
        Applied { write, pushes }
    }
}

/// Backoff before retry number `attempts` (1 = first retry) of a failed write: 0.5 s, 1 s,
/// 2 s, … up to 60 s.
pub fn retry_delay(attempts: u32) -> Duration {
    crate::clock::backoff(
        attempts,
        Duration::from_millis(500),
        Duration::from_secs(60),
        false,
    )
}

/// How long after it was sent an unanswered write may still be applied by Jellyfin: twice the
/// longest timeout of the servers' clients. The client gives up after one timeout; Jellyfin handles a request whose
/// client has gone until it is done, so a write is given as long again to land.
pub fn landing_window(client: &Fleet) -> Duration {
    client.timeout().saturating_mul(2)
}

/// The time (Unix ms) until which a write sent now may land.
pub fn landing_deadline(client: &Fleet) -> u64 {
    unix_millis_now().saturating_add(landing_window(client).as_millis() as u64)
}

/// Post `limit` for `user` (read just before) and settle the ledger's record of the write
/// (`ticket`) once Jellyfin has answered, whatever it answered; a write left unanswered stays
/// in flight until its time is over. Forgets the user afterwards when `forget` and the write
/// succeeded (and no other write of ours may still land).
async fn post_and_settle(
    client: &Fleet,
    ledger: &LedgerHandle,
    user: &crate::adapters::jellyfin::User,
    limit: i64,
    ticket: crate::adapters::ledger::Ticket,
    forget: bool,
) -> Result<(), JellyfinError> {
    let result = client.write_remote_limit(user, limit).await;
    let answered = result.as_ref().err().is_none_or(|e| !e.may_still_land());
    if answered {
        let ((), saved) = ledger.change_and_save(|l| {
            let now = unix_millis_now();
            l.settle(&user.id, ticket, now);
            if forget && result.is_ok() {
                l.forget(&user.id, now);
            }
        });
        // Not fatal: a write left in flight in the file only makes a later restore wait.
        if let Err(e) = saved {
            warn!("{e}");
        }
    }
    result
}

/// Write one decision: read the user again, record the original and the intent in the ledger
/// (synced to disk), then post the policy with only `RemoteClientBitrateLimit` changed.
pub async fn apply(client: &Fleet, ledger: &LedgerHandle, d: &Decision) -> WriteOutcome {
    apply_unless(client, ledger, d, std::future::pending()).await
}

/// [`apply`], given up while the user is read when `stop` completes first: nothing has been
/// sent then. Once the policy is on its way it is never given up (a write cut off in flight
/// may still be applied, and the restore would have to wait for it).
pub async fn apply_unless(
    client: &Fleet,
    ledger: &LedgerHandle,
    d: &Decision,
    stop: impl std::future::Future<Output = ()>,
) -> WriteOutcome {
    apply_observed(client, ledger, d, stop, |_, _| {}).await
}

/// [`apply_unless`], telling `hand_changed` (old original, new original) when the read just
/// before the write finds the limit changed by hand: the daemon's plans between polls do not
/// read the users, so this read may be the first to see it.
pub async fn apply_observed(
    client: &Fleet,
    ledger: &LedgerHandle,
    d: &Decision,
    stop: impl std::future::Future<Output = ()>,
    hand_changed: impl FnOnce(i64, i64),
) -> WriteOutcome {
    let user = tokio::select! {
        biased;
        _ = stop => return WriteOutcome::Skipped("stopping".into()),
        read = client.user(&d.user_id) => match read {
            Ok(u) => u,
            Err(e) => return failed(d, e.to_string()),
        },
    };
    let current = user.remote_limit();
    if current == d.target {
        return WriteOutcome::AlreadySet;
    }
    // The value may have moved since the snapshot because one of our own earlier writes
    // landed meanwhile; the decision still stands then. Only a change by hand (which also moves
    // the user's ceiling) makes it stale.
    let step = ledger.change(|l| {
        if current != d.current
            && let Observed::HandChanged { old_original } =
                l.observe(&d.user_id, &d.user_name, current)
        {
            return Err((old_original, l.save()));
        }
        let ticket = l.record_intent(
            &d.user_id,
            &d.user_name,
            current,
            d.target,
            landing_deadline(client),
        );
        Ok((ticket, l.save()))
    });
    let ticket = match step {
        Err((_, Err(e))) => return failed(d, e.to_string()),
        Err((old_original, Ok(()))) => {
            hand_changed(old_original, current);
            return WriteOutcome::Skipped(format!(
                "the limit was changed by hand to {current} since the snapshot; the next pass \
                 decides with it as the new original"
            ));
        }
        Ok((_, Err(e))) => {
            return failed(
                d,
                format!("not written, the ledger could not be saved: {e}"),
            );
        }
        Ok((ticket, Ok(()))) => ticket,
    };
    let release = d.role == Role::Release;
    match post_and_settle(client, ledger, &user, d.target, ticket, release).await {
        Ok(()) => {
            info!(
                user = %d.user_name,
                old = current,
                new = d.target,
                reason = %d.reason,
                "limit written"
            );
            WriteOutcome::Written
        }
        Err(e) => failed(d, e.to_string()),
    }
}

fn failed(d: &Decision, message: String) -> WriteOutcome {
    warn!(user = %d.user_name, "write failed: {message}");
    WriteOutcome::Failed(message)
}

/// Send one `SetMaxStreamingBitrate` and log it.
pub async fn push(client: &Fleet, d: &Decision, s: &StreamRef, p: Push) -> Result<(), String> {
    let direction = p.direction.label();
    match client
        .set_max_streaming_bitrate(&s.session_id, p.bitrate)
        .await
    {
        Ok(()) => {
            info!(
                user = %d.user_name,
                session = %s.session_id,
                direction,
                bitrate = %fmt_mbps(p.bitrate),
                rate = %s.rate.map(fmt_mbps).unwrap_or_else(|| "unknown".into()),
                "pushed SetMaxStreamingBitrate"
            );
            Ok(())
        }
        Err(e) => {
            warn!(
                user = %d.user_name,
                session = %s.session_id,
                direction,
                "push failed: {e}"
            );
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_half_a_second_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(4), Duration::from_secs(4));
        assert_eq!(retry_delay(30), Duration::from_secs(60));
    }
}
