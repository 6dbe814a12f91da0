//! `jellydemon check`: configuration, reachability, version, API key valid and admin, the
//! sessions and how they are classified, and the two classic set-up mistakes (a reverse proxy
//! hiding client addresses, and jellydemon disagreeing with Jellyfin about who is local), how
//! Jellyfin transcodes and which remote transcode cannot keep up. Every failure is one line
//! that says what to do.
//!
//! The checks that need no Jellyfin are in `check/local.rs`, the transcoding lines in
//! `check/transcoding.rs`; [`check`] runs them in order.

use std::fmt;

use crate::adapters::jellyfin::{Client, ErrorKind, JellyfinError};
use crate::adapters::ledger::Ledger;
use crate::config::{InternalRanges, Settings};
use crate::core::media::{Account, Playback};
use crate::core::plan::{self, Inputs};
use crate::core::rate::fmt_mbps;
use crate::network::{self, Location};
use crate::report::fmt_limit;
use crate::snapshot::ranges_from_jellyfin;

mod local;
mod transcoding;

/// How a line of the check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Works.
    Ok,
    /// For the record (versions, sessions and how each is classified).
    Info,
    /// Works, but something may not be what you want.
    Warn,
    /// Does not work; `check` exits non-zero.
    Fail,
}

/// One line of the check.
#[derive(Debug, Clone)]
pub struct Line {
    /// How it reads.
    pub level: Level,
    /// What was found, and what to do about it.
    pub text: String,
}

/// All lines of a check, in order.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Every line, in order.
    pub lines: Vec<Line>,
    /// A failure is about the state file or its directory (`check` exits 4, like `run`).
    state_failed: bool,
}

impl CheckReport {
    /// A failure found before the check ran, as its first line.
    pub fn fail_first(&mut self, text: impl Into<String>) {
        self.lines.insert(
            0,
            Line {
                level: Level::Fail,
                text: text.into(),
            },
        );
    }

    fn push(&mut self, level: Level, text: impl Into<String>) {
        self.lines.push(Line {
            level,
            text: text.into(),
        });
    }
    /// Some line is a failure.
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|l| l.level == Level::Fail)
    }
    /// The state file or its directory failed.
    pub fn state_failed(&self) -> bool {
        self.state_failed
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            let tag = match l.level {
                Level::Ok => "ok  ",
                Level::Info => "    ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            writeln!(f, "{tag} {}", l.text)?;
        }
        Ok(())
    }
}

/// One line that tells the user what is wrong and what to do.
pub fn explain(e: &JellyfinError, url: &str, settings: &Settings) -> String {
    match e.kind {
        ErrorKind::Connect => format!(
            "cannot connect to {url} ({}): is Jellyfin running, and are the host and port in \
             jellyfin.url right?",
            e.detail
        ),
        ErrorKind::Dns => format!(
            "the host name in jellyfin.url ({url}) does not resolve ({})",
            e.detail
        ),
        ErrorKind::Tls => format!(
            "TLS failed with {url} ({}): does this port speak https with a certificate this \
             machine trusts? For a plain-http port use http://",
            e.detail
        ),
        ErrorKind::Timeout => format!(
            "{url} did not answer {} {} within {:?} (jellyfin.timeout): server overloaded or a \
             firewall dropping packets?",
            e.method, e.path, settings.jellyfin.timeout
        ),
        ErrorKind::Unauthorized => "the API key was rejected (HTTP 401): create one in \
             Jellyfin's Dashboard -> API Keys and put it in jellyfin.api_key or api_key_file"
            .to_string(),
        ErrorKind::Forbidden => format!(
            "the key is valid but not an administrator's (HTTP 403 on {}): jellydemon needs an \
             API key from Dashboard -> API Keys to change user policies",
            e.path
        ),
        ErrorKind::NotFound => format!(
            "{url} answered 404 for {}: not Jellyfin at this URL, or a base path is missing or \
             extra in jellyfin.url (e.g. /jellyfin)",
            e.path
        ),
        ErrorKind::Decode => format!(
            "{url} answered {} but not like Jellyfin does ({}): check jellyfin.url",
            e.path, e.detail
        ),
        ErrorKind::Status(s) => format!(
            "Jellyfin answered HTTP {s} to {} {}: {}",
            e.method, e.path, e.detail
        ),
        ErrorKind::Other => format!("request to {url} failed: {}", e.detail),
    }
}

/// Run every check. Stops early only where later checks cannot mean anything.
pub async fn check(settings: &Settings) -> CheckReport {
    let mut r = CheckReport::default();
    config_lines(&mut r, settings);
    local::state(&mut r, &settings.state.file);
    local::open_files(&mut r, settings.daemon.http_max_connections);
    local::budget_lines(&mut r, settings).await;
    local::downloader_lines(&mut r, settings).await;
    local::server_lines(&mut r, settings).await;
    local::member_lines(&mut r, settings).await;
    notify_lines(&mut r, settings);
    // `None`: a check failed that the rest depends on; its line says why.
    let _ = jellyfin_lines(&mut r, settings).await;
    r
}

