//! `jellydemon report`: one text file to attach to a bug report, written locally and never
//! uploaded. It holds the version, what `check` says, the configuration with every secret
//! removed, the owner's overrides (pause, pins, exemptions, weights, reserve), what a pass
//! would do now, the running daemon's overrides and last decisions, and recent log lines.
//!
//! The whole bundle is anonymized whatever `logging.anonymize` says: names, ids and addresses
//! become the aliases of the saved alias map (the same as in anonymized logs), and every user
//! and session Jellyfin lists is given one before anything is printed, so that a log written
//! without anonymization is scrubbed too. Nothing is written but the report: the alias map is
//! read, never saved, and the state file is read for a dry run.
//!
//! The pure parts (the tail of a log, the rendering of the daemon's state) are at the top;
//! [`gather`] does the I/O. What a secret is and how it is taken out is `src/redact.rs`'s.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;

use crate::adapters::jellyfin::fleet::Fleet;
use crate::adapters::ledger::Ledger;
use crate::anon::{self, Anonymizer, Kind};
use crate::config::Settings;
use crate::redact::{redact_config, redact_env, redact_guids};

/// Longest log line kept, in bytes; the rest is cut.
const MAX_LINE: usize = 4096;

/// The last `n` lines of `reader`, each cut at `MAX_LINE` (4 KiB); memory stays bounded
/// whatever the input's size. Bytes that are not UTF-8 are replaced.
pub fn tail(mut reader: impl BufRead, n: usize) -> std::io::Result<Vec<String>> {
    let mut lines = VecDeque::with_capacity(n.min(10_000));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Read at most MAX_LINE bytes of the line, then skip the rest of it.
        let read = std::io::Read::take(&mut reader, MAX_LINE as u64).read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        let complete = buf.last() == Some(&b'\n');
        if !complete && read == MAX_LINE {
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let r = std::io::Read::take(&mut reader, MAX_LINE as u64)
                    .read_until(b'\n', &mut rest)?;
                if r == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            buf.extend_from_slice(" (cut)".as_bytes());
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        if lines.len() == n {
            lines.pop_front();
        }
        if n > 0 {
            lines.push_back(line);
        }
    }
    Ok(lines.into())
}

