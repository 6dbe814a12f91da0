//! The simulated world: what each user plays at what rate, the limits Jellyfin holds, the
//! link, the household and the torrent client; and each manager's action on it (jellydemon's,
//! through its engine core, in `world/daemon.rs`).

mod daemon;

use std::time::Duration;

use crate::adapters::ledger::LedgerHandle;
use crate::config::{Algorithm, Settings};
use crate::core::allocate::{self, Claimant};
use crate::daemon::engine::logic::Core;
use crate::ids::UserName;

use super::{
    ClientKind, Figures, Manager, SEEDER_FLOWS, Seeding, UserTrace, VIDEO_MIN_BPS,
    fewest_transcodes,
};

/// What one user is playing.
#[derive(Debug, Clone)]
pub(super) struct Playing {
    pub(super) item: usize,
    pub(super) source: u64,
    pub(super) rate: u64,
}

pub(super) struct World<'a> {
    pub(super) traces: &'a [UserTrace],
    pub(super) settings: std::sync::Arc<Settings>,
    pub(super) budget: u64,
    /// The per-user floor (`min_per_user_mbps`).
    pub(super) floor: u64,
    pub(super) limits: Vec<i64>,
    pub(super) client_max: Vec<Option<u64>>,
    pub(super) playing: Vec<Option<Playing>>,
    pub(super) ledger: LedgerHandle,
    /// The daemon's engine core (`src/daemon/engine/logic.rs`): its schedule, model, memory
    /// and history recorder; it plans for `Manager::Daemon`.
    pub(super) core: Core,
    pub(super) weights: Vec<u64>,
    pub(super) fig: Figures,
    /// The link's upload capacity.
    pub(super) link: u64,
    /// The rest of the house's upload now.
    pub(super) other: u64,
    /// Bytes sent on the WAN so far (what a meter reads).
    pub(super) counter: f64,
    /// The meter's estimator, when the budget follows it.
    pub(super) estimator: Option<crate::adapters::budget::estimate::Estimator>,
    /// The seeder on the link.
    pub(super) seeding: Seeding,
    /// Its limit in force (`None`: unlimited).
    pub(super) seeder_limit: Option<u64>,
    /// The history the daemon would write, when asked for ([`run_recorded`]).
    pub(super) history: Option<Recording>,
    /// Users who watch on Plex ([`run_beside_plex`]).
    pub(super) plex: Vec<bool>,
    /// Users on a second Jellyfin ([`run_beside_second_jellyfin`]).
    pub(super) member: Vec<bool>,
    /// Plex's `WanTotalMaxUploadRate` as jellydemon last set it, bits/s (`None`: not
    /// managed, Plex plays every source).
    pub(super) plex_wan: Option<u64>,
}

/// The history of a simulated run: the rows of the engine core's recorder, fed every plan.
pub(super) struct Recording {
    /// Unix milliseconds at simulated time 0.
    pub(super) start_ms: u64,
    pub(super) rows: Vec<crate::adapters::history::Record>,
}

