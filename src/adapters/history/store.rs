//! The SQLite file: opened (a corrupt one moved aside), migrated, owner-only; rows written
//! in one transaction per batch, pruned by age and size, read back for `stats` and the page.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use tracing::info;

use super::{HistoryError, MIGRATIONS, Record, schema_version};

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

    pub(super) fn err(&self, source: rusqlite::Error) -> HistoryError {
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
pub(super) fn set_aside(path: &Path) -> String {
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
pub(super) fn owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
