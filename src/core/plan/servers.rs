//! The other media servers whose total upload limit jellydemon sets (Plex's
//! `WanTotalMaxUploadRate`, `[[server]] manage_wan_total`): each is one claimant beside
//! Jellyfin's remote users, and its share becomes its limit.
//!
//! * A server that streams outside the house takes part in the water-filling like a user
//!   (weight 1, the per-user floor, no ceiling: what it could use is not known). The
//!   streams' budget leaves it its share, or what it streams now when that is more: whether
//!   Plex lowers a stream already playing when its total drops is not known
//!   (`docs/media-servers.md`), so until it does, what it sends is not shared out again.
//! * A server that streams nothing takes nothing from the streams; its limit is the share a
//!   newcomer would get, so a stream it starts fits beside the others once they are pushed.
//! * With `[[downloader]] priority = "share"` the torrent clients are one more claimant in
//!   the same water-filling.

use crate::config::{Algorithm, DownloaderPriority, Settings};
use crate::core::allocate::{self, Claimant};
use crate::core::rate::Mbps;

/// One server whose total limit the plan sets, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerClaim {
    /// Its name (`server.name`, or its kind).
    pub name: String,
    /// What it streams outside the house now, bits/s (0: nothing).
    pub streaming_bps: u64,
}

/// What the plan gives such a server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerShare {
    /// Its name.
    pub name: String,
    /// Its total upload limit outside the house, bits/s.
    pub limit: u64,
    /// What the streams' budget leaves it, bits/s: its share, or what it streams now when
    /// that is more; 0 while it streams nothing.
    pub kept: u64,
    /// Why, in a sentence.
    pub reason: String,
}

/// What the torrent clients and the servers keep out of `available` before Jellyfin's users
/// share the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Others {
    /// The torrent clients' part (`None` without `[[downloader]]`).
    pub downloaders: Option<u64>,
    /// Each server's share, in the order given.
    pub servers: Vec<ServerShare>,
}

impl Others {
    /// What the servers keep together.
    pub fn servers_kept(&self) -> u64 {
        self.servers.iter().map(|s| s.kept).sum()
    }
}

