//! The write of one decision, as the daemon's writer and `reconcile --once` both do it: read the
//! user again, record the original and the intent in the ledger (synced to disk), post the
//! policy with only `RemoteClientBitrateLimit` changed; and the `SetMaxStreamingBitrate` pushes
//! that follow once the limit is in place.

use std::sync::Mutex;

use tracing::{info, warn};

use crate::jellyfin::Client;
use crate::ledger::{Ledger, Observed};
use crate::plan::{Decision, Push, Role, StreamRef, fmt_mbps};
use crate::sync::lock;

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

/// Write one decision: read the user again, record the original and the intent in the ledger
/// (synced to disk), then post the policy with only `RemoteClientBitrateLimit` changed.
pub async fn apply(client: &Client, ledger: &Mutex<Ledger>, d: &Decision) -> WriteOutcome {
    let user = match client.user(&d.user_id).await {
        Ok(u) => u,
        Err(e) => return failed(d, e.to_string()),
    };
    let current = user.remote_limit();
    if current == d.target {
        return WriteOutcome::AlreadySet;
    }
    {
        let mut l = lock(ledger);
        // The value may have moved since the snapshot because one of our own earlier writes
        // landed meanwhile; the decision still stands then. Only a change by hand (which also
        // moves the user's ceiling) makes it stale.
        if current != d.current
            && let Observed::HandChanged { .. } = l.observe(&d.user_id, &d.user_name, current)
        {
            if let Err(e) = l.save() {
                return failed(d, e.to_string());
            }
            return WriteOutcome::Skipped(format!(
                "the limit was changed by hand to {current} since the snapshot; the next pass \
                 decides with it as the new original"
            ));
        }
        l.record_intent(&d.user_id, &d.user_name, current, d.target);
        if let Err(e) = l.save() {
            return failed(
                d,
                format!("not written, the ledger could not be saved: {e}"),
            );
        }
    }
    match client.write_remote_limit(&user, d.target).await {
        Ok(()) => {
            info!(
                user = %d.user_name,
                old = current,
                new = d.target,
                reason = %d.reason,
                "limit written"
            );
            if d.role == Role::Release {
                let mut l = lock(ledger);
                l.forget(&d.user_id);
                if let Err(e) = l.save() {
                    warn!("{e}");
                }
            }
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
pub async fn push(client: &Client, d: &Decision, s: &StreamRef, p: Push) -> Result<(), String> {
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
