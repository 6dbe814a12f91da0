//! The traces: remote users' sessions of items (seeded, reproducible), their clients, and
//! the household's own uploads beside them.

use super::M;

/// One item a user plays: simulated seconds, source bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// When it starts, simulated seconds.
    pub start: u64,
    /// When it ends.
    pub end: u64,
    /// Its source bitrate, bits/s.
    pub source: u64,
}

/// How a user's client treats limits and pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Lists `SetMaxStreamingBitrate`, honours it, and keeps the pushed bitrate as its own
    /// maximum (the web client).
    Pushable,
    /// Obeys the limit in force when an item starts; cannot be pushed (Android TV, mpv-shim).
    Fixed,
    /// Plays the source whatever the limit (Infuse, Kodi in native mode).
    Ignores,
}

/// One remote user's items over the simulated time.
#[derive(Debug, Clone)]
pub struct UserTrace {
    /// The user's name.
    pub name: String,
    /// How the user's client treats limits.
    pub client: ClientKind,
    /// What the user plays, in order, not overlapping.
    pub items: Vec<Item>,
}

/// A tiny deterministic generator (xorshift64), so traces are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
}

/// The clients of a trace: which users can be pushed, which ignore limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clients {
    /// Every `n`-th user (starting with the first) has a client that accepts pushes; 0: none.
    pub pushable_every: usize,
    /// The last user of every `n` has a client that ignores limits; 0: none.
    pub ignoring_every: usize,
}

impl Clients {
    /// Half the clients accept pushes, none ignores limits.
    pub const HALF_PUSHABLE: Clients = Clients {
        pushable_every: 2,
        ignoring_every: 0,
    };
    /// No client accepts pushes.
    pub const NONE_PUSHABLE: Clients = Clients {
        pushable_every: 0,
        ignoring_every: 0,
    };

    fn kind(&self, u: usize) -> ClientKind {
        if self.ignoring_every > 0 && u % self.ignoring_every == self.ignoring_every - 1 {
            ClientKind::Ignores
        } else if self.pushable_every > 0 && u.is_multiple_of(self.pushable_every) {
            ClientKind::Pushable
        } else {
            ClientKind::Fixed
        }
    }
}

/// `users` remote users over `hours` simulated hours: sessions arrive about every 80 minutes
/// per user, each plays 1-3 items back to back (episodes 22-45 min, films 90-140 min, a few
/// seconds apart) of one kind: remux 60-80 Mbps (20 %), 4K 35-45 (20 %), 1080p 8-12 (45 %) or
/// audio 0.32 (15 %).
pub fn trace(users: usize, hours: u64, seed: u64, clients: Clients) -> Vec<UserTrace> {
    let mut rng = Rng(seed.max(1));
    let horizon = hours * 3600;
    (0..users)
        .map(|u| {
            let mut items = Vec::new();
            let mut t = (rng.unit() * 3600.0) as u64;
            while t < horizon {
                let kind = rng.unit();
                let source = if kind < 0.2 {
                    (60.0 + rng.unit() * 20.0) as u64 * M
                } else if kind < 0.4 {
                    (35.0 + rng.unit() * 10.0) as u64 * M
                } else if kind < 0.85 {
                    (8.0 + rng.unit() * 4.0) as u64 * M
                } else {
                    320_000
                };
                let film = rng.unit() < 0.3;
                for _ in 0..(1 + rng.next() % 3) {
                    let len = if film {
                        90 + rng.next() % 50
                    } else {
                        22 + rng.next() % 24
                    } * 60;
                    items.push(Item {
                        start: t,
                        end: (t + len).min(horizon),
                        source,
                    });
                    t += len + 5;
                    if t >= horizon {
                        break;
                    }
                }
                t += (rng.unit() * 2.0 * 80.0 * 60.0) as u64;
            }
            UserTrace {
                name: format!("user{u:02}"),
                client: clients.kind(u),
                items,
            }
        })
        .collect()
}

/// Upload of the rest of the house: `bps` from `start` to `end`, simulated seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// When it starts.
    pub start: u64,
    /// When it ends.
    pub end: u64,
    /// Its rate, bits/s.
    pub bps: u64,
}

/// A household's own upload over `hours`: every day a cloud backup of 30 Mbps for an hour
/// (starting at a random hour), six video calls of 3 Mbps (20-60 min, between 08:00 and
/// 20:00) and three photo uploads of 20 Mbps for 3 minutes.
pub fn household(hours: u64, seed: u64) -> Vec<Load> {
    let mut rng = Rng(seed.max(1) ^ 0x40_05E);
    let horizon = hours * 3600;
    let mut loads = Vec::new();
    for day in 0..hours.div_ceil(24) {
        let d = day * 86_400;
        let at = d + rng.next() % 23 * 3600;
        loads.push(Load {
            start: at,
            end: at + 3600,
            bps: 30 * M,
        });
        for _ in 0..6 {
            let at = d + 8 * 3600 + rng.next() % (12 * 3600);
            loads.push(Load {
                start: at,
                end: at + (20 + rng.next() % 41) * 60,
                bps: 3 * M,
            });
        }
        for _ in 0..3 {
            let at = d + rng.next() % 86_400;
            loads.push(Load {
                start: at,
                end: at + 180,
                bps: 20 * M,
            });
        }
    }
    loads.retain(|l| l.start < horizon);
    for l in &mut loads {
        l.end = l.end.min(horizon);
    }
    loads
}
