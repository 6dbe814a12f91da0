//! `jellydemon check`: configuration, reachability, version, API key valid and admin, the
//! sessions and how they are classified, and the two classic set-up mistakes (a reverse proxy
//! hiding client addresses, and jellydemon disagreeing with Jellyfin about who is local), how
//! Jellyfin transcodes and which remote transcode cannot keep up. Every failure is one line
//! that says what to do.

use std::fmt;

use crate::config::{InternalRanges, Settings};
use crate::jellyfin::{Client, ErrorKind, JellyfinError};
use crate::ledger::{self, Ledger};
use crate::network::{self, Location};
use crate::plan::{self, Inputs, fmt_mbps};
use crate::report::fmt_limit;
use crate::snapshot::ranges_from_jellyfin;

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
    let url = settings.jellyfin.url.clone();
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
    state(&mut r, &settings.state.file);
    open_files(&mut r, settings.daemon.http_max_connections);
    budget_lines(&mut r, settings).await;
    downloader_lines(&mut r, settings).await;
    server_lines(&mut r, settings).await;
    member_lines(&mut r, settings).await;
    for t in &settings.notify {
        match crate::notify::target::Resolved::new(t) {
            Ok(_) => {
                let events: Vec<&str> = t.subscribed().iter().map(|e| e.as_str()).collect();
                r.push(
                    Level::Ok,
                    format!(
                        "notify {} ({}): {} (nothing sent; `jellydemon notify --test` sends a test)",
                        t.display_name(),
                        t.kind.as_str(),
                        events.join(", ")
                    ),
                );
            }
            Err(e) => r.push(Level::Fail, format!("notify {}: {e}", t.display_name())),
        }
    }
    let key = match settings.api_key() {
        Ok(k) => k,
        Err(e) => {
            r.push(Level::Fail, e.to_string());
            return r;
        }
    };
    let client = match Client::new(&url, &key, settings.jellyfin.timeout) {
        Ok(c) => c,
        Err(e) => {
            r.push(Level::Fail, e.detail);
            return r;
        }
    };

    match client.public_info().await {
        Ok(info) => {
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
                    format!("version {version} is older than 10.9, the oldest jellydemon is tested against"),
                );
            }
        }
        Err(e) => {
            r.push(Level::Fail, explain(&e, &url, settings));
            return r;
        }
    }
    if let Err(e) = client.system_info().await {
        r.push(Level::Fail, explain(&e, &url, settings));
        return r;
    }
    r.push(Level::Ok, "API key accepted");
    match client.check_admin().await {
        Ok(()) => r.push(Level::Ok, "API key has administrator rights"),
        Err(e) => {
            r.push(Level::Fail, explain(&e, &url, settings));
            return r;
        }
    }

    let server_limit = match client.server_configuration().await {
        Ok(c) => {
            r.push(
                Level::Ok,
                format!(
                    "server-wide remote limit: {}",
                    fmt_limit(c.remote_client_bitrate_limit)
                ),
            );
            c.remote_client_bitrate_limit
        }
        Err(e) => {
            r.push(Level::Fail, explain(&e, &url, settings));
            return r;
        }
    };
    let jellyfin_net = match client.network_configuration().await {
        Ok(n) => n,
        Err(e) => {
            r.push(Level::Fail, explain(&e, &url, settings));
            return r;
        }
    };
    let jellyfin_ranges = ranges_from_jellyfin(&jellyfin_net.local_network_subnets);
    let configured = settings
        .network
        .internal_ranges()
        .expect("validated at load");
    let ranges = match &configured {
        InternalRanges::FromJellyfin => {
            r.push(
                Level::Ok,
                format!(
                    "internal ranges imported from Jellyfin: {}",
                    list(&jellyfin_ranges)
                ),
            );
            jellyfin_ranges.clone()
        }
        InternalRanges::Fixed(nets) => {
            r.push(
                Level::Ok,
                format!(
                    "internal ranges from the config: {} (Jellyfin's: {})",
                    list(nets),
                    list(&jellyfin_ranges)
                ),
            );
            nets.clone()
        }
    };
    if !jellyfin_net.known_proxies.is_empty() {
        r.push(
            Level::Info,
            format!(
                "Jellyfin KnownProxies: {}",
                jellyfin_net.known_proxies.join(", ")
            ),
        );
    }

    let (sessions, users) = match tokio::try_join!(client.sessions(), client.users()) {
        Ok(x) => x,
        Err(e) => {
            r.push(Level::Fail, explain(&e, &url, settings));
            return r;
        }
    };
    // An unreadable state file was reported above; plan with no originals then.
    let ledger = Ledger::open(&settings.state.file).unwrap_or_else(|_| Ledger::in_memory());
    // The running daemon's overrides shape its plan; check only reads them.
    let overrides = match crate::control::load(&settings.overrides_file(), false) {
        Ok(o) => o,
        Err(e) => {
            r.push(Level::Warn, e);
            crate::control::Overrides::default()
        }
    };
    if overrides.paused() {
        r.push(
            Level::Warn,
            "the daemon is paused (every original put back): `jellydemon resume` ends it",
        );
    }
    let plan = plan::plan(
        &Inputs {
            sessions: &sessions,
            users: &users,
            server_limit,
            ranges: &ranges,
            budget_bps: settings.budget().budget_bps,
            overrides: &overrides,
            servers: &[],
        },
        &ledger,
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
        if let (InternalRanges::Fixed(_), Some(ip)) = (&configured, v.location.ip()) {
            let ours = v.location.is_remote();
            let theirs = !network::is_internal(ip.ip(), &jellyfin_ranges);
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
    for w in &plan.warnings {
        r.push(Level::Warn, w.to_string());
    }
    transcoding_lines(
        &mut r,
        client.encoding_configuration().await,
        &plan,
        &sessions,
        settings.transcoding.capacity == Some(crate::config::CapacitySetting::Auto),
    );
    r
}

/// How the server transcodes (`/System/Configuration/encoding`) and the video transcodes of
/// remote streams now, with those that run slower than their source plays (the server cannot
/// keep up: the viewer stalls). A limit below an item's source makes Jellyfin transcode it.
fn transcoding_lines(
    r: &mut CheckReport,
    encoding: Result<crate::jellyfin::EncodingOptions, JellyfinError>,
    plan: &plan::Plan,
    sessions: &[crate::jellyfin::Session],
    auto: bool,
) {
    match encoding.map(|e| e.hardware()) {
        Ok(Some(hw)) => r.push(
            Level::Ok,
            format!("Jellyfin transcodes with {hw} hardware acceleration"),
        ),
        Ok(None) => r.push(
            Level::Info,
            "Jellyfin transcodes in software (no hardware acceleration set): a 4K video \
             transcode may run slower than real time, and a limit below an item's source \
             bitrate makes Jellyfin transcode it",
        ),
        Err(e) => r.push(
            Level::Info,
            format!("the transcoding settings cannot be read: {e}"),
        ),
    }
    match plan.transcodes {
        Some(t) => r.push(
            if t.beyond { Level::Warn } else { Level::Ok },
            format!(
                "[transcoding] capacity: the server runs {}; these limits leave {} video \
                 transcode(s){}{}",
                t.capacity.describe(),
                t.count.total(),
                if t.kept_direct > 0 {
                    format!(", {} user(s) kept direct play", t.kept_direct)
                } else {
                    String::new()
                },
                if t.beyond {
                    ", beyond the capacity"
                } else {
                    ""
                }
            ),
        ),
        None if auto => r.push(
            Level::Info,
            "[transcoding] capacity = \"auto\": nothing learned yet (no transcode has run \
             slower than its source for 30 s), so limits do not look at transcoding yet",
        ),
        None => r.push(
            Level::Info,
            "no [transcoding] capacity: limits do not look at what the server can transcode",
        ),
    }
    let remote: Vec<&crate::jellyfin::Session> = sessions
        .iter()
        .filter(|s| {
            s.transcodes_video()
                && plan
                    .sessions
                    .iter()
                    .any(|v| v.session_id == s.id && v.location.is_remote())
        })
        .collect();
    if remote.is_empty() {
        return;
    }
    r.push(
        Level::Info,
        format!("{} remote video transcode(s) now", remote.len()),
    );
    for s in remote {
        if s.transcode_behind() == Some(true) {
            let fps = s
                .transcoding_info
                .as_ref()
                .and_then(|t| t.framerate)
                .unwrap_or(0.0);
            let source = s
                .source_video()
                .and_then(|v| v.real_frame_rate)
                .unwrap_or(0.0);
            r.push(
                Level::Warn,
                format!(
                    "{} on {}: the transcode runs at {fps:.1} fps, its source plays at \
                     {source:.1}: the server cannot keep up and the viewer stalls",
                    s.user_name
                        .as_ref()
                        .map_or_else(|| "(no user)".to_string(), |n| n.to_string()),
                    s.device_label()
                ),
            );
        }
    }
}

/// The schedule in force and the next change; the meter read twice, with the rate it shows.
async fn budget_lines(r: &mut CheckReport, settings: &Settings) {
    match crate::budget::schedule::from_settings(settings) {
        Ok(Some(s)) => {
            let now = jiff::Timestamp::now();
            let b = &settings.bandwidth;
            let (t, res, entry) = s.base(now, b.total_upload_mbps, b.reserved_mbps);
            let zone = s.time_zone();
            let tz = zone
                .iana_name()
                .unwrap_or("the system's time zone")
                .to_string();
            let next = s
                .next_change(now)
                .map(|t| format!("; next change {}", zone.to_datetime(t).strftime("%a %H:%M")))
                .unwrap_or_default();
            r.push(
                Level::Ok,
                format!(
                    "schedule ({} entries, {tz}): {}{next}",
                    b.schedule.len(),
                    match entry {
                        Some(name) =>
                            format!("\"{name}\" in force, total {t} Mbps, {res} Mbps reserved"),
                        None => "no entry in force now".into(),
                    }
                ),
            );
        }
        Ok(None) => {}
        Err(e) => r.push(Level::Fail, e.to_string()),
    }
    let Some(m) = &settings.bandwidth.meter else {
        return;
    };
    let mut meter = match crate::budget::meter::Meter::new(m) {
        Ok(meter) => meter,
        Err(e) => {
            r.push(Level::Fail, e.to_string());
            return;
        }
    };
    let timeout = m.timeout.saturating_mul(3);
    let first = read_meter(&mut meter, timeout).await;
    let gap = m.interval.clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(5),
    );
    tokio::time::sleep(gap).await;
    let second = read_meter(&mut meter, timeout).await;
    match (first, second) {
        (Ok((t1, c1)), Ok((t2, c2))) => {
            let dt = t2.duration_since(t1).as_secs_f64();
            let delta = match (c2.bytes.checked_sub(c1.bytes), c2.wraps_at) {
                (Some(d), _) if !c2.fresh => Some(d),
                (None, Some(modulus)) => Some(c2.bytes + modulus - c1.bytes),
                _ => None,
            };
            match delta {
                Some(d) if dt > 0.0 => r.push(
                    Level::Ok,
                    format!(
                        "meter {}: {} upload now (read twice, {:.1} s apart)",
                        meter.describe(),
                        fmt_mbps((d as f64 * 8.0 / dt).round() as u64),
                        dt
                    ),
                ),
                _ => r.push(
                    Level::Warn,
                    format!(
                        "meter {}: the counter restarted between two reads; run check again",
                        meter.describe()
                    ),
                ),
            }
        }
        (Err(e), _) | (_, Err(e)) => r.push(
            Level::Fail,
            format!(
                "meter {}: {e}. Until it answers, the daemon uses the static budget",
                meter.describe()
            ),
        ),
    }
    if m.kind == crate::config::MeterKind::Openwrt {
        r.push(
            Level::Warn,
            "OpenWrt: with (hardware) flow offloading on (Network -> Firewall -> Routing/NAT \
             Offloading), offloaded traffic bypasses the counters, so the rest of the house's \
             upload is undercounted: turn offloading off for an accurate budget",
        );
    }
}

