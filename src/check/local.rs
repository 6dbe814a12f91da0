//! The checks that need no Jellyfin: the state file, the open-file limit, the budget and its
//! meter, the torrent clients, the other media servers.

use crate::adapters::jellyfin::Client;
use crate::adapters::ledger::{self, Ledger};
use crate::config::Settings;
use crate::core::rate::fmt_mbps;

use super::{CheckReport, Level};

/// The schedule in force and the next change; the meter read twice, with the rate it shows.
pub(super) async fn budget_lines(r: &mut CheckReport, settings: &Settings) {
    if let Some(s) = crate::adapters::budget::schedule::from_settings(settings) {
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
    let Some(m) = &settings.bandwidth.meter else {
        return;
    };
    let mut meter = match crate::adapters::budget::meter::Meter::new(m) {
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
    if m.kind() == crate::config::MeterKind::Openwrt {
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
pub(super) async fn downloader_lines(r: &mut CheckReport, settings: &Settings) {
    let names = crate::config::downloader_names(&settings.downloader);
    for (d, name) in settings.downloader.iter().zip(names) {
        let mut client = match crate::adapters::downloader::Downloader::new(d) {
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
                    crate::adapters::downloader::Mode::Normal => "",
                    crate::adapters::downloader::Mode::Alternative => " (alternative limits on)",
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
pub(super) async fn server_lines(r: &mut CheckReport, settings: &Settings) {
    let names = crate::config::server_names(&settings.server);
    for (s, name) in settings
        .server
        .iter()
        .zip(names)
        .filter(|(s, _)| s.is_plex())
    {
        let plex = match crate::adapters::plex::Plex::new(s) {
            Ok(p) => p,
            Err(e) => {
                r.push(Level::Fail, format!("server {name}: {e}"));
                continue;
            }
        };
        match plex.remote_streams().await {
            Ok(streams) => {
                let total = crate::adapters::plex::remote_bps(&streams);
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
                        s.kind().as_str(),
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
                            crate::adapters::plex::WAN_TOTAL
                        ),
                    ),
                    Ok(Some(l)) => r.push(
                        Level::Info,
                        format!(
                            "  it keeps its streams outside the house to {} in total ({})",
                            fmt_mbps(l),
                            crate::adapters::plex::WAN_TOTAL
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
                    crate::adapters::budget::feed::SERVER_STALE_AFTER.as_secs() / 60
                ),
            ),
        }
    }
}

/// Each other Jellyfin or Emby server: whether it answers to its key, its users and what
/// plays on it now.
pub(super) async fn member_lines(r: &mut CheckReport, settings: &Settings) {
    let names = crate::config::server_names(&settings.server);
    for (s, name) in settings
        .server
        .iter()
        .zip(names)
        .filter(|(s, _)| s.manages_users())
    {
        let flavor = match s.kind() {
            crate::config::ServerKind::Emby => crate::adapters::jellyfin::Flavor::Emby,
            _ => crate::adapters::jellyfin::Flavor::Jellyfin,
        };
        let client = match s.api_key().map_err(|e| e.to_string()).and_then(|key| {
            Client::with_flavor(flavor, &s.url, key, s.timeout).map_err(|e| e.to_string())
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
                        info.product_name.as_deref().unwrap_or(s.kind().as_str()),
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
pub(super) async fn read_meter(
    meter: &mut crate::adapters::budget::meter::Meter,
    timeout: std::time::Duration,
) -> Result<(std::time::Instant, crate::adapters::budget::meter::Counter), String> {
    let started = std::time::Instant::now();
    match tokio::time::timeout(timeout, meter.read()).await {
        Ok(r) => r.map(|c| (started, c)),
        Err(_) => Err("no answer in time".to_string()),
    }
}

/// Whether the open-file limit (as a daemon started from here would have it) leaves room for
/// `daemon.http_max_connections` beside the files the daemon needs itself.
pub(super) fn open_files(r: &mut CheckReport, configured: usize) {
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
pub(super) fn state(r: &mut CheckReport, path: &std::path::Path) {
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
