//! Time helpers: unix seconds, and the one exponential backoff the daemon uses (for reads of
//! Jellyfin that fail and for policy writes that fail).

use std::time::{Duration, SystemTime};

/// Seconds since the Unix epoch (0 for a time before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now (the ledger's times for writes in flight, which
/// outlive the process).
pub fn unix_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wait before try number `attempt` after `attempt` failures (1 = after the first):
/// `base`, then doubling, at most `max`. With `jitter`, up to ±20 % around it (still at most
/// `max`), so several daemons (or restarts) do not retry in lockstep.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: bool) -> Duration {
    let wait = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    if !jitter {
        return wait;
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = (nanos % 401) as f64 / 1000.0 - 0.2; // -0.2 ..= +0.2
    wait.mul_f64(1.0 + spread).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(backoff(1, base, max, false), Duration::from_millis(500));
        assert_eq!(backoff(2, base, max, false), Duration::from_secs(1));
        assert_eq!(backoff(4, base, max, false), Duration::from_secs(4));
        assert_eq!(backoff(30, base, max, false), max);
    }

    #[test]
    fn jittered_backoff_stays_within_a_fifth_and_the_cap() {
        let max = Duration::from_secs(30);
        for f in 1..40 {
            let d = backoff(f, Duration::from_secs(1), max, true);
            assert!(d <= max);
            assert!(d >= Duration::from_millis(800).min(max));
        }
        assert!(backoff(1, Duration::from_secs(1), max, true) <= Duration::from_millis(1200));
    }

    #[test]
    fn unix_seconds_of_the_epoch_and_before() {
        assert_eq!(unix_seconds(SystemTime::UNIX_EPOCH), 0);
        assert_eq!(
            unix_seconds(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            0
        );
        assert_eq!(
            unix_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(90)),
            90
        );
    }
}