/// Each torrent client: logged in (once: qBittorrent bans an address after failed logins),
/// its version, the limit in force and what it uploads now. Writes nothing.
async fn downloader_lines(r: &mut CheckReport, settings: &Settings) {
    let names = crate::config::downloader_names(&settings.downloader);
    for (d, name) in settings.downloader.iter().zip(names) {
        let mut client = match crate::downloader::Downloader::new(d) {
            Ok(c) => c,
            Err(e) => {
                r.push(Level::Fail, format!("downloader {name}: {e}"));
                continue;
            }
        };
        // One login at most: the read only after the version came back.
        let read = match client.version().await {
            Ok(v) => client.read().await.map(|r| (v, r)),
            Err(e) => Err(e),
        };
        match read {
            Ok((v, reading)) => {
                let limit = match reading.limit_bps {
                    Some(l) => fmt_mbps(l),
                    None => "unlimited".into(),
                };
                let mode = match reading.mode {
                    crate::downloader::Mode::Normal => "",
                    crate::downloader::Mode::Alternative => " (alternative limits on)",
                };
                r.push(
                    Level::Ok,
                    format!(
                        "downloader {name}: {} {v} at {}, upload limit {limit}{mode}, uploading {} now",
                        d.kind.as_str(),
                        client.url(),
                        fmt_mbps(reading.rate_bps)
                    ),
                );
            }
            Err(e) => r.push(
                Level::Fail,
                format!(
                    "downloader {name}: {e}. The daemon keeps managing Jellyfin and tries again \
                     with backoff"
                ),
            ),
        }
    }
    if !settings.downloader.is_empty() {
        let p = &settings.bandwidth.downloaders;
        r.push(
            Level::Info,
            format!(
                "downloaders: priority {}, at least {} together{}",
                p.priority.as_str(),
                fmt_mbps(p.min_bps()),
                if p.priority == crate::config::DownloaderPriority::Share {
                    format!(", weight {}", p.weight)
                } else {
                    String::new()
                }
            ),
        );
    }
}

