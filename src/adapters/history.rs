//! The history: weeks of what was played, how the link was shared, what jellydemon decided
//! and what the owner changed, in SQLite (`[history]`, `history.sqlite` beside the state
//! file).
//!
//! * **Off the hot path.** The engine hands [`Record`]s to [`History::record`], which never
//!   blocks: a full queue drops the row (counted in `jellydemon_history_rows{result="dropped"}`).
//!   One thread writes them in batches (at most one second or [`BATCH`] rows apart), one
//!   transaction each, so a crash loses at most the batch being written.
//! * **Never in the way.** A database that cannot be opened or written (a full disk, a lock
//!   held by another program, a file that is not SQLite any more) is logged (once per
//!   distinct error), counted (`result="failed"`) and tried again; limits are managed as
//!   ever. A corrupt file is moved aside (`history.sqlite.corrupt-<unix ms>`) and a new one
//!   started.
//! * **Versioned.** The schema's version is SQLite's `user_version`; [`MIGRATIONS`] brings any
//!   older file up to date in one transaction. A file from a newer jellydemon is left alone
//!   (no history is written until it is moved or the newer version runs again).
//! * **Bounded.** Every hour rows older than `retention_days` are pruned, then the oldest
//!   until the file is under `max_mb`.
//!
//! The database is the owner's: it holds real names. What `jellydemon stats` and the page show
//! follows `logging.anonymize` like every other output ([`crate::ids`]).

pub mod plays;
mod recorder;
pub mod stats;
mod store;

pub use recorder::{Recorder, SAMPLE_AT_LEAST, SAMPLE_EVERY};
pub use store::Store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use tracing::{info, warn};

use crate::metrics::{Metrics, ResultLabels};

/// Rows queued for the writer before new ones are dropped.
const QUEUE: usize = 16_384;
/// Rows written in one transaction at most.
pub const BATCH: usize = 1_000;
/// A batch waits at most this long for more rows.
const BATCH_EVERY: Duration = Duration::from_secs(1);
/// How often old rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// After a failure to open the database, the next try.
const REOPEN_EVERY: Duration = Duration::from_secs(60);

/// The schema, one migration per version: `MIGRATIONS[k]` takes a database from version `k`
/// to `k + 1`. Never edit one that has shipped; add the next.
pub const MIGRATIONS: &[&str] = &[
    // 1: plays, link samples, decisions, the owner's actions.
    "CREATE TABLE plays (
        key TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        user TEXT NOT NULL,
        client TEXT NOT NULL,
        remote INTEGER NOT NULL,
        kind TEXT,
        source_bps INTEGER,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        start_limit_bps INTEGER,
        mean_rate_bps INTEGER,
        at_source_ms INTEGER NOT NULL,
        transcoded INTEGER NOT NULL,
        pushes INTEGER NOT NULL
    );
    CREATE INDEX plays_start ON plays (start_ms);
    CREATE TABLE samples (
        t_ms INTEGER PRIMARY KEY,
        budget_bps INTEGER NOT NULL,
        cause TEXT NOT NULL,
        streaming_bps INTEGER NOT NULL,
        held_bps INTEGER NOT NULL,
        other_bps INTEGER,
        downloaders_bps INTEGER,
        claimants INTEGER NOT NULL
    );
    CREATE TABLE decisions (
        t_ms INTEGER NOT NULL,
        user TEXT NOT NULL,
        from_bps INTEGER NOT NULL,
        to_bps INTEGER NOT NULL,
        pushes INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX decisions_t ON decisions (t_ms);
    CREATE TABLE actions (
        t_ms INTEGER NOT NULL,
        by TEXT NOT NULL,
        action TEXT NOT NULL,
        result TEXT NOT NULL
    );
    CREATE INDEX actions_t ON actions (t_ms);",
    // 2: the video transcodes against `[transcoding] capacity` (NULL without one).
    "ALTER TABLE samples ADD COLUMN video_transcodes INTEGER;
    ALTER TABLE samples ADD COLUMN beyond_capacity INTEGER;",
];

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// One row for the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A played item, as far as it has played (written again as it goes on: the row with the
    /// same key is replaced).
    Play(plays::Play),
    /// The link at one moment.
    Sample(Sample),
    /// A limit written or a stream pushed.
    Decision(Decision),
    /// An owner's action (the audit).
    Action(Audit),
}

