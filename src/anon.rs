//! Anonymization: stable aliases for user names, user ids, IP addresses, session ids and
//! device ids in everything jellydemon emits (logs, metrics, the status API, tables), so logs
//! can be shared.
//!
//! Values are replaced **where they are recorded**: personal values are typed
//! ([`crate::ids`]: `UserName`, `UserId`, `SessionId`, `DeviceId`, `ClientAddr`, …) and their
//! `Display` consults the process-wide [`Anonymizer`] when one is installed. So no spelling of a
//! name (spaces, quotes, e-mail shape, non-ASCII) can slip past a pattern, and an alias is never
//! aliased again. Aliases look like `User-001`, `UserId-001`, `Session-001`, `Device-001`,
//! `External-IP-001`; internal addresses keep their private prefix (`192.168.xxx.1`), loopback
//! stays as it is. The alias map is saved atomically and reloaded at start, so aliases are
//! stable across restarts; `jellydemon anonymize` uses it to scrub logs written before.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::sync::lock;

/// What kind of value is being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    UserName,
    UserId,
    Session,
    Device,
    Ip,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AliasMap {
    /// kind -> original -> alias
    aliases: BTreeMap<Kind, BTreeMap<String, String>>,
    /// Next number per alias family ("User", "External-IP", "192.168.xxx", …).
    counters: BTreeMap<String, u32>,
}

/// The alias table, optionally persisted.
#[derive(Debug)]
pub struct Anonymizer {
    map: Mutex<AliasMap>,
    path: Option<PathBuf>,
}

static GLOBAL: OnceLock<Arc<Anonymizer>> = OnceLock::new();

/// Install the process-wide anonymizer (once; later calls are ignored).
pub fn install(a: Anonymizer) -> Arc<Anonymizer> {
    GLOBAL.get_or_init(|| Arc::new(a)).clone()
}

/// The process-wide anonymizer, if anonymization is on.
pub fn global() -> Option<&'static Arc<Anonymizer>> {
    GLOBAL.get()
}

impl Anonymizer {
    /// An anonymizer that keeps its map in memory only.
    #[cfg(test)]
    pub fn in_memory() -> Anonymizer {
        Anonymizer {
            map: Mutex::new(AliasMap::default()),
            path: None,
        }
    }

    /// The same aliases, no longer saved (new ones live in memory only).
    pub fn in_memory_only(self) -> Anonymizer {
        Anonymizer { path: None, ..self }
    }

    /// Load the map from `path` (missing: empty). A corrupt map is moved aside to
    /// `<path>.corrupt` and a fresh one started: aliases change, nothing else is lost.
    pub fn load(path: &Path) -> Result<Anonymizer, String> {
        let map = match read_map(path) {
            Ok(m) => m,
            Err(MapError::Read(e)) => return Err(e),
            Err(MapError::Corrupt(e)) => {
                let aside = path.with_extension("json.corrupt");
                fs::rename(path, &aside).map_err(|e| {
                    format!(
                        "alias map {} is corrupt and cannot be moved aside: {e}",
                        path.display()
                    )
                })?;
                tracing::warn!("{e}; moved to {} and starting a new one", aside.display());
                AliasMap::default()
            }
        };
        Ok(Anonymizer {
            map: Mutex::new(map),
            path: Some(path.to_path_buf()),
        })
    }

    /// The saved aliases, for reading only: nothing is ever written (not even a corrupt map
    /// moved aside). A map that cannot be read gives an empty one, and the reason.
    pub fn read_only(path: &Path) -> (Anonymizer, Option<String>) {
        let (map, problem) = match read_map(path) {
            Ok(m) => (m, None),
            Err(MapError::Read(e) | MapError::Corrupt(e)) => (AliasMap::default(), Some(e)),
        };
        let a = Anonymizer {
            map: Mutex::new(map),
            path: None,
        };
        (a, problem)
    }

    /// The alias already given to `value` as any kind, if any.
    pub fn known(&self, value: &str) -> Option<String> {
        let m = lock(&self.map);
        m.aliases.values().find_map(|t| t.get(value).cloned())
    }

