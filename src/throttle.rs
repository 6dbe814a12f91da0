//! A torrent client's limit set and put back under the ledger's rules (`src/adapters/ledger.rs`), as
//! `src/write.rs` does for Jellyfin's limits: every setting's original is in the state file
//! before the first write to it, each value is recorded before it is sent, a value that is
//! neither the original nor one of ours was set by hand in the client and becomes the new
//! original, and a setting leaves the ledger only once its original is back and no write of
//! ours may still land.
//!
//! The same rules hold for every [`Settable`]: a torrent client's limits, and a Plex server's
//! total upload limit outside the house (`src/adapters/plex.rs`).

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use crate::adapters::downloader::{Downloader, Field, Reading};
use crate::adapters::ledger::{Ledger, LedgerHandle, Observed};
use crate::adapters::plex::{Plex, WAN_TOTAL};
use crate::clock::unix_millis_now as unix_ms;

/// Something whose named settings jellydemon changes and puts back: a torrent client, or a
/// Plex server's total upload limit outside the house.
pub trait Settable: Send {
    /// The settings jellydemon may change, as it holds them now (its own units).
    fn values(&mut self) -> impl Future<Output = Result<Vec<(Field, i64)>, String>> + Send;
    /// Set these settings, in one request.
    fn write(&mut self, values: &[(Field, i64)])
    -> impl Future<Output = Result<(), String>> + Send;
}

impl Settable for Downloader {
    async fn values(&mut self) -> Result<Vec<(Field, i64)>, String> {
        self.read()
            .await
            .map(|r| r.values)
            .map_err(|e| e.to_string())
    }
    async fn write(&mut self, values: &[(Field, i64)]) -> Result<(), String> {
        Downloader::write(self, values)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The ledger's part of a Plex server: its WAN total, in Plex's own kbit/s, is the one setting
/// jellydemon changes.
impl Settable for Plex {
    async fn values(&mut self) -> Result<Vec<(Field, i64)>, String> {
        Ok(vec![(WAN_TOTAL, self.wan_total_kbps().await?)])
    }
    async fn write(&mut self, values: &[(Field, i64)]) -> Result<(), String> {
        for &(field, value) in values {
            if field != WAN_TOTAL {
                return Err(format!("Plex has no setting {field} jellydemon writes"));
            }
            self.set_wan_total_kbps(value).await?;
        }
        Ok(())
    }
}

/// A setting's value for people ("12 Mbps", "unlimited", "on"): a torrent client's, or
/// Plex's WAN total (kbit/s).
pub fn describe(field: Field, value: i64) -> String {
    match field {
        WAN_TOTAL if value <= 0 => "unlimited".into(),
        WAN_TOTAL => crate::core::rate::fmt_mbps(value as u64 * 1000),
        _ => crate::adapters::downloader::describe(field, value),
    }
}

fn value_of(values: &[(Field, i64)], field: Field) -> Option<i64> {
    values.iter().find(|(f, _)| *f == field).map(|(_, v)| *v)
}

/// The ledger's key of one of a downloader's settings: `"<downloader>/<field>"`.
pub fn key(downloader: &str, field: Field) -> String {
    format!("{downloader}/{field}")
}

/// A setting changed by hand in the client since jellydemon last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandChange {
    /// The setting.
    pub field: Field,
    /// Its original before.
    pub old_original: i64,
    /// The value set by hand: the new original.
    pub new_original: i64,
}

/// How long after it was sent an unanswered write may still be applied: twice the client's
/// timeout.
pub fn landing_window(timeout: Duration) -> Duration {
    timeout.saturating_mul(2)
}

/// Whether the ledger holds any original of `name`'s settings.
pub fn holds(ledger: &LedgerHandle, name: &str) -> bool {
    ledger.read(|l| {
        l.settings()
            .any(|(k, _)| k.split_once('/').is_some_and(|(n, _)| n == name))
    })
}

/// Compare what the client holds with the ledger; hand changes become the new originals (the
/// ledger is saved when there are any).
pub fn observe(ledger: &LedgerHandle, name: &str, values: &[(Field, i64)]) -> Vec<HandChange> {
    let changes = ledger.change(|l| {
        let mut changes = Vec::new();
        for &(field, value) in values {
            if let Observed::HandChanged { old_original } =
                l.observe_setting(&key(name, field), name, value)
            {
                changes.push(HandChange {
                    field,
                    old_original,
                    new_original: value,
                });
            }
        }
        changes
    });
    if !changes.is_empty()
        && let Err(e) = ledger.save()
    {
        warn!(downloader = name, "{e}");
    }
    changes
}

/// Make the limit in force `limit_bps`: the settings to change are recorded in the ledger
/// (and the file synced) first, then sent in one request, then settled. Returns the settings
/// sent (none when the client holds the limit already). A ledger that cannot be saved sends
/// nothing.
pub async fn apply(
    client: &mut Downloader,
    ledger: &LedgerHandle,
    name: &str,
    reading: &Reading,
    limit_bps: u64,
    timeout: Duration,
) -> Result<Vec<(Field, i64)>, String> {
    let writes = reading.writes_for(limit_bps);
    if !writes.is_empty() {
        send(client, ledger, name, &reading.values, &writes, timeout).await?;
    }
    Ok(writes)
}

/// Set `field` to `value` (one setting, in the client's units) under the ledger's rules, unless
/// `values` (as read) holds it already: whether it was sent.
pub async fn set(
    client: &mut impl Settable,
    ledger: &LedgerHandle,
    name: &str,
    values: &[(Field, i64)],
    (field, value): (Field, i64),
    timeout: Duration,
) -> Result<bool, String> {
    if value_of(values, field) == Some(value) {
        return Ok(false);
    }
    send(client, ledger, name, values, &[(field, value)], timeout).await?;
    Ok(true)
}

/// Send `writes` in one request under the ledger's rules: each value recorded as intended
/// (the original, the first time, from `reading`) and the file synced before the request,
/// every write settled once it is answered. A ledger that cannot be saved sends nothing.
async fn send(
    client: &mut impl Settable,
    ledger: &LedgerHandle,
    name: &str,
    values: &[(Field, i64)],
    writes: &[(Field, i64)],
    timeout: Duration,
) -> Result<(), String> {
    let until = unix_ms() + landing_window(timeout).as_millis() as u64;
    let (tickets, saved) = ledger.change_and_save(|l| {
        writes
            .iter()
            .map(|&(field, new)| {
                let current = value_of(values, field).unwrap_or(new);
                let k = key(name, field);
                let t = l.record_setting_intent(&k, name, current, new, until);
                (k, t)
            })
            .collect::<Vec<_>>()
    });
    saved.map_err(|e| e.to_string())?;
    let result = client.write(writes).await;
    let ((), saved) = ledger.change_and_save(|l| {
        let now = unix_ms();
        for (k, t) in tickets {
            l.settle_setting(&k, t, now);
        }
    });
    if let Err(e) = saved {
        warn!(downloader = name, "{e}");
    }
    result
}

/// What putting one downloader's originals back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// Every setting holds its original again (the ones written: field, from, to).
    Done(Vec<(Field, i64, i64)>),
    /// The client could not be reached or refused; the originals stay in the ledger.
    Failed(String),
}

