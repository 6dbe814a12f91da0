//! The ledger: each managed user's original `RemoteClientBitrateLimit`, kept in a state file so
//! that nothing jellydemon does can lose it.
//!
//! Rules:
//! * the original is recorded (and the file synced) **before** the first write to a user;
//! * before every write the value about to be written is recorded, and the last few values
//!   written before it are kept: after a crash at any point, or when a snapshot read just before
//!   a write is compared afterwards, the value Jellyfin holds is the original or one of those,
//!   and all are recognized, so a value jellydemon set is never mistaken for an original;
//! * every write is also recorded as *in flight* until Jellyfin answers it. A write nobody saw
//!   answered (the process was killed, the request timed out or was dropped at shutdown) may
//!   still be applied by Jellyfin later, so it stays in flight until the time it was given to
//!   land (`landing_window` in `src/write.rs`); a user leaves the ledger
//!   ([`Ledger::forget`]) only when none of its writes is in flight, so the read that showed
//!   the original cannot be overtaken by a write of ours landing late;
//! * a value that is none of those was set by an admin by hand, and becomes the new original;
//! * the file is replaced atomically (temp file, fsync, rename, fsync of the directory) and is
//!   readable by its owner only;
//! * a state file that cannot be read or parsed is an error, never silently replaced;
//! * one writer at a time: a command that writes (the daemon, `reconcile --once`, `restore`)
//!   holds an exclusive `flock` on `<state file>.lock` for as long as it runs, so a second one
//!   on the same file is refused instead of racing the first for the originals. The lock file
//!   stays (removing it would race a starting writer); the kernel drops the lock when the
//!   process ends, however it ends.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::{UserId, UserName};

mod lock;

use lock::lock;
pub use lock::{check_writable, directory, in_use};

/// The state file's format. Version 2 adds each entry's `in_flight` writes, version 3 the
/// torrent clients' settings (`downloaders`); older files are read as they are.
const VERSION: u32 = 3;
const READABLE: [u32; 3] = [1, 2, 3];

/// How many of its own recent values jellydemon remembers per user.
const RECENT: usize = 8;

/// What jellydemon knows about one user it has changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The user's name when last seen, for humans reading the file.
    pub name: String,
    /// The limit the user had before jellydemon touched it (bits/s; 0 = server default).
    pub original: i64,
    /// The values jellydemon set out to write, oldest first, the last one the newest; each is
    /// recorded before its request is sent.
    #[serde(default)]
    pub ours: Vec<i64>,
    /// Writes sent (or about to be) that Jellyfin has not answered yet: each may still land
    /// until its time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<InFlight>,
}

/// A write of ours that Jellyfin has not answered: it may still be applied until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InFlight {
    /// The value sent (bits/s).
    pub value: i64,
    /// Until when it may still land (Unix time in milliseconds).
    pub until_ms: u64,
    /// Which write this is, within this process; 0 for one read from the file (a process
    /// before this one sent it, and only its time can settle it).
    #[serde(skip)]
    ticket: u64,
}

/// The receipt of [`Ledger::record_intent`], given back to [`Ledger::settle`] once Jellyfin
/// has answered that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "settle the write once Jellyfin has answered it"]
pub struct Ticket(u64);