/// Terminal escape sequences (colours) removed.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The running daemon's `/api/state` as text: its state line, then the recent decisions.
pub fn render_daemon_state(state: &serde_json::Value) -> String {
    let mut out = String::new();
    let s = |k: &str| plain(state.get(k));
    let poll = |k: &str| plain(state.get("poll").and_then(|p| p.get(k)));
    let _ = writeln!(
        out,
        "version {}, mode {}, dry run {}, up {} s, budget {} bit/s",
        s("version"),
        s("mode"),
        s("dry_run"),
        s("uptime_seconds"),
        s("budget_bps")
    );
    let _ = writeln!(
        out,
        "poll: {} polls, {} recomputes, last success {} s ago, {} failure(s) in a row, last \
         error: {}",
        poll("polls"),
        poll("recomputes"),
        state
            .get("poll")
            .and_then(|p| p.get("last_ok_age_seconds"))
            .and_then(|v| v.as_f64())
            .map_or("never".into(), |a| format!("{a:.0}")),
        poll("consecutive_failures"),
        poll("last_error"),
    );
    if let Some(o) = state.get("overrides").and_then(|o| o.as_array()) {
        let _ = write!(
            out,
            "the owner's overrides:{}",
            if o.is_empty() {
                " none\n".to_string()
            } else {
                format!(
                    "\n{}",
                    crate::ctl::render_overrides(&serde_json::json!({ "overrides": o }))
                        .lines()
                        .map(|l| format!("  {l}\n"))
                        .collect::<String>()
                )
            }
        );
    }
    let _ = writeln!(out, "events: {}", s("events"));
    let _ = writeln!(out, "writes: {}", s("writes"));
    if let Some(d) = state
        .get("downloaders")
        .and_then(|d| d.as_array())
        .filter(|d| !d.is_empty())
    {
        let _ = writeln!(
            out,
            "torrent clients (together at most {} bit/s):",
            s("downloaders_limit_bps")
        );
        for c in d {
            let _ = writeln!(out, "  {c}");
        }
    }
    if let Some(budget) = state.get("budget") {
        let _ = writeln!(
            out,
            "budget: {} ({})",
            plain(budget.get("cause")),
            plain(budget.get("source"))
        );
        if let Some(servers) = budget
            .get("servers")
            .and_then(|v| v.as_array())
            .filter(|v| !v.is_empty())
        {
            let _ = writeln!(out, "other media servers:");
            for v in servers {
                let _ = writeln!(out, "  {v}");
            }
        }
    }
    let _ = writeln!(out, "recent decisions, newest first:");
    match state.get("recent").and_then(|r| r.as_array()) {
        Some(recent) if !recent.is_empty() => {
            for r in recent {
                let t = r.get("t").and_then(|t| t.as_u64()).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "  {} {}, {}: {}",
                    fmt_time(SystemTime::UNIX_EPOCH + Duration::from_secs(t)),
                    r.get("trigger").and_then(|v| v.as_str()).unwrap_or("?"),
                    match r.get("changes").and_then(|c| c.as_u64()) {
                        Some(1) => "1 change".to_string(),
                        Some(n) => format!("{n} changes"),
                        None => "? changes".to_string(),
                    },
                    r.get("summary").and_then(|v| v.as_str()).unwrap_or(""),
                );
            }
        }
        _ => out.push_str("  (none yet)\n"),
    }
    if let Some(last) = state.get("last_decision") {
        let _ = writeln!(out, "last decision, in full:");
        let pretty = serde_json::to_string_pretty(last).unwrap_or_default();
        for line in pretty.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// A JSON value as text: a string without its quotes, nothing as `-`.
fn plain(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn fmt_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// What `report` is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// The log to take the last lines of: a file, `-` for standard input, or none for
    /// `logging.file`.
    pub log: Option<PathBuf>,
    /// How many log lines.
    pub lines: usize,
    /// Where the running daemon listens, if not at `daemon.listen`.
    pub address: Option<std::net::SocketAddr>,
}

/// Gather everything and return the bundle's text, anonymized and without secrets. Every
/// part that cannot be had says why in its place; the bundle is made whatever fails.
pub async fn gather(opts: &Options) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# jellydemon bug report");
    let _ = writeln!(
        out,
        "jellydemon {} ({} {}), kernel {}, made {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
        fmt_time(SystemTime::now()),
    );

    let loaded = Settings::load(&opts.config);
    let (aliases, problem) = match &loaded {
        Ok(s) => Anonymizer::read_only(&s.alias_file()),
        Err(_) => (
            Anonymizer::read_only(Path::new("/nonexistent")).0,
            Some("the configuration did not load: names in the log lines are not known".into()),
        ),
    };
    let anonymizer = anon::install(aliases);
    let _ = writeln!(
        out,
        "Names, ids and addresses are replaced by aliases (User-001, External-IP-001) and secrets \
         are removed. Read it before you share it."
    );
    if let Some(p) = problem {
        let _ = writeln!(out, "Note: {p}.");
    }

    section(&mut out, "configuration (secrets removed)");
    let _ = writeln!(out, "file: {}", opts.config.display());
    match std::fs::read_to_string(&opts.config) {
        Ok(text) => out.push_str(&redact_config(&text)),
        Err(e) => {
            let _ = writeln!(out, "(cannot read it: {e})");
        }
    }
    let env = redact_env(std::env::vars());
    if !env.is_empty() {
        let _ = writeln!(out, "environment:");
        for l in env {
            let _ = writeln!(out, "  {l}");
        }
    }

    let mut secrets: Vec<String> = Vec::new();
    let settings = match loaded {
        Ok(s) => Some(s),
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            None
        }
    };
    if let Some(settings) = &settings {
        secrets.extend(
            [
                settings.api_key().ok(),
                settings.daemon.webhook_token().ok().flatten(),
                settings.daemon.status_token().ok().flatten(),
            ]
            .into_iter()
            .flatten()
            .map(|s| s.expose_secret().to_string())
            .filter(|s| !s.is_empty()),
        );
        jellyfin_parts(&mut out, settings, &anonymizer).await;
        let addr = opts.address.unwrap_or(settings.daemon.listen);
        daemon_part(&mut out, settings, crate::healthcheck::address(addr)).await;
    }

    let log = opts
        .log
        .clone()
        .or_else(|| settings.as_ref().and_then(|s| s.logging.file.clone()));
    section(&mut out, "recent log lines");
    out.push_str(&log_lines(log.as_deref(), opts.lines));

    // Last: scrub what is still personal or secret, whichever part it came from.
    let mut text = strip_ansi(&out);
    text = anonymizer.scrub(&text);
    text = redact_guids(&text, |plain| anonymizer.known(plain));
    for s in &secrets {
        text = text.replace(s.as_str(), crate::redact::REMOVED);
    }
    text
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n## {title}\n");
}

