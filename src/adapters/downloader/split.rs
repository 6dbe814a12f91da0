//! How the torrent clients' combined limit is split among several clients, and when a
//! client's limit is worth a write (the step and `bandwidth.hysteresis_percent`). Pure: no
//! I/O.

/// Split `total` (bits/s) among clients by what each uploads now. A client sending at 90 %
/// of its limit or more counts for half again its limit, so one that has more to send can grow
/// its part from plan to plan; an idle one keeps at least an even part of a quarter of the
/// total. The parts add up to `total` (less rounding).
pub fn split(total: u64, clients: &[(u64, Option<u64>)]) -> Vec<u64> {
    let n = clients.len() as u64;
    if n <= 1 {
        return vec![total; clients.len()];
    }
    let floor = total / (4 * n);
    let rest = total - floor * n;
    let wants: Vec<u128> = clients
        .iter()
        .map(|&(rate, limit)| {
            let hungry = limit.is_none_or(|l| rate.saturating_mul(10) >= l.saturating_mul(9));
            let w = match limit {
                Some(l) if hungry => rate.max(l.saturating_add(l / 2)),
                _ => rate,
            };
            u128::from(w.max(1))
        })
        .collect();
    let sum: u128 = wants.iter().sum();
    wants
        .iter()
        .map(|w| floor + (u128::from(rest) * w / sum) as u64)
        .collect()
}

/// Whether a client whose limit in force is `current` (`None`: unlimited) and that sends
/// `rate` now gets `wanted`: always when it is unlimited; when the change is at least `step`
/// and at least `hysteresis_percent` of `current`; or when it is a lowering and the client
/// sends more than `wanted` right now (the streams first).
pub fn worth_writing(
    current: Option<u64>,
    wanted: u64,
    rate: u64,
    step: u64,
    hysteresis_percent: f64,
) -> bool {
    match current {
        None => true,
        Some(c) => {
            let band = ((c as f64 * hysteresis_percent / 100.0) as u64)
                .max(step)
                .max(1);
            c.abs_diff(wanted) >= band || (wanted < c && rate > wanted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    #[test]
    fn one_client_gets_all_of_it() {
        assert_eq!(split(40 * M, &[(3 * M, Some(10 * M))]), vec![40 * M]);
        assert!(split(40 * M, &[]).is_empty());
    }

    #[test]
    fn several_split_by_what_they_send_and_a_busy_one_can_grow() {
        // 60 Mbps: one sends 30 of its 50, the other nothing of 10.
        let parts = split(60 * M, &[(30 * M, Some(50 * M)), (0, Some(10 * M))]);
        assert!(parts.iter().sum::<u64>() >= 60 * M - 2, "{parts:?}");
        assert!(parts[0] > 50 * M && parts[1] >= 7_500_000, "{parts:?}");
        // The second starts to seed and fills its part: the next split gives it more.
        let next = split(
            60 * M,
            &[(30 * M, Some(parts[0])), (parts[1], Some(parts[1]))],
        );
        assert!(next[1] > parts[1], "{parts:?} -> {next:?}");
        assert!(next.iter().sum::<u64>() <= 60 * M);
    }

    #[test]
    fn a_write_is_worth_it_past_the_step_or_when_the_client_sends_too_much() {
        assert!(worth_writing(None, 10 * M, 0, M, 5.0));
        assert!(!worth_writing(Some(10 * M), 10 * M + M / 2, 0, M, 5.0));
        assert!(worth_writing(Some(10 * M), 11 * M, 0, M, 5.0));
        // Past the step but within 5 % of 60 Mbps: kept.
        assert!(!worth_writing(Some(60 * M), 62 * M, 0, M, 5.0));
        assert!(worth_writing(Some(60 * M), 64 * M, 0, M, 5.0));
        // A small lowering under what it sends now is written.
        assert!(worth_writing(Some(10 * M), 9_600_000, 9_900_000, M, 5.0));
        assert!(!worth_writing(Some(10 * M), 9_600_000, 2 * M, M, 5.0));
    }
}