/// Each other media server: what it streams outside the house now, and how that counts.
async fn server_lines(r: &mut CheckReport, settings: &Settings) {
    let names = crate::config::server_names(&settings.server);
    for (s, name) in settings
        .server
        .iter()
        .zip(names)
        .filter(|(s, _)| s.is_plex())
    {
        let plex = match crate::plex::Plex::new(s) {
            Ok(p) => p,
            Err(e) => {
                r.push(Level::Fail, format!("server {name}: {e}"));
                continue;
            }
        };
        match plex.remote_streams().await {
            Ok(streams) => {
                let total = crate::plex::remote_bps(&streams);
                let counted = if s.manages_wan_total() {
                    "one claimant beside Jellyfin's remote users: the daemon sets its share as \
                     its total upload limit"
                } else if settings.bandwidth.meter.is_some() {
                    "the meter measures it with the rest of the house"
                } else {
                    "taken off the budget before Jellyfin's streams share it"
                };
                r.push(
                    Level::Ok,
                    format!(
                        "server {name}: {} at {}, {} stream{} outside the house, {} ({counted})",
                        s.kind.as_str(),
                        plex.url(),
                        streams.len(),
                        if streams.len() == 1 { "" } else { "s" },
                        fmt_mbps(total)
                    ),
                );
                // The total Plex keeps to now: the owner's, or the daemon's share (managed).
                match plex.wan_total_limit().await {
                    Ok(None) => r.push(
                        Level::Info,
                        format!(
                            "  its external network total upload limit ({}) is off",
                            crate::plex::WAN_TOTAL
                        ),
                    ),
                    Ok(Some(l)) => r.push(
                        Level::Info,
                        format!(
                            "  it keeps its streams outside the house to {} in total ({})",
                            fmt_mbps(l),
                            crate::plex::WAN_TOTAL
                        ),
                    ),
                    Err(e) => r.push(Level::Warn, format!("  cannot read its upload limit: {e}")),
                }
                for st in &streams {
                    r.push(
                        Level::Info,
                        format!(
                            "  {} on {} ({}): {}",
                            crate::escape::escape_controls(&st.user),
                            crate::escape::escape_controls(&st.player),
                            crate::escape::escape_controls(&st.state),
                            fmt_mbps(st.bandwidth_bps)
                        ),
                    );
                }
            }
            Err(e) => r.push(
                Level::Fail,
                format!(
                    "server {name}: {e}. The daemon keeps managing Jellyfin, counts the last \
                     reading for {} min, and tries again with backoff",
                    crate::budget::feed::SERVER_STALE_AFTER.as_secs() / 60
                ),
            ),
        }
    }
}

