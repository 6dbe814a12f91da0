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

pub use recorder::{Recorder, SAMPLE_AT_LEAST, SAMPLE_EVERY};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
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

/// An open history database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (or create) the database at `path` and bring its schema up to date. A corrupt
    /// file is moved aside and a new one started; the returned note says so.
    pub fn open(path: &Path) -> Result<(Store, Option<String>), HistoryError> {
        match Store::open_as_is(path) {
            Err(e) if e.is_corrupt() => {
                let aside = set_aside(path);
                let note = format!("{e}; {aside}; a new history is started");
                Store::open_as_is(path).map(|s| (s, Some(note)))
            }
            other => other.map(|s| (s, None)),
        }
    }

    fn open_as_is(path: &Path) -> Result<Store, HistoryError> {
        let shown = path.display().to_string();
        let sqlite = |source| HistoryError::Sqlite {
            path: shown.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::Io {
                path: shown.clone(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(sqlite)?;
        owner_only(path);
        conn.busy_timeout(Duration::from_secs(2)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(sqlite)?;
        if check != "ok" {
            return Err(sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(check),
            )));
        }
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Open an existing database for reading only (`jellydemon stats`).
    pub fn open_read_only(path: &Path) -> Result<Store, HistoryError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| HistoryError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        let found = store.version()?;
        if found > schema_version() {
            return Err(HistoryError::Newer {
                path: path.display().to_string(),
                found,
                ours: schema_version(),
            });
        }
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// The schema version of the file.
    pub fn version(&self) -> Result<i64, HistoryError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        let found = self.version()?;
        let ours = schema_version();
        if found > ours {
            return Err(HistoryError::Newer {
                path: self.path.display().to_string(),
                found,
                ours,
            });
        }
        if found == ours {
            return Ok(());
        }
        let path = self.path.display().to_string();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| HistoryError::Sqlite {
                path: path.clone(),
                source,
            })?;
        for m in &MIGRATIONS[found as usize..] {
            tx.execute_batch(m).map_err(|source| HistoryError::Sqlite {
                path: path.clone(),
                source,
            })?;
        }
        tx.pragma_update(None, "user_version", ours)
            .and_then(|()| tx.commit())
            .map_err(|source| HistoryError::Sqlite { path, source })?;
        if found > 0 {
            info!(from = found, to = ours, "history database migrated");
        }
        Ok(())
    }

    /// Write `batch` in one transaction.
    pub fn write(&mut self, batch: &[Record]) -> Result<(), HistoryError> {
        let path = self.path.display().to_string();
        let sqlite = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sqlite)?;
        for r in batch {
            match r {
                Record::Play(p) => tx.execute(
                    "INSERT OR REPLACE INTO plays (key, user_id, user, client, remote, kind,
                        source_bps, start_ms, end_ms, start_limit_bps, mean_rate_bps,
                        at_source_ms, transcoded, pushes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    params![
                        p.key,
                        p.user_id,
                        p.user,
                        p.client,
                        p.remote,
                        p.kind,
                        p.source_bps.map(|b| b as i64),
                        p.start_ms as i64,
                        p.end_ms as i64,
                        p.start_limit_bps,
                        p.mean_rate_bps().map(|b| b as i64),
                        p.at_source_ms as i64,
                        p.transcoded,
                        p.pushes,
                    ],
                ),
                Record::Sample(s) => tx.execute(
                    "INSERT OR REPLACE INTO samples (t_ms, budget_bps, cause, streaming_bps,
                        held_bps, other_bps, downloaders_bps, claimants, video_transcodes,
                        beyond_capacity)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        s.t_ms as i64,
                        s.budget_bps as i64,
                        s.cause,
                        s.streaming_bps as i64,
                        s.held_bps as i64,
                        s.other_bps.map(|b| b as i64),
                        s.downloaders_bps.map(|b| b as i64),
                        s.claimants,
                        s.video_transcodes,
                        s.beyond_capacity,
                    ],
                ),
                Record::Decision(d) => tx.execute(
                    "INSERT INTO decisions (t_ms, user, from_bps, to_bps, pushes, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        d.t_ms as i64,
                        d.user,
                        d.from_bps,
                        d.to_bps,
                        d.pushes,
                        d.reason
                    ],
                ),
                Record::Action(a) => tx.execute(
                    "INSERT INTO actions (t_ms, by, action, result) VALUES (?1, ?2, ?3, ?4)",
                    params![a.t_ms as i64, a.by, a.action, a.result],
                ),
            }
            .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)
    }

    /// Delete rows older than `retention` before `now_ms`, then the oldest day of rows at a
    /// time while the file is larger than `max_bytes`. Returns the rows deleted.
    pub fn prune(
        &mut self,
        now_ms: u64,
        retention: Duration,
        max_bytes: u64,
    ) -> Result<usize, HistoryError> {
        let cut = now_ms.saturating_sub(retention.as_millis() as u64) as i64;
        let mut deleted = self.delete_before(cut)?;
        const DAY_MS: i64 = 24 * 3600 * 1000;
        for _ in 0..400 {
            if self.size()? <= max_bytes {
                break;
            }
            let oldest: Option<i64> = self
                .conn
                .query_row(
                    "SELECT MIN(t) FROM (SELECT MIN(t_ms) AS t FROM samples
                        UNION ALL SELECT MIN(start_ms) FROM plays
                        UNION ALL SELECT MIN(t_ms) FROM decisions)",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            let Some(oldest) = oldest else { break };
            deleted += self.delete_before(oldest + DAY_MS)?;
            self.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
                .map_err(|e| self.err(e))?;
        }
        Ok(deleted)
    }

    fn delete_before(&mut self, cut_ms: i64) -> Result<usize, HistoryError> {
        let path = self.path.display().to_string();
        let sqlite = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sqlite)?;
        let mut n = 0;
        for sql in [
            "DELETE FROM samples WHERE t_ms < ?1",
            "DELETE FROM plays WHERE end_ms < ?1",
            "DELETE FROM decisions WHERE t_ms < ?1",
            "DELETE FROM actions WHERE t_ms < ?1",
        ] {
            n += tx.execute(sql, [cut_ms]).map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        Ok(n)
    }

    /// The database's size in bytes (pages in use).
    pub fn size(&self) -> Result<u64, HistoryError> {
        self.conn
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// The connection, for the queries of `stats`.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// Move a corrupt database (and its WAL and shared-memory files) aside; says what happened.
fn set_aside(path: &Path) -> String {
    let stamp = crate::clock::unix_millis_now();
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
    }
    match std::fs::rename(path, &aside) {
        Ok(()) => format!("moved aside to {}", aside.display()),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            format!("it could not be moved aside ({e}) and was removed")
        }
    }
}

/// The database holds names and what people watched: readable by its owner only.
fn owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
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