impl World<'_> {
    /// Jellyfin starts an item: the rate is fixed now.
    pub(super) fn start(&mut self, u: usize, i: usize) {
        let source = self.traces[u].items[i].source;
        let rate = match self.traces[u].client {
            _ if self.plex[u] => self.plex_rate(u, source),
            ClientKind::Ignores => source,
            ClientKind::Fixed => self.capped(u, source, None),
            ClientKind::Pushable => self.capped(u, source, self.client_max[u]),
        };
        self.playing[u] = Some(Playing {
            item: i,
            source,
            rate,
        });
    }

    /// What Plex gives a stream it starts: its source, or what its total leaves beside its
    /// other streams (at least the per-user floor).
    pub(super) fn plex_rate(&self, u: usize, source: u64) -> u64 {
        let Some(total) = self.plex_wan else {
            return source;
        };
        let others: u64 = (0..self.playing.len())
            .filter(|&v| v != u && self.plex[v])
            .filter_map(|v| self.playing[v].as_ref().map(|p| p.rate))
            .sum();
        source.min(total.saturating_sub(others).max(self.floor))
    }

    /// `min(source, the user's limit, the client's own maximum)`.
    pub(super) fn capped(&self, u: usize, source: u64, client_max: Option<u64>) -> u64 {
        let mut rate = source;
        if self.limits[u] > 0 {
            rate = rate.min(self.limits[u] as u64);
        }
        if let Some(max) = client_max {
            rate = rate.min(max);
        }
        rate
    }

    /// Set a user's limit as the writer would (recording the intent first).
    pub(super) fn write(&mut self, u: usize, target: i64) {
        if self.limits[u] != target {
            let id = self.user_id(u);
            // The simulated Jellyfin answers at once: the write is settled as it is made.
            let name = UserName::new(&self.traces[u].name);
            self.ledger.change(|l| {
                let ticket = l.record_intent(&id, &name, self.limits[u], target, 0);
                l.settle(&id, ticket, 0);
            });
            self.limits[u] = target;
            self.fig.writes += 1;
        }
    }

    /// A push to user `u`'s stream: a client that accepts it re-negotiates now.
    pub(super) fn push(&mut self, u: usize, bitrate: u64) {
        if self.traces[u].client != ClientKind::Pushable {
            return;
        }
        self.fig.pushes += 1;
        self.client_max[u] = Some(bitrate);
        if let Some(p) = self.playing[u].clone() {
            let rate = self.capped(u, p.source, Some(bitrate));
            self.playing[u] = Some(Playing { rate, ..p });
        }
    }

    /// Let the manager act at `now`; returns when it wants to act again.
    pub(super) fn manage(&mut self, manager: Manager, now: u64) -> Option<u64> {
        match manager {
            Manager::None => None,
            Manager::Poll30 => {
                let active: Vec<usize> = (0..self.playing.len())
                    .filter(|u| self.playing[*u].is_some())
                    .collect();
                if !active.is_empty() {
                    let share = (self.budget / active.len() as u64) as i64;
                    for u in active {
                        self.write(u, share);
                    }
                }
                None
            }
            Manager::FirstRule(algorithm) => {
                self.first_rule(algorithm);
                None
            }
            Manager::Daemon(_) => self.daemon(now),
        }
    }

    /// What each remote stream and the seeder get on the link now: everyone their demand when
    /// the link has room, else max-min fair per connection (a stream one, the house one, the
    /// seeder [`SEEDER_FLOWS`]). Returns the streams' rates (in `self.playing` order of the
    /// playing users) and the seeder's.
    pub(super) fn on_the_link(&self, streams: &[(usize, &Playing)]) -> (Vec<u64>, u64) {
        let seeder_demand = match (self.seeding, self.seeder_limit) {
            (Seeding::Absent, _) => return (streams.iter().map(|(_, p)| p.rate).collect(), 0),
            (_, Some(l)) if self.seeding != Seeding::Uncontrolled => l,
            _ => self.link,
        };
        let total: u64 =
            streams.iter().map(|(_, p)| p.rate).sum::<u64>() + self.other + seeder_demand;
        if total <= self.link {
            return (streams.iter().map(|(_, p)| p.rate).collect(), seeder_demand);
        }
        let mut claimants: Vec<Claimant> = streams
            .iter()
            .map(|(_, p)| Claimant {
                weight_milli: 1000,
                floor: 0,
                ceiling: p.rate,
                demand: p.rate,
            })
            .collect();
        claimants.push(Claimant {
            weight_milli: 1000,
            floor: 0,
            ceiling: self.other,
            demand: self.other,
        });
        claimants.push(Claimant {
            weight_milli: 1000 * SEEDER_FLOWS,
            floor: 0,
            ceiling: seeder_demand,
            demand: seeder_demand,
        });
        let a = allocate::allocate(Algorithm::Priority, &claimants, self.link).shares;
        let seeder = a[a.len() - 1];
        (a[..streams.len()].to_vec(), seeder)
    }

    /// The first rule, kept for comparison: the active users' limits split the budget
    /// (demand: by the current rate), idle users get the fair share with one more bounded by
    /// `budget - Σ max(rate, limit)`, and streams above their new limit are pushed down.
    pub(super) fn first_rule(&mut self, algorithm: Algorithm) {
        let b = self.settings.budget();
        let overhead = self.settings.bandwidth.demand.overhead;
        let hysteresis = self.settings.bandwidth.hysteresis_percent;
        let floor = b.min_per_user_bps;
        let ceiling = crate::config::MAX_JELLYFIN_LIMIT_BPS;
        let active: Vec<usize> = (0..self.playing.len())
            .filter(|u| self.playing[*u].is_some())
            .collect();
        let claimants: Vec<Claimant> = active
            .iter()
            .map(|&u| Claimant {
                weight_milli: self.weights[u],
                floor,
                ceiling,
                demand: (self.playing[u].as_ref().map_or(0, |p| p.rate) as f64 * overhead).round()
                    as u64,
            })
            .collect();
        let alloc = allocate::allocate(algorithm, &claimants, b.budget_bps);
        let mut targets: Vec<u64> = alloc
            .shares
            .iter()
            .map(|s| allocate::quantize(*s, b.step_bps, floor, ceiling))
            .collect();
        let mut total: u64 = targets.iter().sum();
        for (i, &u) in active.iter().enumerate() {
            let cur = self.limits[u].max(0) as u64;
            let new = targets[i];
            if cur >= floor
                && cur != new
                && allocate::within_hysteresis(cur, new, hysteresis)
                && (cur < new || total + (cur - new) <= b.budget_bps)
            {
                total = total + cur - new;
                targets[i] = cur;
            }
        }
        let committed: u64 = active
            .iter()
            .zip(&targets)
            .map(|(&u, t)| self.playing[u].as_ref().map_or(0, |p| p.rate).max(*t))
            .sum();
        for (i, &u) in active.iter().enumerate() {
            self.write(u, targets[i] as i64);
            if self.playing[u]
                .as_ref()
                .is_some_and(|p| p.rate > targets[i])
            {
                self.push(u, targets[i]);
            }
        }
        let headroom = b.budget_bps.saturating_sub(committed);
        for u in 0..self.playing.len() {
            if self.playing[u].is_some() {
                continue;
            }
            let mut with = claimants.clone();
            with.push(Claimant {
                weight_milli: self.weights[u],
                floor,
                ceiling,
                demand: ceiling,
            });
            let fair = *allocate::allocate(algorithm, &with, b.budget_bps)
                .shares
                .last()
                .expect("one more");
            let join =
                allocate::quantize(fair.min(headroom).max(floor), b.step_bps, floor, ceiling);
            let cur = self.limits[u].max(0) as u64;
            let keep = cur >= floor
                && allocate::within_hysteresis(cur, join, hysteresis)
                && (cur <= join || cur <= headroom);
            self.write(u, if keep { cur } else { join } as i64);
        }
    }

    /// The meter is read at `now`: the estimator gets the WAN's counter and Jellyfin's
    /// streams as the daemon estimates them (rates x overhead). Returns whether the budget
    /// changed (the daemon then re-plans).
    pub(super) fn read_meter(&mut self, now: u64) -> bool {
        let overhead = self.settings.bandwidth.demand.overhead;
        let jellyfin: u64 = self
            .playing
            .iter()
            .flatten()
            .map(|p| (p.rate as f64 * overhead) as u64)
            .sum();
        let sample = crate::adapters::budget::estimate::Sample {
            at: Duration::from_millis(now),
            bytes: self.counter as u64,
            wraps_at: None,
        };
        let Some(e) = self.estimator.as_mut() else {
            return false;
        };
        let changed = e.sample(sample, jellyfin).is_some();
        self.fig.budget_changes += u64::from(changed);
        changed
    }

    /// Integrate the figures over `[from, to)`, during which nothing changes.
    pub(super) fn measure(&mut self, from: u64, to: u64) {
        let dt = to.saturating_sub(from);
        if dt == 0 {
            return;
        }
        let streams: Vec<(usize, &Playing)> = self
            .playing
            .iter()
            .enumerate()
            .filter_map(|(u, p)| p.as_ref().map(|p| (u, p)))
            .collect();
        let (delivered, seeder) = self.on_the_link(&streams);
        let remote: u64 = delivered.iter().sum();
        self.counter += (remote + self.other + seeder) as f64 * dt as f64 / 1000.0 / 8.0;
        if self.seeding != Seeding::Absent {
            let wanted: u64 = streams.iter().map(|(_, p)| p.rate).sum::<u64>()
                + self.other
                + match (self.seeding, self.seeder_limit) {
                    (Seeding::Uncontrolled, _) | (_, None) => self.link,
                    (_, Some(l)) => l,
                };
            let f = &mut self.fig;
            f.seeder_sent += dt as f64 * seeder as f64;
            f.seeder_left += dt as f64 * self.budget.saturating_sub(remote) as f64;
            if wanted > self.link {
                f.link_over_ms += dt;
            }
        }
        if streams.is_empty() {
            return;
        }
        let budget = self.budget as f64;
        let total: f64 = streams.iter().map(|(_, p)| p.rate as f64).sum();
        let quiet = self.other == 0;
        let saturated = total + self.other as f64 > self.link as f64 * 1.001;
        let transcodes = streams
            .iter()
            .filter(|(_, p)| p.source > VIDEO_MIN_BPS && p.rate < p.source)
            .count();
        let f = &mut self.fig;
        f.streamed_ms += dt;
        f.play_ms += dt * streams.len() as u64;
        if f.transcodes_ms.len() <= transcodes {
            f.transcodes_ms.resize(transcodes + 1, 0);
        }
        f.transcodes_ms[transcodes] += dt;
        let sources: Vec<u64> = streams.iter().map(|(_, p)| p.source).collect();
        let fewest = fewest_transcodes(&sources, self.budget, self.floor);
        if f.fewest_transcodes_ms.len() <= fewest {
            f.fewest_transcodes_ms.resize(fewest + 1, 0);
        }
        f.fewest_transcodes_ms[fewest] += dt;
        if saturated {
            f.saturated_ms += dt;
        }
        if quiet {
            f.quiet_ms += dt;
        }
        if total > budget * 1.001 {
            f.over_ms += dt;
        }
        if total > budget * 1.05 {
            f.over5_ms += dt;
        }
        f.peak = f.peak.max(total / budget);
        f.util_integral += dt as f64 * total.min(budget) / budget;
        // The clairvoyant ideal: weighted max-min water-filling of the sources.
        let claimants: Vec<Claimant> = streams
            .iter()
            .map(|(u, p)| Claimant {
                weight_milli: self.weights[*u],
                floor: 0,
                ceiling: p.source,
                demand: p.source,
            })
            .collect();
        let ideal = allocate::allocate(Algorithm::Priority, &claimants, self.budget).shares;
        let mut sum = 0.0;
        let mut sq = 0.0;
        for (((_, _), i), got) in streams.iter().zip(&ideal).zip(&delivered) {
            let i = (*i).max(1) as f64;
            let got = *got as f64;
            f.served += dt as f64 * got.min(i);
            if quiet {
                f.quiet_served += dt as f64 * got.min(i);
            }
            f.ideal += dt as f64 * i;
            let x = got / i;
            sum += x;
            sq += x * x;
        }
        if streams.len() >= 2 {
            f.jain_integral += dt as f64 * sum * sum / (streams.len() as f64 * sq);
            f.jain_ms += dt;
        }
    }
}