/// The link at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix milliseconds.
    pub t_ms: u64,
    /// The budget shared among the remote streams.
    pub budget_bps: u64,
    /// Where the budget came from ("static", "meter", "schedule ...", "reserve").
    pub cause: String,
    /// What the remote streams carried.
    pub streaming_bps: u64,
    /// What they carry after the plan's pushes.
    pub held_bps: u64,
    /// The rest of the house (with a meter).
    pub other_bps: Option<u64>,
    /// The torrent clients' combined limit.
    pub downloaders_bps: Option<u64>,
    /// Remote users streaming.
    pub claimants: u32,
    /// With `[transcoding] capacity`: the video transcodes under the plan's limits.
    pub video_transcodes: Option<u32>,
    /// With `[transcoding] capacity`: they are more than the server runs in real time.
    pub beyond_capacity: Option<bool>,
}

/// A limit written or a stream pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Unix milliseconds.
    pub t_ms: u64,
    /// The user's name.
    pub user: String,
    /// The limit before.
    pub from_bps: i64,
    /// The limit after.
    pub to_bps: i64,
    /// Streams pushed.
    pub pushes: u32,
    /// Why.
    pub reason: String,
}

/// An owner's action.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// Unix milliseconds.
    pub t_ms: u64,
    /// "page", "api" or "cli".
    pub by: String,
    /// What was asked ("pin alice at 10 Mbps").
    pub action: String,
    /// "done", or why it was refused.
    pub result: String,
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite said no.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file comes from a newer jellydemon.
    #[error(
        "{path} has schema version {found}; this jellydemon writes version {ours}: \
         no history is written (move the file away to start a new one)"
    )]
    Newer {
        /// The database.
        path: String,
        /// Its version.
        found: i64,
        /// Ours.
        ours: i64,
    },
    /// The directory or file cannot be made.
    #[error("{path}: {source}")]
    Io {
        /// The database.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

impl HistoryError {
    /// The file is not a database any more (or a damaged one).
    fn is_corrupt(&self) -> bool {
        matches!(
            self,
            HistoryError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if matches!(e.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    }
}

/// Where the engine and the control API hand rows to the writer. Cheap to clone; a no-op
/// when the history is off.
#[derive(Clone)]
pub struct History {
    tx: Option<SyncSender<Msg>>,
    metrics: Arc<Metrics>,
}

enum Msg {
    Row(Box<Record>),
    Stop,
}

impl History {
    /// A history that keeps nothing (`history.enabled = false`, dry runs, the one-shot
    /// commands).
    pub fn off(metrics: Arc<Metrics>) -> History {
        History { tx: None, metrics }
    }

    /// Queue a row; never blocks (a full queue drops it, counted).
    pub fn record(&self, r: Record) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            tx.try_send(Msg::Row(Box::new(r)))
        {
            count(&self.metrics, "dropped", 1);
        }
    }
}

fn count(metrics: &Metrics, result: &str, n: u64) {
    metrics
        .history_rows
        .get_or_create(&ResultLabels {
            result: result.to_string(),
        })
        .inc_by(n);
}

/// The writer thread; [`Writer::stop`] flushes what is queued and waits for it (bounded).
pub struct Writer {
    tx: SyncSender<Msg>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Flush and stop, waiting at most `within`.
    pub async fn stop(self, within: Duration) {
        // Behind every queued row: what was recorded before the stop is written.
        let tx = self.tx.clone();
        let _ = tokio::task::spawn_blocking(move || tx.send(Msg::Stop)).await;
        let thread = self.thread;
        let _ =
            tokio::time::timeout(within, tokio::task::spawn_blocking(move || thread.join())).await;
    }
}

/// Told after every failure to open or write the database (what failed) and once when it
/// is written again (`None`): the daemon hands it to the notifications.
pub type Health = Box<dyn Fn(Option<String>) + Send>;

/// Start the writer for `path`.
pub fn start(
    path: PathBuf,
    retention: Duration,
    max_bytes: u64,
    metrics: Arc<Metrics>,
    health: Health,
) -> (History, Writer) {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let m = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("history".into())
        .spawn(move || write_loop(&path, retention, max_bytes, &rx, &m, &health))
        .expect("a thread");
    (
        History {
            tx: Some(tx.clone()),
            metrics,
        },
        Writer { tx, thread },
    )
}

/// [`start`] with counters of its own, read by nobody: for a writer outside the daemon (the
/// history bench measures [`History::record`] with it).
pub fn start_unobserved(path: PathBuf, retention: Duration, max_bytes: u64) -> (History, Writer) {
    start(
        path,
        retention,
        max_bytes,
        Arc::new(Metrics::new()),
        Box::new(|_| {}),
    )
}

/// The writer thread's loop: batches, reopen after failures, hourly pruning.
fn write_loop(
    path: &Path,
    retention: Duration,
    max_bytes: u64,
    rx: &Receiver<Msg>,
    metrics: &Metrics,
    health: &Health,
) {
    let mut store: Option<Store> = None;
    let mut next_open = std::time::Instant::now();
    let mut next_prune = std::time::Instant::now();
    let mut last_error: Option<String> = None;
    let report = |e: &HistoryError, last: &mut Option<String>| {
        let text = e.to_string();
        if last.as_deref() != Some(&text) {
            warn!("history: {text} (limits are managed as ever)");
        }
        health(Some(text.clone()));
        *last = Some(text);
    };
    let recovered = |what: &str, last: &mut Option<String>| {
        if last.take().is_some() {
            info!(file = %path.display(), "{what}");
            health(None);
        }
    };
    let mut batch: Vec<Record> = Vec::new();
    let mut stop = false;
    while !stop {
        // Wait for the first row, then gather more for up to BATCH_EVERY.
        match rx.recv_timeout(PRUNE_EVERY.min(REOPEN_EVERY)) {
            Ok(Msg::Row(r)) => batch.push(*r),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let until = std::time::Instant::now() + BATCH_EVERY;
        while !stop && !batch.is_empty() && batch.len() < BATCH {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Row(r)) => batch.push(*r),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        if store.is_none() && std::time::Instant::now() >= next_open {
            match Store::open(path) {
                Ok((s, note)) => {
                    if let Some(note) = note {
                        warn!("history: {note}");
                    }
                    recovered("history database open again", &mut last_error);
                    store = Some(s);
                }
                Err(e) => {
                    report(&e, &mut last_error);
                    next_open = std::time::Instant::now() + REOPEN_EVERY;
                }
            }
        }
        let n = batch.len() as u64;
        match store.as_mut() {
            Some(s) if n > 0 => match s.write(&batch) {
                Ok(()) => {
                    count(metrics, "written", n);
                    recovered("history written again", &mut last_error);
                }
                Err(e) => {
                    count(metrics, "failed", n);
                    if e.is_corrupt() {
                        // Start again on the next batch: moved aside and a new file.
                        store = None;
                        next_open = std::time::Instant::now();
                    }
                    report(&e, &mut last_error);
                }
            },
            None if n > 0 => count(metrics, "failed", n),
            _ => {}
        }
        batch.clear();
        if let Some(s) = store.as_mut()
            && std::time::Instant::now() >= next_prune
        {
            next_prune = std::time::Instant::now() + PRUNE_EVERY;
            match s.prune(crate::clock::unix_millis_now(), retention, max_bytes) {
                Ok(0) => {}
                Ok(n) => info!(rows = n, "history pruned"),
                Err(e) => report(&e, &mut last_error),
            }
        }
    }
}

#[cfg(test)]
mod tests;