impl Entry {
    fn new(name: &str, original: i64) -> Entry {
        Entry {
            name: name.to_string(),
            original,
            ours: Vec::new(),
            in_flight: Vec::new(),
        }
    }
    fn observe(&mut self, name: &str, current: i64) -> Observed {
        if !name.is_empty() {
            self.name = name.to_string();
        }
        if current == self.original {
            Observed::Original
        } else if self.is_ours(current) {
            Observed::Ours
        } else {
            let old_original = self.original;
            self.original = current;
            self.ours.clear();
            Observed::HandChanged { old_original }
        }
    }
    fn intend(&mut self, new: i64, until_ms: u64, ticket: u64) -> Ticket {
        self.ours.retain(|v| *v != new);
        self.ours.push(new);
        if self.ours.len() > RECENT {
            self.ours.remove(0);
        }
        self.in_flight.push(InFlight {
            value: new,
            until_ms,
            ticket,
        });
        Ticket(ticket)
    }
    fn settle(&mut self, ticket: Ticket, now_ms: u64) {
        self.in_flight
            .retain(|w| w.ticket != ticket.0 && w.until_ms > now_ms);
    }
    fn is_ours(&self, value: i64) -> bool {
        self.ours.contains(&value) || self.in_flight.iter().any(|w| w.value == value)
    }
    /// Until when (Unix ms) a write of ours may still land, if one may after `now_ms`.
    fn landing_until(&self, now_ms: u64) -> Option<u64> {
        self.in_flight
            .iter()
            .map(|w| w.until_ms)
            .filter(|&t| t > now_ms)
            .max()
    }
    /// The last value jellydemon set out to write.
    pub fn written(&self) -> Option<i64> {
        self.ours.last().copied()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    users: BTreeMap<String, Entry>,
    /// The torrent clients' settings, by `"<downloader>/<field>"` (version 3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    downloaders: BTreeMap<String, Entry>,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file exists but cannot be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file cannot be parsed; it is never overwritten.
    #[error(
        "state file {path} is corrupt ({detail}). It holds the users' original limits, so \
         jellydemon will not overwrite it: repair it, or move it away and set the limits by hand"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The directory of the state file cannot be created or written in.
    #[error(
        "cannot write in the state directory {dir} ({source}): it must exist or be creatable, \
         and be writable by the user jellydemon runs as (state.file sets where it is)"
    )]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another jellydemon holds the lock.
    #[error(
        "state file {path} is in use by another jellydemon{holder}: two writers would race for \
         the original limits. Stop that one first (stopping the daemon puts every original \
         back), or give this one its own state.file"
    )]
    InUse {
        /// The state file.
        path: PathBuf,
        /// " (pid N)" when the holder wrote its pid, else empty.
        holder: String,
    },
    /// The file cannot be replaced.
    #[error("cannot write state file {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How a user's current limit relates to what the ledger knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Not in the ledger: jellydemon has never changed this user.
    Untracked,
    /// The value is the recorded original.
    Original,
    /// The value is one jellydemon wrote.
    Ours,
    /// Neither: an admin changed it by hand. The ledger now holds it as the original.
    HandChanged {
        /// The original before the change.
        old_original: i64,
    },
}

/// The originals, in memory, with the path they persist to.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    users: BTreeMap<UserId, Entry>,
    /// The torrent clients' settings, by `"<downloader>/<field>"`.
    settings: BTreeMap<String, Entry>,
    /// The open lock file while this ledger is the writer ([`Ledger::open_exclusive`]).
    _lock: Option<fs::File>,
    /// The last [`Ticket`] given out.
    tickets: u64,
}