/// Put back every original of `name` the ledger holds: read the client, write the settings
/// that differ (a value set by hand since is left and becomes the original), read again, and
/// drop the settings that hold their original from the ledger. A write of ours that may still
/// land keeps its setting in the ledger, and the restore is tried again until `deadline`.
pub async fn restore(
    client: &mut impl Settable,
    ledger: &LedgerHandle,
    name: &str,
    timeout: Duration,
    deadline: tokio::time::Instant,
) -> Restored {
    let mut written = Vec::new();
    let mut attempt = 0;
    loop {
        match restore_once(client, ledger, name, timeout, &mut written).await {
            Ok(true) => return Restored::Done(written),
            Ok(false) | Err(_) if tokio::time::Instant::now() < deadline => {}
            Ok(false) => {
                return Restored::Failed("a write of ours may still land: kept".into());
            }
            Err(e) => return Restored::Failed(e),
        }
        attempt += 1;
        let wait = crate::clock::backoff(
            attempt,
            Duration::from_millis(200),
            Duration::from_secs(5),
            true,
        );
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(wait.min(left)).await;
    }
}

/// One pass of [`restore`]: whether every setting of `name` left the ledger.
async fn restore_once(
    client: &mut impl Settable,
    ledger: &LedgerHandle,
    name: &str,
    timeout: Duration,
    written: &mut Vec<(Field, i64, i64)>,
) -> Result<bool, String> {
    let prefix = format!("{name}/");
    let tracked = || ledger.read(|l| tracked_of(l, &prefix));
    if tracked().is_empty() {
        return Ok(true);
    }
    let reading = client.values().await?;
    // Hand changes since our last write are the originals now.
    for c in observe(ledger, name, &reading) {
        info!(
            downloader = name,
            setting = c.field,
            "{} was set by hand ({}): kept as the original",
            c.field,
            describe(c.field, c.new_original)
        );
    }
    let mut writes: Vec<(Field, i64)> = Vec::new();
    for (k, original) in tracked() {
        let field = reading.iter().map(|(f, _)| *f).find(|f| k == key(name, f));
        if let Some(f) = field
            && value_of(&reading, f) != Some(original)
        {
            writes.push((f, original));
        }
    }
    if !writes.is_empty() {
        send(client, ledger, name, &reading, &writes, timeout).await?;
        for &(f, v) in &writes {
            written.push((f, value_of(&reading, f).unwrap_or(v), v));
        }
    }
    // The settings that hold their original now leave the ledger.
    let check = client.values().await?;
    let (all, saved) = ledger.change_and_save(|l| {
        let now = unix_ms();
        let mut all = true;
        for (k, original) in tracked_of(l, &prefix) {
            let holds = check
                .iter()
                .any(|(f, v)| k == key(name, f) && *v == original);
            // A setting the client no longer reports cannot be put back: it stays for a
            // person.
            if !(holds && l.forget_setting(&k, now)) {
                all = false;
            }
        }
        all
    });
    saved.map_err(|e| e.to_string())?;
    Ok(all)
}