/// Every user and session Jellyfin lists gets its alias first, so that the scrub finds them
/// in log lines; then `check` and a dry-run pass.
async fn jellyfin_parts(out: &mut String, settings: &Settings, anonymizer: &Anonymizer) {
    let client = Fleet::from_settings(settings).map_err(|e| e.to_string());
    if let Ok(fleet) = &client {
        let client = fleet.primary();
        let (members, _) = fleet.read_members().await;
        let users = client.users().await.unwrap_or_default();
        let mut sessions = client.sessions().await.unwrap_or_default();
        sessions.extend(
            fleet
                .member_sessions()
                .await
                .into_iter()
                .flatten()
                .flatten(),
        );
        {
            let names = users.iter().map(|u| (&u.id, &u.name));
            for (id, name) in names.chain(members.users.iter().map(|u| (&u.id, &u.name))) {
                anonymizer.alias(Kind::UserId, id.as_str());
                if let Some(n) = name {
                    anonymizer.alias(Kind::UserName, n.as_str());
                }
            }
        }
        {
            for s in &sessions {
                anonymizer.alias(Kind::Session, s.id.as_str());
                if let Some(d) = &s.device_id {
                    anonymizer.alias(Kind::Device, d.as_str());
                }
                if let Some(d) = &s.device_name {
                    anonymizer.alias(Kind::Device, d);
                }
                if let Some(n) = &s.user_name {
                    anonymizer.alias(Kind::UserName, n.as_str());
                }
            }
        }
    }
    section(out, "check");
    out.push_str(&crate::check::check(settings).await.to_string());

    overrides_part(out, settings, anonymizer);

    section(out, "what a pass would do now (dry run, nothing written)");
    let ledger = Ledger::open(&settings.state.file).unwrap_or_else(|e| {
        let _ = writeln!(
            out,
            "(the state file cannot be read: {e}; planned without it)"
        );
        Ledger::in_memory()
    });
    let pass = match &client {
        Ok(client) => crate::reconcile::reconcile_once(
            client,
            settings,
            &crate::adapters::ledger::LedgerHandle::new(ledger),
            true,
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    match pass {
        Ok(pass) => out.push_str(&crate::report::pass_table(&pass)),
        Err(e) => {
            let _ = writeln!(out, "(no pass: {e})");
        }
    }
}

/// The owner's overrides as saved beside the state file: they shape the running daemon's
/// plans and the pass below. Their names get aliases even when Jellyfin cannot be read.
fn overrides_part(out: &mut String, settings: &Settings, anonymizer: &Anonymizer) {
    let path = settings.overrides_file();
    section(out, &format!("the owner's overrides ({})", path.display()));
    match crate::adapters::overrides::load(&path, false) {
        Ok(o) => {
            for s in o.users.values() {
                if let Some(n) = &s.name {
                    anonymizer.alias(Kind::UserName, n);
                }
            }
            let views = o.views();
            out.push_str(&crate::ctl::render_overrides(
                &serde_json::json!({ "overrides": views }),
            ));
        }
        Err(e) => {
            let _ = writeln!(out, "({e})");
        }
    }
}

/// The running daemon's `/api/state`, asked at `addr` with the status secret.
async fn daemon_part(out: &mut String, settings: &Settings, addr: std::net::SocketAddr) {
    if addr.port() == 0 {
        section(out, "the running daemon");
        out.push_str("(daemon.listen has port 0: pass --address to say where it listens)\n");
        return;
    }
    section(out, &format!("the running daemon (asked at {addr})"));
    let url = format!("http://{addr}/api/state");
    let answer = async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client.get(&url);
        if let Ok(Some(token)) = settings.daemon.status_token() {
            req = req.bearer_auth(token.expose_secret());
        }
        let resp = req.send().await.map_err(|e| format!("no answer: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("it answered {status}"));
        }
        resp.json::<serde_json::Value>()
            .await
            .map_err(|e| format!("not its state: {e}"))
    }
    .await;
    match answer {
        Ok(state) => out.push_str(&render_daemon_state(&state)),
        Err(e) => {
            let _ = writeln!(out, "(not running, or not on this machine: {e})");
        }
    }
}

/// The last `n` lines of the log, or what to do when there is none.
fn log_lines(log: Option<&Path>, n: usize) -> String {
    let lines = match log {
        None => {
            return "(no log file: logging.file is not set. Pipe the log in, e.g.\n  \
                    journalctl -u jellydemon -n 500 --no-pager | jellydemon report --log -\n  \
                    docker logs jellydemon 2>&1 | jellydemon report --log -)\n"
                .into();
        }
        Some(p) if p == Path::new("-") => tail(std::io::stdin().lock(), n),
        Some(p) => std::fs::File::open(p).and_then(|f| tail(std::io::BufReader::new(f), n)),
    };
    match lines {
        Ok(lines) if lines.is_empty() => "(the log is empty)\n".into(),
        Ok(lines) => {
            let source = match log {
                Some(p) if p != Path::new("-") => p.display().to_string(),
                _ => "standard input".into(),
            };
            let mut s = format!("the last {} line(s) of {source}:\n", lines.len());
            for l in lines {
                s.push_str(&l);
                s.push('\n');
            }
            s
        }
        Err(e) => format!("(cannot read {}: {e})\n", log.expect("some").display()),
    }
}

#[cfg(test)]
mod tests;