impl Ledger {
    /// Read the ledger at `path`; a missing file is an empty ledger.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        let (users, settings) = match fs::read(path) {
            Ok(bytes) => parse(path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(source) => {
                return Err(LedgerError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Ledger {
            path: path.to_path_buf(),
            users,
            settings,
            _lock: None,
            tickets: 0,
        })
    }

    /// Open the ledger at `path` as its one writer: create its directory if needed, take the
    /// lock (refused with [`LedgerError::InUse`] while another process holds it), then read
    /// it. The lock is held until the ledger is dropped.
    pub fn open_exclusive(path: &Path) -> Result<Ledger, LedgerError> {
        let lock = lock(path)?;
        let mut ledger = Ledger::open(path)?;
        ledger._lock = Some(lock);
        Ok(ledger)
    }

    /// An empty ledger for read-only use (`check`); never save it.
    pub fn in_memory() -> Ledger {
        Ledger {
            path: PathBuf::new(),
            users: BTreeMap::new(),
            settings: BTreeMap::new(),
            _lock: None,
            tickets: 0,
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the ledger knows about `user`.
    pub fn get(&self, user: &UserId) -> Option<&Entry> {
        self.users.get(user)
    }

    /// `user`'s original limit, if jellydemon has changed the user.
    pub fn original(&self, user: &UserId) -> Option<i64> {
        self.users.get(user).map(|e| e.original)
    }

    /// No user is tracked.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// How many users are tracked.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Every tracked user id with its entry.
    pub fn entries(&self) -> impl Iterator<Item = (&UserId, &Entry)> {
        self.users.iter()
    }

    /// Compare a user's current value with the ledger. A hand-made change becomes the new
    /// original (in memory; call [`Ledger::save`] to persist).
    pub fn observe(&mut self, user: &UserId, name: &UserName, current: i64) -> Observed {
        match self.users.get_mut(user) {
            Some(e) => e.observe(name.as_str(), current),
            None => Observed::Untracked,
        }
    }

    /// Record that `new` is about to be written for `user`, whose value is `current` now, and
    /// that the write may land until `until_ms` (Unix ms) unless Jellyfin answers it first
    /// ([`Ledger::settle`]). The first time, `current` is recorded as the original. Persist
    /// before sending.
    pub fn record_intent(
        &mut self,
        user: &UserId,
        name: &UserName,
        current: i64,
        new: i64,
        until_ms: u64,
    ) -> Ticket {
        self.tickets += 1;
        let e = self
            .users
            .entry(user.clone())
            .or_insert_with(|| Entry::new(name.as_str(), current));
        e.intend(new, until_ms, self.tickets)
    }

    /// Jellyfin answered the write of `ticket` (whatever it answered): it can no longer land
    /// later. Writes whose time has passed are dropped as well. Persist afterwards.
    pub fn settle(&mut self, user: &UserId, ticket: Ticket, now_ms: u64) {
        if let Some(e) = self.users.get_mut(user) {
            e.settle(ticket, now_ms);
        }
    }

    /// Until when (Unix ms) a write of ours to `user` may still land, when one may after
    /// `now_ms`: the read that decides whether the user holds the original must come later.
    pub fn landing_until(&self, user: &UserId, now_ms: u64) -> Option<u64> {
        self.users.get(user)?.landing_until(now_ms)
    }

    /// Drop a user (restored, or no longer present), unless a write of ours to it may still
    /// land after `now_ms`: then the user stays, and `false` says so. Persist afterwards.
    pub fn forget(&mut self, user: &UserId, now_ms: u64) -> bool {
        forget(&mut self.users, user, now_ms)
    }

    /// A torrent client's setting (`"<downloader>/<field>"`, `src/adapters/downloader.rs`), by the same
    /// rules as a user's limit: [`Ledger::observe`].
    pub fn observe_setting(&mut self, key: &str, downloader: &str, current: i64) -> Observed {
        match self.settings.get_mut(key) {
            Some(e) => e.observe(downloader, current),
            None => Observed::Untracked,
        }
    }

    /// [`Ledger::record_intent`] for a torrent client's setting.
    pub fn record_setting_intent(
        &mut self,
        key: &str,
        downloader: &str,
        current: i64,
        new: i64,
        until_ms: u64,
    ) -> Ticket {
        self.tickets += 1;
        let e = self
            .settings
            .entry(key.to_string())
            .or_insert_with(|| Entry::new(downloader, current));
        e.intend(new, until_ms, self.tickets)
    }

    /// [`Ledger::settle`] for a torrent client's setting.
    pub fn settle_setting(&mut self, key: &str, ticket: Ticket, now_ms: u64) {
        if let Some(e) = self.settings.get_mut(key) {
            e.settle(ticket, now_ms);
        }
    }

    /// [`Ledger::forget`] for a torrent client's setting.
    pub fn forget_setting(&mut self, key: &str, now_ms: u64) -> bool {
        forget(&mut self.settings, key, now_ms)
    }

    /// What the ledger knows about a torrent client's setting.
    pub fn setting(&self, key: &str) -> Option<&Entry> {
        self.settings.get(key)
    }

    /// Every torrent client's setting jellydemon changed, with its entry (`name` is the
    /// downloader's).
    pub fn settings(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.settings.iter().map(|(k, e)| (k.as_str(), e))
    }

    /// Write the ledger atomically: temp file in the same directory, fsync, rename, fsync dir.
    pub fn save(&self) -> Result<(), LedgerError> {
        let file = StateFile {
            version: VERSION,
            // The real ids: the file is for restoring, never shown.
            users: self
                .users
                .iter()
                .map(|(id, e)| (id.as_str().to_string(), e.clone()))
                .collect(),
            downloaders: self.settings.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("ledger serializes");
        json.push(b'\n');
        crate::files::write_private(&self.path, &json).map_err(|source| LedgerError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

impl Ledger {
    /// The originals and the values written since, for a plan (`src/core/plan.rs`).
    pub fn originals(&self) -> crate::core::plan::Originals {
        let mut out = crate::core::plan::Originals::default();
        for (id, e) in self.entries() {
            out.insert(id.clone(), e.original, e.ours.clone());
        }
        out
    }
}

/// The ledger as the tasks that write share it (the writer, the torrent clients' and media
/// servers' tasks, the restore, `reconcile --once`): a cheap clone around the one lock. Each
/// method holds the lock for one step and returns before any `.await` can follow (like
/// mini-redis's `Db`), so no task can sit on the ledger while it waits for Jellyfin.
#[derive(Clone)]
pub struct LedgerHandle(std::sync::Arc<std::sync::Mutex<Ledger>>);

impl LedgerHandle {
    /// Share `ledger`.
    pub fn new(ledger: Ledger) -> LedgerHandle {
        LedgerHandle(std::sync::Arc::new(std::sync::Mutex::new(ledger)))
    }

    /// Read it.
    pub fn read<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        f(&crate::sync::lock(&self.0))
    }

    /// Change it in memory; the next [`LedgerHandle::save`] (or a step that saves) writes it.
    pub fn change<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut crate::sync::lock(&self.0))
    }

    /// Change it and save it before returning: what `f` answered, and whether the file holds
    /// it now.
    pub fn change_and_save<R>(
        &self,
        f: impl FnOnce(&mut Ledger) -> R,
    ) -> (R, Result<(), LedgerError>) {
        let mut l = crate::sync::lock(&self.0);
        let r = f(&mut l);
        let saved = l.save();
        (r, saved)
    }

    /// Write it to its file.
    pub fn save(&self) -> Result<(), LedgerError> {
        crate::sync::lock(&self.0).save()
    }
}

/// Drop `key`'s entry unless a write of ours may still land after `now_ms`.
fn forget<K, Q>(map: &mut BTreeMap<Q, Entry>, key: &K, now_ms: u64) -> bool
where
    K: Ord + ?Sized,
    Q: Ord + std::borrow::Borrow<K>,
{
    match map.get(key) {
        Some(e) if e.landing_until(now_ms).is_some() => false,
        Some(_) => {
            map.remove(key);
            true
        }
        None => true,
    }
}

/// The users' entries, and the torrent clients' settings'.
type Parsed = (BTreeMap<UserId, Entry>, BTreeMap<String, Entry>);

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, LedgerError> {
    let corrupt = |detail: String| LedgerError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".into()));
    }
    let file: StateFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if !READABLE.contains(&file.version) {
        return Err(corrupt(format!(
            "version {} is not supported (this jellydemon reads versions 1 to {VERSION}; \
             a newer one wrote it?)",
            file.version
        )));
    }
    let users = file
        .users
        .into_iter()
        .map(|(id, e)| (UserId::new(id), e))
        .collect();
    Ok((users, file.downloaders))
}

#[cfg(test)]
mod tests;