/// The torrent clients' and the servers' parts of `available` beside `claimants` (the active
/// users, at their weights: they count at them only with `algorithm = "priority"`).
pub fn others(
    settings: &Settings,
    claimants: &[Claimant],
    servers: &[ServerClaim],
    available: u64,
) -> Others {
    if servers.is_empty() && settings.downloader.is_empty() {
        // Nobody else on the link: nothing to water-fill.
        return Others {
            downloaders: None,
            servers: Vec::new(),
        };
    }
    let floor = settings.budget().min_per_user_bps;
    let weighted = settings.bandwidth.algorithm == Algorithm::Priority;
    let open = |weight_milli: u64, floor: u64| Claimant {
        weight_milli,
        floor,
        ceiling: u64::MAX / 4,
        demand: u64::MAX / 4,
    };
    let mut all: Vec<Claimant> = claimants
        .iter()
        .map(|c| Claimant {
            weight_milli: if weighted { c.weight_milli } else { 1000 },
            ..*c
        })
        .collect();
    let users = all.len();
    let streaming: Vec<usize> = (0..servers.len())
        .filter(|&i| servers[i].streaming_bps > 0)
        .collect();
    all.extend(streaming.iter().map(|_| open(1000, floor)));
    let policy = &settings.bandwidth.downloaders;
    let min = policy.min_bps().min(available);
    let downloaders_claim =
        !settings.downloader.is_empty() && policy.priority == DownloaderPriority::Share;
    if downloaders_claim {
        all.push(open(allocate::weight_milli(policy.weight), min));
    }
    let shares = allocate::fair_by_demand(Algorithm::Priority, &all, available).shares;
    let downloaders = (!settings.downloader.is_empty()).then(|| {
        if downloaders_claim {
            shares.last().copied().unwrap_or(min).clamp(min, available)
        } else {
            min
        }
    });
    // A newcomer's share: what an idle server's stream would get once it joins (asked only
    // when a server streams nothing).
    let newcomer = (streaming.len() < servers.len()).then(|| {
        let mut with_newcomer = all.clone();
        with_newcomer.push(open(1000, floor));
        allocate::fair_by_demand(Algorithm::Priority, &with_newcomer, available)
            .shares
            .last()
            .copied()
            .unwrap_or(0)
            .max(floor.min(available))
    });
    let servers = servers
        .iter()
        .enumerate()
        .map(|(i, s)| match streaming.iter().position(|&j| j == i) {
            Some(k) => {
                let share = shares.get(users + k).copied().unwrap_or(0);
                let kept = share.max(s.streaming_bps).min(available);
                let mut reason = format!(
                    "its share of {} as one claimant beside {} remote user{}",
                    Mbps(available),
                    users,
                    if users == 1 { "" } else { "s" }
                );
                if s.streaming_bps > share {
                    reason.push_str(&format!(
                        "; it streams {} now, kept for it until it follows",
                        Mbps(s.streaming_bps)
                    ));
                }
                ServerShare {
                    name: s.name.clone(),
                    limit: share,
                    kept,
                    reason,
                }
            }
            None => ServerShare {
                name: s.name.clone(),
                limit: newcomer.unwrap_or(0),
                kept: 0,
                reason: format!(
                    "a newcomer's share of {}: it streams nothing outside the house now",
                    Mbps(available)
                ),
            },
        })
        .collect();
    Others {
        downloaders,
        servers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBPS: u64 = 1_000_000;

    fn settings(extra: &str) -> Settings {
        Settings::from_toml_str(&format!(
            "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\n\
             api_key = \"0123456789abcdef0123456789abcdef\"\n\
             [bandwidth]\ntotal_upload_mbps = 100\nmin_per_user_mbps = 2\n{extra}"
        ))
        .unwrap()
    }

    fn user() -> Claimant {
        Claimant {
            weight_milli: 1000,
            floor: 2 * MBPS,
            ceiling: 100 * MBPS,
            demand: 100 * MBPS,
        }
    }

    fn plex(bps: u64) -> ServerClaim {
        ServerClaim {
            name: "plex".into(),
            streaming_bps: bps,
        }
    }

    #[test]
    fn a_streaming_server_is_one_claimant_beside_the_users() {
        let s = settings("");
        let o = others(&s, &[user(), user(), user()], &[plex(5 * MBPS)], 80 * MBPS);
        assert_eq!(o.downloaders, None);
        let p = &o.servers[0];
        assert_eq!(p.limit, 20 * MBPS, "{p:?}");
        assert_eq!(p.kept, 20 * MBPS, "its share is kept for it: {p:?}");
        assert!(p.reason.contains("beside 3 remote users"), "{}", p.reason);
    }

    #[test]
    fn what_a_server_streams_over_its_share_stays_kept_until_it_follows() {
        let s = settings("");
        let o = others(&s, &[user(), user(), user()], &[plex(35 * MBPS)], 80 * MBPS);
        let p = &o.servers[0];
        assert_eq!(p.limit, 20 * MBPS);
        assert_eq!(p.kept, 35 * MBPS);
        assert!(p.reason.contains("streams 35 Mbps now"), "{}", p.reason);
        assert_eq!(o.servers_kept(), 35 * MBPS);
    }

    #[test]
    fn an_idle_server_keeps_nothing_and_is_limited_to_a_newcomers_share() {
        let s = settings("");
        let o = others(&s, &[user(), user()], &[plex(0)], 60 * MBPS);
        let p = &o.servers[0];
        assert_eq!(p.kept, 0);
        assert_eq!(p.limit, 20 * MBPS, "a third of 60 Mbps: {p:?}");
        let alone = others(&s, &[], &[plex(0)], 60 * MBPS);
        assert_eq!(alone.servers[0].limit, 60 * MBPS);
    }

    #[test]
    fn sharing_torrent_clients_and_a_server_split_the_rest_with_the_users() {
        let s = settings(
            "[bandwidth.downloaders]\npriority = \"share\"\n\
             [[downloader]]\nkind = \"qbittorrent\"\nurl = \"http://127.0.0.1:8080\"\n",
        );
        let o = others(&s, &[user(), user()], &[plex(MBPS)], 80 * MBPS);
        assert_eq!(o.downloaders, Some(20 * MBPS));
        assert_eq!(o.servers[0].limit, 20 * MBPS);
        // Without the server the clients' share is a third.
        let without = others(&s, &[user(), user()], &[], 90 * MBPS);
        assert_eq!(without.downloaders, Some(30 * MBPS));
    }
}
