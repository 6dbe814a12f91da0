//! Plain-text tables for the terminal: the result of a pass and of a restore.

use crate::core::plan::Role;
use crate::core::rate::fmt_mbps;
use crate::ids::UserName;
use crate::reconcile::{PassReport, RestoreOutcome};
use crate::write::WriteOutcome;

pub use crate::core::plan::fmt_limit;

/// Left-aligned columns separated by two spaces.
fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == r.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Causes of failures, each listed once under the table; a row says `FAILED (n)`. A cause
/// repeated in every row made the table unreadable (one error, ~150 characters, per user).
#[derive(Default)]
struct Causes(Vec<String>);

impl Causes {
    /// The note number of `cause`, added if new. The user's or session's id in a request path
    /// is left out: the row names the user, and one failure for all is then one note.
    fn note(&mut self, cause: &str) -> usize {
        let cause = without_ids(cause);
        match self.0.iter().position(|c| *c == cause) {
            Some(i) => i + 1,
            None => {
                self.0.push(cause);
                self.0.len()
            }
        }
    }
    fn render(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(i, c)| format!("({}) {c}\n", i + 1))
            .collect()
    }
}

/// `POST /Users/<id>/Policy: …` as `POST /Users/{id}/Policy: …` (and `/Sessions/`).
fn without_ids(cause: &str) -> String {
    let mut out = String::with_capacity(cause.len());
    let mut rest = cause;
    while let Some(i) = ["/Users/", "/Sessions/"]
        .iter()
        .filter_map(|p| rest.find(p).map(|i| i + p.len()))
        .min()
    {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(['/', ':', ' ']).unwrap_or(rest.len());
        out.push_str("{id}");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The table `reconcile --once` prints: user, from where, streams, stream rate, old limit,
/// new limit, what happened, why.
pub fn pass_table(report: &PassReport) -> String {
    let p = &report.plan;
    let mut out = format!(
        "algorithm {}  budget {}{}  streaming {}  held after pushes {}{}\n",
        p.algorithm,
        fmt_mbps(p.budget),
        report
            .budget_note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        fmt_mbps(p.streaming),
        fmt_mbps(p.held),
        if p.unmanaged_bps > 0 {
            format!("  unmanaged remote streams {}", fmt_mbps(p.unmanaged_bps))
        } else {
            String::new()
        }
    );
    let mut rows = vec![
        [
            "USER",
            "FROM",
            "STREAMS",
            "RATE",
            "OLD LIMIT",
            "NEW LIMIT",
            "ACTION",
            "WHY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut causes = Causes::default();
    for o in &report.outcomes {
        let d = &o.decision;
        let (from, streams, rate) = match d.role {
            Role::Active { streams } => (
                d.endpoints
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                streams.to_string(),
                rate_cell(d),
            ),
            // Not streaming as the plan counts it; a paused remote stream still shows.
            Role::Idle => match paused_remote(p, &d.user_id) {
                Some((ip, rate)) => (
                    format!("{ip} (paused)"),
                    "0".into(),
                    rate.map_or_else(|| "-".into(), |r| format!("{} (paused)", fmt_mbps(r))),
                ),
                None => ("idle".into(), "0".into(), "-".into()),
            },
            Role::Release => ("unmanaged".into(), "-".into(), "-".into()),
        };
        let mut action = match (&o.write, d.needs_write(), report.dry_run) {
            (_, false, _) => "unchanged".to_string(),
            (None, true, true) => "would write".to_string(),
            (None, true, false) => "pending".to_string(),
            (Some(WriteOutcome::Written), _, _) => "written".to_string(),
            (Some(WriteOutcome::AlreadySet), _, _) => "already set".to_string(),
            (Some(WriteOutcome::Skipped(why)), _, _) => format!("skipped: {why}"),
            (Some(WriteOutcome::Failed(why)), _, _) => format!("FAILED ({})", causes.note(why)),
        };
        if report.dry_run {
            for (_, p) in d.pushes() {
                action.push_str(&format!(
                    ", would push {} to {}",
                    p.direction.label(),
                    fmt_mbps(p.bitrate)
                ));
            }
        }
        for (p, result) in &o.pushes {
            action.push_str(&match result {
                Ok(()) => format!(
                    ", pushed {} to {}",
                    p.direction.label(),
                    fmt_mbps(p.bitrate)
                ),
                Err(e) => format!(
                    ", push {} FAILED ({})",
                    p.direction.label(),
                    causes.note(&e.to_string())
                ),
            });
        }
        rows.push(vec![
            d.user_name.to_string(),
            from,
            streams,
            rate,
            fmt_limit(d.current),
            fmt_limit(d.target),
            action,
            d.reason.to_string(),
        ]);
    }
    out.push_str(&render(&rows));
    out.push_str(&causes.render());
    for w in &p.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if let Some(t) = p.transcodes {
        out.push_str(&format!(
            "video transcodes: {} under these limits, the server runs {}{}\n",
            t.count.total(),
            t.capacity.describe(),
            if t.beyond {
                ": beyond its capacity"
            } else {
                ""
            }
        ));
    }
    if report.dry_run {
        out.push_str("dry run: nothing was written\n");
    }
    out
}

/// A paused remote session of `user` that the plan does not count (`count_paused` is off):
/// its address and rate, so the table says "paused" where `check` does.
fn paused_remote(
    p: &crate::core::plan::Plan,
    user: &crate::ids::UserId,
) -> Option<(crate::ids::ClientAddr, Option<u64>)> {
    p.sessions.iter().find_map(|v| match v.location {
        crate::network::Location::Remote(ip)
            if v.paused && !v.counted && v.user_id.as_ref() == Some(user) =>
        {
            Some((ip, v.rate.map(|r| r.bps())))
        }
        _ => None,
    })
}

/// The RATE cell: the streams' current rate, and what ignores limits.
fn rate_cell(d: &crate::core::plan::Decision) -> String {
    let mut cell = if d.stream_rate > 0 {
        fmt_mbps(d.stream_rate)
    } else {
        "unknown".into()
    };
    if d.streams.iter().any(|s| s.uncontrolled.is_some()) {
        cell.push_str(" (ignores limits)");
    }
    cell
}

/// The table `restore` prints.
pub fn restore_table(results: &[(UserName, RestoreOutcome)]) -> String {
    if results.is_empty() {
        return "nothing to restore: the ledger is empty\n".to_string();
    }
    let mut rows = vec![vec!["USER".to_string(), "RESULT".to_string()]];
    let mut causes = Causes::default();
    for (name, o) in results {
        let text = match o {
            RestoreOutcome::Restored { from, to } => {
                format!("restored {} -> {}", fmt_limit(*from), fmt_limit(*to))
            }
            RestoreOutcome::AlreadyOriginal(v) => format!("already at original {}", fmt_limit(*v)),
            RestoreOutcome::KeptHandChange { value, original } => format!(
                "kept {} set by hand (original was {})",
                fmt_limit(*value),
                fmt_limit(*original)
            ),
            RestoreOutcome::UserGone => "user no longer exists; dropped".to_string(),
            RestoreOutcome::Failed(e) => {
                format!("FAILED ({}), kept in the ledger", causes.note(e))
            }
        };
        rows.push(vec![name.to_string(), text]);
    }
    render(&rows) + &causes.render()
}

/// The torrent clients' and media servers' restore, one row each; empty when the ledger held
/// none.
pub fn torrent_restore_table(results: &[(String, crate::throttle::Restored)]) -> String {
    use crate::throttle::Restored;
    if results.is_empty() {
        return String::new();
    }
    let mut rows = vec![vec!["CLIENT OR SERVER".to_string(), "RESULT".to_string()]];
    let mut causes = Causes::default();
    for (name, r) in results {
        let text = match r {
            Restored::Done(w) if w.is_empty() => "already at its originals".to_string(),
            Restored::Done(w) => w
                .iter()
                .map(|(f, from, to)| {
                    format!(
                        "{f} restored {} -> {}",
                        crate::throttle::describe(f, *from),
                        crate::throttle::describe(f, *to)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            Restored::Failed(e) => format!("FAILED ({}), kept in the ledger", causes.note(e)),
        };
        rows.push(vec![
            crate::escape::escape_controls(name).into_owned(),
            text,
        ]);
    }
    render(&rows) + &causes.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cause_for_every_user_is_one_note() {
        let mut c = Causes::default();
        let cause = |id: &str| format!("POST /Users/{id}/Policy: HTTP 500 Internal Server Error");
        assert_eq!(c.note(&cause("aa11")), 1);
        assert_eq!(c.note(&cause("User-002")), 1);
        assert_eq!(c.note("POST /Sessions/s1/Command: timeout"), 2);
        assert_eq!(c.note("cannot write state file /x: denied"), 3);
        assert_eq!(
            c.render(),
            "(1) POST /Users/{id}/Policy: HTTP 500 Internal Server Error\n\
             (2) POST /Sessions/{id}/Command: timeout\n\
             (3) cannot write state file /x: denied\n"
        );
    }
}
