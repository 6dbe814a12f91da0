//! What jellydemon sees of the simulated world (its sessions and users as the servers list
//! them, the budget in force, the webhooks) and its engine core's action on it.

use std::collections::HashMap;
use std::time::Duration;

use crate::adapters::budget::feed::BudgetState;
use crate::adapters::jellyfin::{MediaStream, NowPlayingItem, PlayState, Session, TranscodingInfo};
use crate::adapters::webhook::{EventKind, HookEvent};
use crate::core::plan::{self, PUSH_COMMAND};
use crate::daemon::engine::logic::{Effect, PlanWith};
use crate::daemon::seeders::Seeding as SeederLimit;
use crate::daemon::servers::ServerLimits;
use crate::ids::{DeviceId, SessionId, UserId, UserName};
use crate::network;
use crate::sim::effectiveness::{ClientKind, VIDEO_MIN_BPS};
use crate::snapshot::Snapshot;

use super::{Playing, World};

impl World<'_> {
    /// The budget in force now: the static one or the meter's, less what Plex streams
    /// outside the house when jellydemon does not set its total (else Plex is a claimant).
    pub(in crate::sim::effectiveness) fn budget_state(&self) -> BudgetState {
        // What Plex streams outside the house: a claimant's reading when its total is managed,
        // else taken off the budget first (src/adapters/budget/feed.rs).
        let on_plex: u64 = (0..self.traces.len())
            .filter(|&u| self.plex[u])
            .filter_map(|u| self.playing[u].as_ref().map(|p| p.rate))
            .sum();
        let claims: Vec<plan::ServerClaim> = self
            .plex_wan
            .map(|_| plan::ServerClaim {
                name: "plex".into(),
                streaming_bps: on_plex,
            })
            .into_iter()
            .collect();
        let off_budget = if self.plex_wan.is_some() { 0 } else { on_plex };
        let b = &self.settings.bandwidth;
        BudgetState {
            budget_bps: self
                .estimator
                .as_ref()
                .map_or(self.budget, |e| e.reading().budget_bps)
                .saturating_sub(off_budget),
            static_bps: self.budget,
            source: "static",
            cause: crate::adapters::budget::feed::configured(b.total_upload_mbps, b.reserved_mbps),
            meter: None,
            servers: Vec::new(),
            claims,
        }
    }

    /// What the servers look like to the daemon now.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            sessions: (0..self.playing.len())
                .filter(|&u| !self.plex[u])
                .filter_map(|u| {
                    self.playing[u]
                        .as_ref()
                        .map(|p| (&self.session(u, p)).into())
                })
                .collect(),
            users: (0..self.traces.len())
                .filter(|&u| !self.plex[u])
                .map(|u| self.user(u))
                .collect(),
            server_limit: 0,
            ranges: network::jellyfin_default_ranges(),
            members: Vec::new(),
        }
    }

    /// One pass of the daemon's engine core on what the servers show now, then its writes
    /// and pushes, each reported back to the core as the writer does; returns the plan's
    /// wake-up.
    pub(in crate::sim::effectiveness) fn daemon(&mut self, now: u64) -> Option<u64> {
        *self.core.model_mut() = Some(self.snapshot());
        let budget = self.budget_state();
        let with = PlanWith {
            // Nobody changes a limit by hand here.
            fresh: false,
            ledger: &self.ledger,
            overrides: &crate::core::control::Overrides::NONE,
            budget: &budget,
            now_ms: self.history.as_ref().map_or(0, |h| h.start_ms) + now,
            dry_run: false,
        };
        let at = Duration::from_millis(now);
        let planned = match self.core.on_snapshot(&with, at) {
            Some(Ok(planned)) => planned,
            _ => unreachable!("the simulated servers always give a model to plan from"),
        };
        let index: HashMap<UserId, usize> = (0..self.traces.len())
            .map(|u| (self.user_id(u), u))
            .collect();
        for effect in planned.effects {
            match effect {
                Effect::Seeding(Some(SeederLimit::Limit(l))) => self.seeder_limit = Some(l),
                Effect::Servers(ServerLimits::Limits(totals)) => {
                    if let Some((_, limit)) = totals.first() {
                        self.plex_wan = Some(*limit);
                    }
                }
                Effect::Record(rows) => {
                    if let Some(h) = &mut self.history {
                        h.rows.extend(rows);
                    }
                }
                Effect::Write(decisions) => {
                    for d in &decisions {
                        let u = index[&d.user_id];
                        self.write(u, d.target);
                        self.core.on_landed(&d.user_id, d.target);
                        for (s, p) in d.pushes() {
                            self.core.on_push_sent(&s.session_id, at, p.bitrate);
                            self.push(u, p.bitrate);
                        }
                    }
                }
                Effect::Seeding(_)
                | Effect::Servers(_)
                | Effect::Streaming(_)
                | Effect::Notify(_) => {}
            }
        }
        planned.wake_at.map(|w| w.as_millis() as u64)
    }

    /// User `u`'s PlaybackStart or PlaybackStop (`start`), as the webhook tells the daemon.
    pub(in crate::sim::effectiveness) fn hook(&self, u: usize, start: bool) -> HookEvent {
        let p = self.playing[u].as_ref().filter(|_| start);
        HookEvent {
            kind: if start {
                EventKind::PlaybackStart
            } else {
                EventKind::PlaybackStop
            },
            user_id: Some(self.user_id(u)),
            user_name: Some(self.user_name(u)),
            session_id: Some(self.session_id(u)),
            device_id: Some(self.device_id(u)),
            device_name: Some(self.device_name(u)),
            client: None,
            remote_end_point: Some(self.endpoint(u)),
            item_id: p.map(|p| self.item_id(u, p)),
            item_name: None,
            is_paused: Some(false),
            play_method: None,
            video_bitrate: p.map(|p| p.source as i64),
            audio_bitrate: None,
        }
    }

    /// The daemon's answer to user `u`'s PlaybackStart (its engine core's): the seeder's
    /// limit lowered by what the item needs (its source times the overhead, at most the
    /// user's limit).
    pub(in crate::sim::effectiveness) fn make_room(&mut self, u: usize) {
        if self.playing[u].is_none() {
            return;
        }
        let ev = self.hook(u, true);
        if let Some(Effect::Seeding(Some(SeederLimit::Limit(l)))) = self.core.make_room(&ev) {
            self.seeder_limit = Some(l);
        }
    }

    /// User `u`'s session on its server, as the webhooks and `/Sessions` name it.
    fn session_id(&self, u: usize) -> SessionId {
        SessionId::new(format!("{}{:032x}", self.prefix(u), u + 1))
    }

    /// Where user `u` streams from (outside the house).
    fn endpoint(&self, u: usize) -> String {
        format!("203.0.113.{}", 10 + u)
    }

    fn device_id(&self, u: usize) -> DeviceId {
        DeviceId::new(format!("device-{u}"))
    }

    fn device_name(&self, u: usize) -> String {
        format!("device {u}")
    }

    /// The id of the item user `u` plays.
    fn item_id(&self, u: usize, p: &Playing) -> String {
        format!("{:016x}{:016x}", u + 1, p.item + 1)
    }

    /// A `/Sessions` entry for what user `u` plays.
    pub(in crate::sim::effectiveness) fn session(&self, u: usize, p: &Playing) -> Session {
        let pushable = self.traces[u].client == ClientKind::Pushable;
        Session {
            id: self.session_id(u),
            user_id: Some(self.user_id(u)),
            user_name: Some(self.user_name(u)),
            remote_end_point: Some(self.endpoint(u)),
            client: Some(
                if pushable {
                    "Jellyfin Web"
                } else {
                    "Jellyfin Android TV"
                }
                .into(),
            ),
            device_name: Some(self.device_name(u)),
            device_id: Some(self.device_id(u)),
            now_playing_item: Some(NowPlayingItem {
                id: Some(self.item_id(u, p)),
                name: None,
                item_type: Some("Episode".into()),
                media_streams: vec![MediaStream {
                    stream_type: Some("Video".into()),
                    bit_rate: Some(p.source as i64),
                    ..MediaStream::default()
                }],
            }),
            play_state: Some(PlayState::default()),
            transcoding_info: (p.rate < p.source).then_some(TranscodingInfo {
                bitrate: Some(p.rate as i64),
                is_video_direct: Some(p.source <= VIDEO_MIN_BPS),
                transcode_reasons: vec!["ContainerBitrateExceedsLimit".into()],
                ..TranscodingInfo::default()
            }),
            supported_commands: if pushable {
                vec![PUSH_COMMAND.to_string()]
            } else {
                Vec::new()
            },
            last_activity_date: None,
        }
    }

    pub(in crate::sim::effectiveness) fn user(&self, u: usize) -> crate::core::media::Account {
        crate::core::media::Account {
            id: self.user_id(u),
            name: Some(self.user_name(u)),
            limit: self.limits[u],
            admin: false,
            disabled: false,
            remote_access: true,
            // A second server's user carries its server's limit (none here).
            server_limit: self.member[u].then_some(0),
            same_as: None,
        }
    }

    /// The second Jellyfin's users' ids and names are namespaced as `src/adapters/jellyfin/fleet.rs`
    /// does it.
    pub(in crate::sim::effectiveness) fn prefix(&self, u: usize) -> &'static str {
        if self.member[u] { "den:" } else { "" }
    }

    pub(in crate::sim::effectiveness) fn user_id(&self, u: usize) -> UserId {
        UserId::new(format!("{}{:032x}", self.prefix(u), 0xa000 + u))
    }

    pub(in crate::sim::effectiveness) fn user_name(&self, u: usize) -> UserName {
        let name = &self.traces[u].name;
        UserName::new(if self.member[u] {
            format!("{name}@den")
        } else {
            name.clone()
        })
    }
}