    /// The alias of `value` as a `kind`, created (and persisted) on first sight.
    pub fn alias(&self, kind: Kind, value: &str) -> String {
        let mut m = lock(&self.map);
        if let Some(a) = m.aliases.get(&kind).and_then(|t| t.get(value)) {
            return a.clone();
        }
        let family = family(kind, value);
        if family.is_empty() {
            return value.to_string(); // loopback and the like: not personal
        }
        let n = m.counters.entry(family.clone()).or_insert(0);
        *n += 1;
        let alias = if family.contains("xxx") {
            format!("{family}.{}", n)
        } else if family.ends_with(':') {
            format!("{family}{n:x}")
        } else {
            format!("{family}-{n:03}")
        };
        m.aliases
            .entry(kind)
            .or_default()
            .insert(value.to_string(), alias.clone());
        if let Some(path) = &self.path
            && let Err(e) = save(path, &m)
        {
            // Not fatal: aliases stay stable for this run.
            eprintln!("jellydemon: cannot save alias map {}: {e}", path.display());
        }
        alias
    }

    /// Every (original, alias) pair, for scrubbing old logs.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let m = lock(&self.map);
        m.aliases
            .values()
            .flat_map(|t| t.iter().map(|(o, a)| (o.clone(), a.clone())))
            .collect()
    }

    /// Replace every known original in `text` by its alias, and every IP address not yet
    /// known by a new alias. One left-to-right pass, longest match first, so an alias is never
    /// rewritten again.
    pub fn scrub(&self, text: &str) -> String {
        // Each value as it may have been written: as is, escaped for a terminal or a text
        // log, and escaped inside a JSON string (quotes, backslashes, controls).
        let mut pairs: Vec<(String, String)> = self
            .pairs()
            .into_iter()
            .filter(|(o, _)| !o.is_empty())
            .flat_map(|(o, a)| {
                let json = serde_json::to_string(&o).unwrap_or_default();
                let json = json[1..json.len().saturating_sub(1).max(1)].to_string();
                let shown = crate::escape::escape_controls(&o).into_owned();
                [(o, a.clone()), (shown, a.clone()), (json, a)]
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let bytes = text.as_bytes();
        'outer: while i < text.len() {
            if !text.is_char_boundary(i) {
                i += 1;
                continue;
            }
            for (orig, alias) in &pairs {
                if text[i..].starts_with(orig.as_str()) && boundary_ok(text, i, orig.len()) {
                    out.push_str(alias);
                    i += orig.len();
                    continue 'outer;
                }
            }
            // An IP address token not in the map.
            if bytes[i].is_ascii_hexdigit() || bytes[i] == b':' {
                let end = text[i..]
                    .find(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
                    .map_or(text.len(), |e| i + e);
                let mut token = text[i..end].trim_end_matches(['.', ':']);
                // "a.b.c.d:port": the address is the part before the colon.
                if token.contains('.')
                    && token.parse::<IpAddr>().is_err()
                    && let Some((v4, _)) = token.split_once(':')
                {
                    token = v4;
                }
                let network = text[i + token.len()..]
                    .strip_prefix('/')
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
                if boundary_ok(text, i, token.len())
                    && !network
                    && let Ok(ip) = token.parse::<IpAddr>()
                {
                    // The same text as `ids::ClientAddr` shows, so the same alias. A network
                    // (`10.0.0.0/8`) is configuration, not a person's address: kept.
                    out.push_str(&self.alias(Kind::Ip, &ip.to_canonical().to_string()));
                    i += token.len();
                    continue;
                }
            }
            let c = text[i..].chars().next().expect("char boundary");
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

impl Anonymizer {
    /// `text` with every alias in the map replaced by what it stands for, escaped
    /// ([`crate::escape::escape_controls`]): for the owner's own terminal (the tables of
    /// `check`, `reconcile` and `restore`), while what gets shared (logs, `report`) keeps the
    /// aliases. Longest alias first, on word boundaries, so `User-001` never matches inside
    /// `User-0010`.
    pub fn reveal(&self, text: &str) -> String {
        let mut pairs = self.pairs();
        pairs.retain(|(o, a)| !o.is_empty() && !a.is_empty() && o != a);
        pairs.sort_by_key(|p| std::cmp::Reverse(p.1.len()));
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        'outer: while i < text.len() {
            for (orig, alias) in &pairs {
                if text[i..].starts_with(alias.as_str()) && boundary_ok(text, i, alias.len()) {
                    out.push_str(&crate::escape::escape_controls(orig));
                    i += alias.len();
                    continue 'outer;
                }
            }
            let c = text[i..].chars().next().expect("char boundary");
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

/// [`Anonymizer::reveal`] with the process-wide map; `text` as it is when not anonymizing.
pub fn reveal(text: &str) -> String {
    match global() {
        Some(a) => a.reveal(text),
        None => text.to_string(),
    }
}

/// A match must not be glued to letters, digits, `_` or `-` on either side (so "Al" in "Alice"
/// is not replaced when only "Al" is known, and "User" in the alias "User-001" is left alone).
fn boundary_ok(text: &str, start: usize, len: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[start + len..].chars().next();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    !word(before) && !word(after)
}

/// Why a saved alias map could not be used.
enum MapError {
    /// It cannot be read.
    Read(String),
    /// It does not parse.
    Corrupt(String),
}

/// The map saved at `path`; a missing file is an empty map.
fn read_map(path: &Path) -> Result<AliasMap, MapError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            MapError::Corrupt(format!("alias map {} is corrupt: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AliasMap::default()),
        Err(e) => Err(MapError::Read(format!(
            "cannot read alias map {}: {e}",
            path.display()
        ))),
    }
}

/// The alias family of a value: "User", "External-IP", "192.168.xxx", … ("" = keep as is).
fn family(kind: Kind, value: &str) -> String {
    match kind {
        Kind::UserName => "User".into(),
        Kind::UserId => "UserId".into(),
        Kind::Session => "Session".into(),
        Kind::Device => "Device".into(),
        // The canonical text of an address (what `ids::ClientAddr` shows); anything else is an
        // endpoint that did not parse.
        Kind::Ip => match value.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(IpAddr::V4(v4)) => {
                let o = v4.octets();
                if v4.is_loopback() || v4.is_unspecified() {
                    String::new()
                } else if o[0] == 10 {
                    "10.xxx.xxx".into()
                } else if o[0] == 172 && (16..32).contains(&o[1]) {
                    "172.xxx.xxx".into()
                } else if o[0] == 192 && o[1] == 168 {
                    "192.168.xxx".into()
                } else if o[0] == 169 && o[1] == 254 {
                    "169.254.xxx".into()
                } else {
                    "External-IP".into()
                }
            }
            Ok(IpAddr::V6(v6)) => {
                let seg = v6.segments()[0];
                if v6.is_loopback() || v6.is_unspecified() {
                    String::new()
                } else if seg & 0xfe00 == 0xfc00 {
                    "fdxx::".into()
                } else if seg & 0xffc0 == 0xfe80 {
                    "fe80::".into()
                } else {
                    "External-IP".into()
                }
            }
            Err(_) => "External-IP".into(),
        },
    }
}

fn save(path: &Path, m: &AliasMap) -> std::io::Result<()> {
    crate::files::write_private(path, &serde_json::to_vec_pretty(m).expect("serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_stable_and_per_kind() {
        let a = Anonymizer::in_memory();
        assert_eq!(a.alias(Kind::UserName, "Bob \"the\" O'Brien"), "User-001");
        assert_eq!(a.alias(Kind::UserName, "alice@example.com"), "User-002");
        assert_eq!(a.alias(Kind::UserName, "Bob \"the\" O'Brien"), "User-001");
        assert_eq!(a.alias(Kind::UserId, "4f1c"), "UserId-001");
        assert_eq!(a.alias(Kind::Session, "abc"), "Session-001");
        assert_eq!(a.alias(Kind::Device, "tv"), "Device-001");
    }

    #[test]
    fn addresses_keep_their_private_shape() {
        let a = Anonymizer::in_memory();
        assert_eq!(a.alias(Kind::Ip, "192.168.1.20"), "192.168.xxx.1");
        assert_eq!(a.alias(Kind::Ip, "192.168.7.9"), "192.168.xxx.2");
        assert_eq!(a.alias(Kind::Ip, "10.0.0.3"), "10.xxx.xxx.1");
        assert_eq!(a.alias(Kind::Ip, "203.0.113.7"), "External-IP-001");
        assert_eq!(a.alias(Kind::Ip, "2001:db8::1"), "External-IP-002");
        assert_eq!(a.alias(Kind::Ip, "fd12::7"), "fdxx::1");
        assert_eq!(a.alias(Kind::Ip, "127.0.0.1"), "127.0.0.1");
        assert_eq!(a.alias(Kind::Ip, "::1"), "::1");
    }

    #[test]
    fn the_map_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.json");
        let a = Anonymizer::load(&path).unwrap();
        a.alias(Kind::UserName, "Zoë");
        a.alias(Kind::Ip, "203.0.113.7");
        let b = Anonymizer::load(&path).unwrap();
        assert_eq!(b.alias(Kind::Ip, "198.51.100.1"), "External-IP-002");
        assert_eq!(b.alias(Kind::UserName, "Zoë"), "User-001");
    }

    #[test]
    fn a_corrupt_map_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases.json");
        fs::write(&path, "{nope").unwrap();
        let a = Anonymizer::load(&path).unwrap();
        assert_eq!(a.alias(Kind::UserName, "x"), "User-001");
        assert!(dir.path().join("aliases.json.corrupt").exists());
    }

    #[test]
    fn reveal_gives_the_owner_the_names_back_escaped() {
        let a = Anonymizer::in_memory();
        for i in 1..=10 {
            a.alias(Kind::UserName, &format!("user{i}"));
        }
        a.alias(Kind::UserName, "eve\u{1b}[2J");
        a.alias(Kind::Ip, "192.168.1.20");
        assert_eq!(
            a.reveal("User-001, User-010 (User-0100) at 192.168.xxx.1; User-011 ok"),
            "user1, user10 (User-0100) at 192.168.1.20; eve\\u{1b}[2J ok"
        );
    }

    #[test]
    fn scrub_replaces_known_values_and_unknown_ips_once() {
        let a = Anonymizer::in_memory();
        a.alias(Kind::UserName, "User");
        a.alias(Kind::UserName, "Al");
        let out = a.scrub("User Al and Alice from 203.0.113.7:443 and [2001:db8::9] at 127.0.0.1");
        assert_eq!(
            out,
            "User-001 User-002 and Alice from External-IP-001:443 and [External-IP-002] at 127.0.0.1"
        );
        // Scrubbing the output again changes nothing: aliases are not aliased.
        assert_eq!(a.scrub(&out), out);
        // A value escaped for JSON or a terminal is found too.
        a.alias(Kind::UserName, "Bob \"the\" Builder");
        a.alias(Kind::UserName, "CORP\\alice");
        a.alias(Kind::Device, "TV\u{1b}[1m");
        assert_eq!(
            a.scrub(
                r#"{"user":"Bob \"the\" Builder","u2":"CORP\\alice","d":"TV\u001b[1m"} TV\u{1b}[1m"#
            ),
            r#"{"user":"User-003","u2":"User-004","d":"Device-001"} Device-001"#
        );
        // Networks are configuration, kept; an address beside one is not.
        assert_eq!(
            a.scrub("ranges 10.0.0.0/8, 2001:db8::/32 from 198.51.100.9/ ok"),
            "ranges 10.0.0.0/8, 2001:db8::/32 from External-IP-003/ ok"
        );
    }
}