/// Each other Jellyfin or Emby server: whether it answers to its key, its users and what
/// plays on it now.
async fn member_lines(r: &mut CheckReport, settings: &Settings) {
    let names = crate::config::server_names(&settings.server);
    for (s, name) in settings
        .server
        .iter()
        .zip(names)
        .filter(|(s, _)| s.manages_users())
    {
        let flavor = match s.kind {
            crate::config::ServerKind::Emby => crate::jellyfin::Flavor::Emby,
            _ => crate::jellyfin::Flavor::Jellyfin,
        };
        let client = match s.api_key().map_err(|e| e.to_string()).and_then(|key| {
            Client::with_flavor(flavor, &s.url, &key, s.timeout).map_err(|e| e.to_string())
        }) {
            Ok(c) => c,
            Err(e) => {
                r.push(Level::Fail, format!("server {name}: {e}"));
                continue;
            }
        };
        let read = tokio::try_join!(client.public_info(), client.users(), client.sessions());
        match read {
            Ok((info, users, sessions)) => {
                let playing = sessions.iter().filter(|s| s.is_playing()).count();
                r.push(
                    Level::Ok,
                    format!(
                        "server {name}: {} {} at {}, {} user{}, {playing} playing (its users \
                         share the budget, named user@{name})",
                        info.product_name.as_deref().unwrap_or(s.kind.as_str()),
                        info.version.as_deref().unwrap_or("(version unknown)"),
                        client.shown_url(),
                        users.len(),
                        if users.len() == 1 { "" } else { "s" },
                    ),
                );
            }
            Err(e) => r.push(
                Level::Fail,
                format!(
                    "server {name}: {e}. The daemon manages the other servers meanwhile, keeps \
                     this one's last read, and reads it again at each pass"
                ),
            ),
        }
    }
}