/// The algorithm, the budget and where its capacity comes from.
fn config_lines(r: &mut CheckReport, settings: &Settings) {
    let budget = settings.budget();
    r.push(
        Level::Ok,
        format!(
            "config: algorithm {}, budget {} ({} - {} reserved), floor {}",
            settings.bandwidth.algorithm,
            fmt_mbps(budget.budget_bps),
            settings.bandwidth.total_upload_mbps,
            settings.bandwidth.reserved_mbps,
            fmt_mbps(budget.min_per_user_bps),
        ),
    );
    match &settings.bandwidth.sqm {
        crate::config::Sqm::Off => {}
        crate::config::Sqm::Read { queue } => r.push(
            Level::Ok,
            format!(
                "capacity: {} Mbps, the upload rate of the router's {queue} (total_upload_mbps = \"sqm\")",
                settings.bandwidth.total_upload_mbps
            ),
        ),
        crate::config::Sqm::Unread => r.push(
            Level::Fail,
            "capacity: total_upload_mbps = \"sqm\" but the router's SQM rate was not read",
        ),
    }
}

/// Each notification target resolves; nothing is sent.
fn notify_lines(r: &mut CheckReport, settings: &Settings) {
    for t in &settings.notify {
        match crate::adapters::notify::target::Resolved::new(t) {
            Ok(_) => {
                let events: Vec<&str> = t.subscribed().iter().map(|e| e.as_str()).collect();
                r.push(
                    Level::Ok,
                    format!(
                        "notify {} ({}): {} (nothing sent; `jellydemon notify --test` sends a test)",
                        t.display_name(),
                        t.kind().as_str(),
                        events.join(", ")
                    ),
                );
            }
            Err(e) => r.push(Level::Fail, format!("notify {}: {e}", t.display_name())),
        }
    }
}

/// Jellyfin's part: reachable, the key accepted and an administrator's, the server-wide
/// limit, the internal ranges, the sessions as a pass would see them and its transcodes.
/// `None` once a failure makes the rest meaningless (its line is in `r`).
async fn jellyfin_lines(r: &mut CheckReport, settings: &Settings) -> Option<()> {
    let url = &settings.jellyfin.url;
    // A failed request: its line, and the rest is skipped.
    let fail =
        |r: &mut CheckReport, e: &JellyfinError| r.push(Level::Fail, explain(e, url, settings));
    let key = settings
        .api_key()
        .map_err(|e| r.push(Level::Fail, e.to_string()))
        .ok()?;
    let client = Client::new(url, key, settings.jellyfin.timeout)
        .map_err(|e| r.push(Level::Fail, e.detail))
        .ok()?;
    let info = client.public_info().await.map_err(|e| fail(r, &e)).ok()?;
    let version = info.version.clone().unwrap_or_else(|| "?".into());
    r.push(
        Level::Ok,
        format!(
            "reachable: {} \"{}\" version {version} at {url}",
            info.product_name.as_deref().unwrap_or("Jellyfin"),
            info.server_name.as_deref().unwrap_or("?"),
        ),
    );
    if !version_supported(&version) {
        r.push(
            Level::Warn,
            format!(
                "version {version} is older than 10.9, the oldest jellydemon is tested against"
            ),
        );
    }
    client.system_info().await.map_err(|e| fail(r, &e)).ok()?;
    r.push(Level::Ok, "API key accepted");
    client.check_admin().await.map_err(|e| fail(r, &e)).ok()?;
    r.push(Level::Ok, "API key has administrator rights");

    let server_limit = client
        .server_configuration()
        .await
        .map_err(|e| fail(r, &e))
        .ok()?
        .remote_client_bitrate_limit;
    r.push(
        Level::Ok,
        format!("server-wide remote limit: {}", fmt_limit(server_limit)),
    );
    let jellyfin_net = client
        .network_configuration()
        .await
        .map_err(|e| fail(r, &e))
        .ok()?;
    let jellyfin_ranges = ranges_from_jellyfin(&jellyfin_net.local_network_subnets);
    let configured = settings.network.ranges();
    let ranges = ranges_lines(r, configured, &jellyfin_ranges);
    if !jellyfin_net.known_proxies.is_empty() {
        r.push(
            Level::Info,
            format!(
                "Jellyfin KnownProxies: {}",
                jellyfin_net.known_proxies.join(", ")
            ),
        );
    }

    let (sessions, users) = tokio::try_join!(client.sessions(), client.users())
        .map_err(|e| fail(r, &e))
        .ok()?;
    // An unreadable state file was reported above; plan with no originals then.
    let ledger = Ledger::open(&settings.state.file).unwrap_or_else(|_| Ledger::in_memory());
    // The running daemon's overrides shape its plan; check only reads them.
    let overrides = crate::adapters::overrides::load(&settings.overrides_file(), false)
        .unwrap_or_else(|e| {
            r.push(Level::Warn, e);
            crate::core::control::Overrides::default()
        });
    if overrides.paused() {
        r.push(
            Level::Warn,
            "the daemon is paused (every original put back): `jellydemon resume` ends it",
        );
    }
    let plan = plan::plan(
        &Inputs {
            sessions: &sessions.iter().map(Playback::from).collect::<Vec<_>>(),
            users: &users.iter().map(Account::from).collect::<Vec<_>>(),
            server_limit,
            ranges: &ranges,
            budget_bps: settings.budget().budget_bps,
            overrides: &overrides,
            servers: &[],
        },
        &ledger.originals(),
        &crate::snapshot::load_memory(settings),
        plan::memory::CLOCK_START,
        settings,
    );
    r.push(
        Level::Ok,
        format!(
            "{} user(s), {} managed; {} session(s)",
            users.len(),
            plan.decisions
                .iter()
                .filter(|d| d.role != plan::Role::Release)
                .count(),
            sessions.len()
        ),
    );
    session_lines(r, &plan, configured, &jellyfin_ranges);
    for w in &plan.warnings {
        r.push(Level::Warn, w.to_string());
    }
    transcoding::transcoding_lines(
        r,
        client.encoding_configuration().await,
        &plan,
        &sessions,
        settings.transcoding.capacity == Some(crate::config::CapacitySetting::Auto),
    );
    Some(())
}