fn tracked_of(l: &Ledger, prefix: &str) -> Vec<(String, i64)> {
    l.settings()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, e)| (k.to_string(), e.original))
        .collect()
}

/// Put back the originals of every torrent client and media server (`[[server]]`) the ledger
/// holds settings of, eight at a time, each until `deadline`. One no longer configured cannot
/// be reached: it fails with what to set by hand.
pub async fn restore_all(
    settings: &crate::config::Settings,
    ledger: &LedgerHandle,
    deadline: tokio::time::Instant,
) -> Vec<(String, Restored)> {
    use futures_util::StreamExt;
    let names = crate::config::downloader_names(&settings.downloader);
    let servers = crate::config::server_names(&settings.server);
    let in_ledger: std::collections::BTreeSet<String> = ledger.read(|l| {
        l.settings()
            .filter_map(|(k, _)| k.split_once('/').map(|(n, _)| n.to_string()))
            .collect()
    });
    let mut out = Vec::new();
    let mut jobs = Vec::new();
    for name in in_ledger {
        if let Some(i) = names.iter().position(|n| *n == name) {
            jobs.push((name, Job::Downloader(i)));
        } else if let Some(i) = servers
            .iter()
            .zip(&settings.server)
            .position(|(n, s)| *n == name && s.is_plex())
        {
            jobs.push((name, Job::Server(i)));
        } else {
            let left = ledger
                .read(|l| orphans(settings, l))
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| f)
                .unwrap_or_default();
            out.push((
                name,
                Restored::Failed(format!(
                    "no [[downloader]] or [[server]] of this name any more: add it back, \
                     or set {} by hand in it",
                    left.join(", ")
                )),
            ));
        }
    }
    let results: Vec<(String, Restored)> = futures_util::stream::iter(jobs)
        .map(|(name, job)| async move {
            let r = match job {
                Job::Downloader(i) => {
                    let d = &settings.downloader[i];
                    match Downloader::new(d) {
                        Ok(mut c) => restore(&mut c, ledger, &name, d.timeout, deadline).await,
                        Err(e) => Restored::Failed(e.to_string()),
                    }
                }
                Job::Server(i) => {
                    let s = &settings.server[i];
                    match Plex::new(s) {
                        Ok(mut c) => restore(&mut c, ledger, &name, s.timeout, deadline).await,
                        Err(e) => Restored::Failed(e.to_string()),
                    }
                }
            };
            match &r {
                Restored::Done(w) => {
                    for (f, from, to) in w {
                        info!(
                            downloader = %name,
                            "{f} restored: {} -> {}",
                            describe(f, *from),
                            describe(f, *to)
                        );
                    }
                }
                Restored::Failed(e) => warn!(downloader = %name, "original not restored: {e}"),
            }
            (name, r)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    out.extend(results);
    out
}

/// Which configured entry holds a name's settings.
#[derive(Clone, Copy)]
enum Job {
    Downloader(usize),
    Server(usize),
}

/// The torrent clients and media servers the ledger holds originals of that neither
/// `[[downloader]]` nor `[[server]]` names any more (renamed or removed): each with its
/// settings' originals (`field = value`), which nobody will put back unless it is named again
/// or they are set by hand.
pub fn orphans(settings: &crate::config::Settings, ledger: &Ledger) -> Vec<(String, Vec<String>)> {
    let mut names = crate::config::downloader_names(&settings.downloader);
    names.extend(
        crate::config::server_names(&settings.server)
            .into_iter()
            .zip(&settings.server)
            .filter(|(_, s)| s.is_plex())
            .map(|(n, _)| n),
    );
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (k, e) in ledger.settings() {
        let Some((name, field)) = k.split_once('/') else {
            continue;
        };
        if names.iter().any(|n| n == name) {
            continue;
        }
        let line = format!("{field} = {}", e.original);
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, fields)) => fields.push(line),
            None => out.push((name.to_string(), vec![line])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plexs_total_is_described_in_mbps_and_the_rest_as_the_clients_say() {
        assert_eq!(describe(WAN_TOTAL, 0), "unlimited");
        assert_eq!(describe(WAN_TOTAL, 12_000), "12 Mbps");
        assert_eq!(
            describe(
                crate::adapters::downloader::qbittorrent::UP_LIMIT,
                1_250_000
            ),
            "10 Mbps"
        );
    }
}
