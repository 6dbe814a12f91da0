//! What the history says: per user hours streamed from outside, mean rate, the share of play
//! time at the full source bitrate, transcodes and pushes; time over budget per day; the
//! busiest hours of the week. [`query`] reads the rows, [`summarize`] (pure) adds them up.
//! `jellydemon stats` prints it, `/api/history?since=` serves it to the page.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{HistoryError, Store};

/// The longest period asked for.
pub const MAX_SPAN: std::time::Duration = std::time::Duration::from_secs(400 * 24 * 3600);

/// Two samples further apart than this leave a gap (the daemon was not running).
const MAX_SAMPLE_GAP_MS: u64 = 10 * 60 * 1000;

/// A play as [`query`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayRow {
    /// The user's name.
    pub user: String,
    /// Milliseconds played.
    pub played_ms: u64,
    /// Its mean rate.
    pub mean_rate_bps: Option<u64>,
    /// Milliseconds at its source rate.
    pub at_source_ms: u64,
    /// Transcoded at some point.
    pub transcoded: bool,
    /// Pushes it received.
    pub pushes: u32,
}

/// A link sample as [`query`] reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRow {
    /// Unix milliseconds.
    pub t_ms: u64,
    /// The budget.
    pub budget_bps: u64,
    /// What the remote streams carried.
    pub streaming_bps: u64,
    /// With `[transcoding] capacity`: more video transcodes than the server runs.
    pub beyond_capacity: Option<bool>,
}

/// One user's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserStats {
    /// The user (an alias when anonymizing).
    pub user: String,
    /// Items played from outside.
    pub plays: u32,
    /// Hours streamed from outside.
    pub hours: f64,
    /// Mean rate over those hours, bits/s.
    pub mean_rate_bps: Option<u64>,
    /// Share of that time at the full source bitrate, 0 to 1.
    pub at_source: Option<f64>,
    /// Items transcoded.
    pub transcodes: u32,
    /// Pushes received.
    pub pushes: u32,
}

/// One day's time over budget.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DayStats {
    /// Local date, `YYYY-MM-DD`.
    pub day: String,
    /// Minutes the remote streams carried more than the budget.
    pub over_budget_minutes: f64,
    /// Minutes covered by samples.
    pub covered_minutes: f64,
    /// Minutes with more video transcodes than `[transcoding] capacity` (`None`: no sample
    /// of the day knew a capacity).
    pub beyond_capacity_minutes: Option<f64>,
}

/// The busiest hours of the week.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HourStats {
    /// 0 = Monday.
    pub weekday: u8,
    /// Local hour, 0 to 23.
    pub hour: u8,
    /// Mean remote streaming in that hour, bits/s.
    pub mean_streaming_bps: u64,
}

/// Everything `stats` shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// From, unix milliseconds.
    pub since_ms: u64,
    /// Per user, the most hours first.
    pub users: Vec<UserStats>,
    /// Per local day, oldest first.
    pub days: Vec<DayStats>,
    /// Mean remote streaming by weekday (0 = Monday) and hour, bits/s; `None` where no
    /// sample fell.
    pub week: Vec<Vec<Option<u64>>>,
    /// The five busiest hours, busiest first.
    pub busiest: Vec<HourStats>,
}