/// The internal ranges in force (configured, or Jellyfin's), with Jellyfin's beside them.
fn ranges_lines(
    r: &mut CheckReport,
    configured: &InternalRanges,
    jellyfin_ranges: &[ipnet::IpNet],
) -> Vec<ipnet::IpNet> {
    match configured {
        InternalRanges::FromJellyfin => {
            r.push(
                Level::Ok,
                format!(
                    "internal ranges imported from Jellyfin: {}",
                    list(jellyfin_ranges)
                ),
            );
            jellyfin_ranges.to_vec()
        }
        InternalRanges::Fixed(nets) => {
            r.push(
                Level::Ok,
                format!(
                    "internal ranges from the config: {} (Jellyfin's: {})",
                    list(nets),
                    list(jellyfin_ranges)
                ),
            );
            nets.clone()
        }
    }
}

/// Each session, how it is classified and what it plays; and, with ranges of its own, every
/// address jellydemon and Jellyfin disagree about (one of them then limits the wrong streams).
fn session_lines(
    r: &mut CheckReport,
    plan: &plan::Plan,
    configured: &InternalRanges,
    jellyfin_ranges: &[ipnet::IpNet],
) {
    for v in &plan.sessions {
        let where_ = match &v.location {
            Location::Remote(ip) => format!("remote {ip}"),
            Location::Local(ip) => format!("local {ip}"),
            Location::Unknown(e) => format!("unknown endpoint ({e})"),
        };
        let state = if !v.playing {
            "idle".to_string()
        } else {
            let rate = v
                .rate
                .map(|r| fmt_mbps(r.bps()))
                .unwrap_or_else(|| "rate unknown".into());
            format!("{}{rate}", if v.paused { "paused, " } else { "playing, " })
        };
        r.push(
            Level::Info,
            format!(
                "session {}: {}, {}, {where_}, {state}",
                short(&v.session_id.to_string()),
                v.user_name
                    .as_ref()
                    .map_or_else(|| "(no user)".to_string(), |n| n.to_string()),
                v.device
            ),
        );
        if let (InternalRanges::Fixed(_), Some(ip)) = (configured, v.location.ip()) {
            let ours = v.location.is_remote();
            let theirs = !network::is_internal(ip.ip(), jellyfin_ranges);
            if ours != theirs {
                r.push(
                    Level::Warn,
                    format!(
                        "{ip} is {} to jellydemon but {} to Jellyfin: {}",
                        if ours { "remote" } else { "local" },
                        if theirs { "remote" } else { "local" },
                        if ours {
                            "Jellyfin will not apply the limits jellydemon sets for it"
                        } else {
                            "Jellyfin limits it but jellydemon does not count it"
                        }
                    ),
                );
            }
        }
    }
}

fn list(nets: &[ipnet::IpNet]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A session id shortened to 8 characters for the list (an alias is short already).
fn short(id: &str) -> String {
    if id.contains('-') {
        id.to_string() // an alias such as Session-001
    } else {
        id.chars().take(8).collect()
    }
}

/// 10.9 or newer (versions are "10.10.7", "10.11.11", "12.0.0").
fn version_supported(v: &str) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (10, 9)
}

#[cfg(test)]
mod tests;