/// One reading of the meter, and when it was asked for.
async fn read_meter(
    meter: &mut crate::budget::meter::Meter,
    timeout: std::time::Duration,
) -> Result<(std::time::Instant, crate::budget::meter::Counter), String> {
    let started = std::time::Instant::now();
    match tokio::time::timeout(timeout, meter.read()).await {
        Ok(r) => r.map(|c| (started, c)),
        Err(_) => Err("no answer in time".to_string()),
    }
}

/// Whether the open-file limit (as a daemon started from here would have it) leaves room for
/// `daemon.http_max_connections` beside the files the daemon needs itself.
fn open_files(r: &mut CheckReport, configured: usize) {
    let Some(limit) = crate::fds::hard_limit() else {
        return;
    };
    let cap = crate::fds::cap_for(limit, configured);
    if cap < configured {
        r.push(
            Level::Warn,
            format!(
                "the open-file limit here is {limit}: a daemon started from here serves at \
                 most {cap} connections (daemon.http_max_connections = {configured}) and keeps \
                 {} files for the state file, Jellyfin and the restore; raise it (LimitNOFILE= \
                 in the service, ulimit -n, the container's --ulimit nofile)",
                crate::fds::FDS_RESERVED
            ),
        );
    }
}

/// The state file reads, its directory can be written in, and whether a daemon uses it now.
fn state(r: &mut CheckReport, path: &std::path::Path) {
    let fail = |r: &mut CheckReport, e: ledger::LedgerError| {
        r.push(Level::Fail, e.to_string());
        r.state_failed = true;
    };
    if let Err(e) = ledger::check_writable(path) {
        return fail(r, e);
    }
    let l = match Ledger::open(path) {
        Ok(l) => l,
        Err(e) => return fail(r, e),
    };
    let dir = ledger::directory(path);
    r.push(
        Level::Ok,
        if dir.exists() {
            format!(
                "state file {}: {} user(s) with a recorded original; its directory is writable",
                path.display(),
                l.len()
            )
        } else {
            format!(
                "state file {}: not there yet; its directory {} does not exist and can be \
                 created (the first run creates it)",
                path.display(),
                dir.display()
            )
        },
    );
    if let Some(holder) = ledger::in_use(path) {
        r.push(
            Level::Info,
            format!("a running jellydemon{holder} is using the state file"),
        );
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