/// Read the plays that ended and the samples taken since `since_ms` (one user's plays only
/// when `user` names one, in any case).
pub fn query(
    store: &Store,
    since_ms: u64,
    user: Option<&str>,
) -> Result<(Vec<PlayRow>, Vec<SampleRow>), HistoryError> {
    let err = |e| store.err(e);
    let mut plays = store
        .conn()
        .prepare_cached(
            "SELECT user, end_ms - start_ms, mean_rate_bps, at_source_ms, transcoded, pushes
             FROM plays WHERE remote = 1 AND end_ms >= ?1
               AND (?2 IS NULL OR lower(user) = lower(?2))",
        )
        .map_err(err)?;
    let plays: Vec<PlayRow> = plays
        .query_map(rusqlite::params![since_ms as i64, user], |r| {
            Ok(PlayRow {
                user: r.get(0)?,
                played_ms: r.get::<_, i64>(1)?.max(0) as u64,
                mean_rate_bps: r.get::<_, Option<i64>>(2)?.map(|b| b.max(0) as u64),
                at_source_ms: r.get::<_, i64>(3)?.max(0) as u64,
                transcoded: r.get(4)?,
                pushes: r.get(5)?,
            })
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut samples = store
        .conn()
        .prepare_cached(
            "SELECT t_ms, budget_bps, streaming_bps, beyond_capacity FROM samples
             WHERE t_ms >= ?1 ORDER BY t_ms",
        )
        .map_err(err)?;
    let samples: Vec<SampleRow> = samples
        .query_map([since_ms as i64], |r| {
            Ok(SampleRow {
                t_ms: r.get::<_, i64>(0)?.max(0) as u64,
                budget_bps: r.get::<_, i64>(1)?.max(0) as u64,
                streaming_bps: r.get::<_, i64>(2)?.max(0) as u64,
                beyond_capacity: r.get(3)?,
            })
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    Ok((plays, samples))
}

/// Add the rows up, days and hours in `tz`.
pub fn summarize(
    since_ms: u64,
    plays: &[PlayRow],
    samples: &[SampleRow],
    tz: &jiff::tz::TimeZone,
) -> Stats {
    #[derive(Default)]
    struct Acc {
        plays: u32,
        ms: u64,
        rate_ms: f64,
        rated_ms: u64,
        at_source_ms: u64,
        transcodes: u32,
        pushes: u32,
    }
    let mut by_user: BTreeMap<&str, Acc> = BTreeMap::new();
    for p in plays {
        let a = by_user.entry(&p.user).or_default();
        a.plays += 1;
        a.ms += p.played_ms;
        if let Some(r) = p.mean_rate_bps {
            a.rate_ms += r as f64 * p.played_ms as f64;
            a.rated_ms += p.played_ms;
        }
        a.at_source_ms += p.at_source_ms.min(p.played_ms);
        a.transcodes += u32::from(p.transcoded);
        a.pushes += p.pushes;
    }
    let mut users: Vec<UserStats> = by_user
        .into_iter()
        .map(|(user, a)| UserStats {
            user: crate::ids::UserName::new(user).to_string(),
            plays: a.plays,
            hours: a.ms as f64 / 3_600_000.0,
            mean_rate_bps: (a.rated_ms > 0).then(|| (a.rate_ms / a.rated_ms as f64) as u64),
            at_source: (a.ms > 0).then(|| a.at_source_ms as f64 / a.ms as f64),
            transcodes: a.transcodes,
            pushes: a.pushes,
        })
        .collect();
    users.sort_by(|a, b| b.hours.total_cmp(&a.hours).then(a.user.cmp(&b.user)));

    let mut days: BTreeMap<String, (f64, f64, Option<f64>)> = BTreeMap::new();
    let mut week = [[(0f64, 0f64); 24]; 7];
    for (i, a) in samples.iter().enumerate() {
        // A sample holds until the next one (the last one for no time).
        let dt = samples
            .get(i + 1)
            .map_or(0, |b| b.t_ms.saturating_sub(a.t_ms).min(MAX_SAMPLE_GAP_MS));
        let Ok(t) = jiff::Timestamp::from_millisecond(a.t_ms as i64) else {
            continue;
        };
        let local = tz.to_datetime(t);
        let day = days.entry(local.date().to_string()).or_default();
        let minutes = dt as f64 / 60_000.0;
        day.1 += minutes;
        if a.streaming_bps > a.budget_bps {
            day.0 += minutes;
        }
        if let Some(beyond) = a.beyond_capacity {
            *day.2.get_or_insert(0.0) += if beyond { minutes } else { 0.0 };
        }
        let wd = local.weekday().to_monday_zero_offset() as usize;
        let cell = &mut week[wd][local.hour() as usize];
        cell.0 += a.streaming_bps as f64 * dt as f64;
        cell.1 += dt as f64;
    }
    let week: Vec<Vec<Option<u64>>> = week
        .iter()
        .map(|hours| {
            hours
                .iter()
                .map(|(sum, ms)| (*ms > 0.0).then(|| (sum / ms) as u64))
                .collect()
        })
        .collect();
    let mut busiest: Vec<HourStats> = week
        .iter()
        .enumerate()
        .flat_map(|(d, hours)| {
            hours.iter().enumerate().filter_map(move |(h, m)| {
                m.filter(|m| *m > 0).map(|m| HourStats {
                    weekday: d as u8,
                    hour: h as u8,
                    mean_streaming_bps: m,
                })
            })
        })
        .collect();
    busiest.sort_by_key(|h| std::cmp::Reverse(h.mean_streaming_bps));
    busiest.truncate(5);
    Stats {
        since_ms,
        users,
        days: days
            .into_iter()
            .map(|(day, (over, covered, beyond))| DayStats {
                day,
                over_budget_minutes: over,
                covered_minutes: covered,
                beyond_capacity_minutes: beyond,
            })
            .collect(),
        week,
        busiest,
    }
}

/// The figures as a table for people.
pub fn render(s: &Stats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let since = jiff::Timestamp::from_millisecond(s.since_ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "Since {since}\n");
    if s.users.is_empty() {
        out.push_str("No remote play in this period.\n");
    } else {
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>8} {:>11} {:>10} {:>10} {:>7}",
            "user", "plays", "hours", "mean rate", "at source", "transcodes", "pushes"
        );
        for u in &s.users {
            let _ = writeln!(
                out,
                "{:<20} {:>6} {:>8.1} {:>11} {:>10} {:>10} {:>7}",
                crate::escape::escape_controls(&u.user),
                u.plays,
                u.hours,
                u.mean_rate_bps
                    .map(crate::core::rate::fmt_mbps)
                    .unwrap_or_else(|| "?".into()),
                u.at_source
                    .map(|a| format!("{:.0} %", a * 100.0))
                    .unwrap_or_else(|| "?".into()),
                u.transcodes,
                u.pushes
            );
        }
    }
    out.push('\n');
    if s.days.is_empty() {
        out.push_str("No link samples in this period.\n");
    } else {
        out.push_str("Time over budget per day:\n");
        for d in &s.days {
            let _ = write!(
                out,
                "  {}  {:>6.1} min of {:.0} min recorded",
                d.day, d.over_budget_minutes, d.covered_minutes
            );
            match d.beyond_capacity_minutes {
                Some(m) => {
                    let _ = writeln!(out, "; {m:.1} min beyond the transcode capacity");
                }
                None => out.push('\n'),
            }
        }
    }
    if !s.busiest.is_empty() {
        out.push_str("\nBusiest hours of the week (mean remote streaming):\n");
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        for h in &s.busiest {
            let _ = writeln!(
                out,
                "  {} {:02}:00-{:02}:00  {}",
                DAYS[h.weekday as usize % 7],
                h.hour,
                (h.hour + 1) % 24,
                crate::core::rate::fmt_mbps(h.mean_streaming_bps)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(user: &str, hours: u64, rate: u64, at_source_h: u64, transcoded: bool) -> PlayRow {
        PlayRow {
            user: user.into(),
            played_ms: hours * 3_600_000,
            mean_rate_bps: Some(rate),
            at_source_ms: at_source_h * 3_600_000,
            transcoded,
            pushes: 2,
        }
    }

    #[test]
    fn users_days_and_hours_add_up() {
        let plays = [
            play("alice", 2, 10_000_000, 1, true),
            play("alice", 2, 20_000_000, 2, false),
            play("bob", 1, 5_000_000, 1, false),
        ];
        // Monday 2026-11-30 20:00 UTC, one sample a minute for two hours, over the budget
        // in the second, beyond the transcode capacity in its last 20 minutes.
        let start = jiff::Timestamp::from_second(1_796_068_800).unwrap();
        let samples: Vec<SampleRow> = (0..=120)
            .map(|i| SampleRow {
                t_ms: (start.as_millisecond() + i * 60_000) as u64,
                budget_bps: 50_000_000,
                streaming_bps: if i >= 60 { 60_000_000 } else { 30_000_000 },
                beyond_capacity: Some(i >= 100),
            })
            .collect();
        let s = summarize(0, &plays, &samples, &jiff::tz::TimeZone::UTC);
        assert_eq!(s.users[0].user, "alice");
        assert_eq!(s.users[0].plays, 2);
        assert_eq!(s.users[0].hours, 4.0);
        assert_eq!(s.users[0].mean_rate_bps, Some(15_000_000));
        assert_eq!(s.users[0].at_source, Some(0.75));
        assert_eq!(s.users[0].transcodes, 1);
        assert_eq!(s.users[0].pushes, 4);
        assert_eq!(s.days.len(), 1);
        assert_eq!(s.days[0].day, "2026-11-30");
        assert_eq!(s.days[0].over_budget_minutes, 60.0);
        assert_eq!(s.days[0].covered_minutes, 120.0);
        assert_eq!(s.days[0].beyond_capacity_minutes, Some(20.0));
        assert_eq!(s.week[0][20], Some(30_000_000));
        assert_eq!(s.week[0][21], Some(60_000_000));
        assert_eq!(
            s.busiest[0],
            HourStats {
                weekday: 0,
                hour: 21,
                mean_streaming_bps: 60_000_000
            }
        );
        let text = render(&s);
        assert!(text.contains("alice"), "{text}");
        assert!(text.contains("Mon 21:00-22:00  60 Mbps"), "{text}");
        assert!(
            text.contains("60.0 min of 120 min recorded; 20.0 min beyond the transcode capacity"),
            "{text}"
        );
        // Without a capacity nothing is said of it.
        let unknown: Vec<SampleRow> = samples
            .iter()
            .map(|r| SampleRow {
                beyond_capacity: None,
                ..*r
            })
            .collect();
        let s = summarize(0, &plays, &unknown, &jiff::tz::TimeZone::UTC);
        assert_eq!(s.days[0].beyond_capacity_minutes, None);
        assert!(!render(&s).contains("transcode capacity"));
    }
}

/// One point of a history chart: the means over a bucket.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Point {
    /// The bucket's start, unix seconds.
    pub t: u64,
    /// Mean budget, bits/s.
    pub budget: u64,
    /// Mean remote streaming, bits/s.
    pub streaming: u64,
}

/// The samples from `since_ms` to `now_ms` in `buckets` equal buckets (empty ones left out).
pub fn series(samples: &[SampleRow], since_ms: u64, now_ms: u64, buckets: u64) -> Vec<Point> {
    let span = now_ms.saturating_sub(since_ms).max(1);
    let width = span.div_ceil(buckets.max(1)).max(1);
    let mut acc: BTreeMap<u64, (u128, u128, u128)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.t_ms >= since_ms) {
        let b = (s.t_ms - since_ms) / width;
        let e = acc.entry(b).or_default();
        e.0 += u128::from(s.budget_bps);
        e.1 += u128::from(s.streaming_bps);
        e.2 += 1;
    }
    acc.into_iter()
        .map(|(b, (budget, streaming, n))| Point {
            t: (since_ms + b * width) / 1000,
            budget: (budget / n) as u64,
            streaming: (streaming / n) as u64,
        })
        .collect()
}

/// What `/api/history?since=` and `jellydemon stats` read: the figures, and the chart's
/// series. A database not made yet is an empty history, and so is one the writer has created
/// but not yet brought to this version (the first moments of a daemon's first start).
pub fn load(
    path: &std::path::Path,
    since_ms: u64,
    now_ms: u64,
    user: Option<&str>,
    tz: &jiff::tz::TimeZone,
    buckets: u64,
) -> Result<(Stats, Vec<Point>), HistoryError> {
    if !path.exists() {
        return Ok((summarize(since_ms, &[], &[], tz), Vec::new()));
    }
    let store = Store::open_read_only(path)?;
    if store.version()? < super::schema_version() {
        return Ok((summarize(since_ms, &[], &[], tz), Vec::new()));
    }
    let (plays, samples) = query(&store, since_ms, user)?;
    Ok((
        summarize(since_ms, &plays, &samples, tz),
        series(&samples, since_ms, now_ms, buckets),
    ))
}
