//! `jellydemon import-config`: the Python JellyDemon's `config.yml` turned into a
//! `config.toml`, saying for every key what it became or why it has none. Pure: text in, the
//! new file's text, the API key and the notes out; the command writes them.
//!
//! The shape read is the Python project's `config.example.yml` (sections `jellyfin`,
//! `network`, `bandwidth`, `daemon`), plus the spellings its loader also accepts
//! (`daemon.update_interval_seconds`, `bandwidth.equal_split.min_per_user_mbps`). Anything else
//! is an error that names the key: an import that silently drops a setting would surprise.

use std::fmt::Write as _;

use secrecy::{ExposeSecret, SecretString};
use yaml_rust2::{Yaml, YamlLoader};

use crate::config::toml_string as toml_str;

mod yaml;

use yaml::{Section, Value, kind};

mod logging;

use logging::{LogKeys, logging};

/// Why the file cannot be imported; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Not YAML at all.
    #[error("not YAML: {0}")]
    Syntax(String),
    /// A key the Python JellyDemon does not have.
    #[error("unknown key `{0}` (not a Python JellyDemon setting)")]
    Unknown(String),
    /// A required key is missing.
    #[error("missing `{key}`: {why}")]
    Missing {
        /// The key.
        key: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// A value of the wrong type or out of range.
    #[error("`{key}`: {problem}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// The result: the new configuration, the key for its own file, and one note per key.
#[derive(Debug)]
pub struct Conversion {
    /// `config.toml`'s text; the key is in a file named `api_key` beside it.
    pub toml: String,
    /// The API key.
    pub api_key: SecretString,
    /// Per Python key (or group of keys): what it became, or why nothing.
    pub notes: Vec<(String, String)>,
}

/// Convert the Python JellyDemon's `config.yml`.
pub fn convert(yaml: &str) -> Result<Conversion, ImportError> {
    convert_with_key(yaml, None)
}

/// Whether an API key is an example's placeholder ("your_api_key_here", "<api key>",
/// "changeme"), not a key.
fn is_placeholder(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase().replace('-', "_");
    k.contains("your_api_key")
        || k.contains("api_key_here")
        || k.starts_with("your_")
        || (k.starts_with('<') && k.ends_with('>'))
        || ["changeme", "change_me", "xxx", "api_key", "key"].contains(&k.as_str())
}

/// [`convert`], with `key` (from `--api-key-file`) instead of the file's `jellyfin.api_key`.
pub fn convert_with_key(yaml: &str, key: Option<SecretString>) -> Result<Conversion, ImportError> {
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| ImportError::Syntax(e.to_string()))?;
    let root = match docs.first() {
        Some(Yaml::Hash(h)) => h,
        Some(other) => {
            return Err(ImportError::Syntax(format!(
                "expected sections of keys, found {}",
                kind(other)
            )));
        }
        None => return Err(ImportError::Syntax("the file is empty".into())),
    };
    for k in root.keys() {
        let name = match k {
            Yaml::String(s) => s.as_str(),
            _ => "?",
        };
        if !["jellyfin", "network", "bandwidth", "daemon"].contains(&name) {
            return Err(ImportError::Unknown(name.to_string()));
        }
    }
    let mut out = Out::new(String::from(
        "# jellydemon configuration, imported from the Python JellyDemon's config.yml by\n\
         # `jellydemon import-config`. Every key is described in config.example.toml (in the\n\
         # source); any key can also be set as JELLYDEMON_SECTION__KEY.\n",
    ));

    let key = jellyfin(root, key, &mut out)?;
    network(root, &mut out)?;
    bandwidth(root, &mut out)?;
    daemon(root, &mut out)?;
    // Not a key of config.yml: the Python daemon manages Jellyfin only.
    out.note(
        "(torrent clients)",
        "nothing to import: the Python JellyDemon manages no torrent client; one seeding on \
         the link gets what the remote streams leave with a [[downloader]] entry (README.md, \
         \"Torrent clients beside Jellyfin\")"
            .into(),
    );
    Ok(Conversion {
        toml: out.toml,
        api_key: SecretString::from(key.trim().to_string()),
        notes: out.notes,
    })
}

/// The new file's text and the notes, as they are made.
struct Out {
    toml: String,
    notes: Vec<(String, String)>,
}

impl Out {
    fn new(toml: String) -> Out {
        Out {
            toml,
            notes: Vec::new(),
        }
    }

    /// What the Python key (or keys) `from` became, or why nothing.
    fn note(&mut self, from: &str, to: String) {
        self.notes.push((from.to_string(), to));
    }
}

/// `jellyfin`: the URL from host, port and scheme; the key (`key` when given, else the
/// file's), returned for a file of its own.
fn jellyfin(
    root: &yaml_rust2::yaml::Hash,
    key: Option<SecretString>,
    out: &mut Out,
) -> Result<String, ImportError> {
    let mut j = Section::new(root, "jellyfin")?;
    let host = j.string("host")?.ok_or(ImportError::Missing {
        key: "jellyfin.host",
        why: "jellydemon needs to know where Jellyfin is",
    })?;
    let port = match j.get("port") {
        Value::Absent => 8096,
        Value::Present(Yaml::Integer(p)) if (1..=65535).contains(p) => *p,
        Value::Present(Yaml::String(s)) if s.trim().parse::<u16>().is_ok_and(|p| p > 0) => {
            i64::from(s.trim().parse::<u16>().unwrap_or(8096))
        }
        Value::Present(other) => {
            return Err(ImportError::Invalid {
                key: "jellyfin.port".into(),
                problem: format!("expected a port number (1-65535), found {}", kind(other)),
            });
        }
    };
    let https = j.boolean("use_https")?.unwrap_or(false);
    let in_file = j.string("api_key")?.filter(|k| !k.trim().is_empty());
    let key = match key {
        Some(k) => k.expose_secret().trim().to_string(),
        None => {
            let k = in_file.ok_or(ImportError::Missing {
                key: "jellyfin.api_key",
                why: "jellydemon needs an API key (Jellyfin: Dashboard -> API Keys); put it \
                      there or pass --api-key-file FILE",
            })?;
            if is_placeholder(&k) {
                return Err(ImportError::Invalid {
                    key: "jellyfin.api_key".into(),
                    problem: "is the example's placeholder, not a key: put your Jellyfin API \
                              key there (Dashboard -> API Keys), or pass --api-key-file FILE"
                        .into(),
                });
            }
            k
        }
    };
    j.done()?;
    let host_in_url = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]") // an IPv6 address
    } else {
        host.clone()
    };
    let url = format!(
        "{}://{host_in_url}:{port}",
        if https { "https" } else { "http" }
    );
    url::Url::parse(&url).map_err(|e| ImportError::Invalid {
        key: "jellyfin.host".into(),
        problem: format!("{url} is not a URL: {e}"),
    })?;
    out.note(
        "jellyfin.host, port, use_https",
        format!("jellyfin.url = {}", toml_str(&url)),
    );
    out.note(
        "jellyfin.api_key",
        "written to the file api_key beside config.out.toml (owner-only); config.out.toml names it \
         with api_key_file"
            .into(),
    );
    let _ = write!(
        out.toml,
        "\n[jellyfin]\nurl = {}\n# The API key, in a file of its own (relative to this file's folder).\n\
         api_key_file = \"api_key\"\n",
        toml_str(&url)
    );

    Ok(key)
}

/// `network`: the internal ranges; the test mode is noted, never imported.
fn network(root: &yaml_rust2::yaml::Hash, out: &mut Out) -> Result<(), ImportError> {
    let mut n = Section::new(root, "network")?;
    let ranges = n.list("internal_ranges")?;
    let test_mode = n.boolean("test_mode")?.unwrap_or(false);
    let test_ranges = n.list("test_external_ranges")?;
    n.done()?;
    out.toml.push_str("\n[network]\n");
    match ranges.filter(|r| !r.is_empty()) {
        Some(r) => {
            for cidr in &r {
                crate::network::parse_cidr(cidr).map_err(|e| ImportError::Invalid {
                    key: "network.internal_ranges".into(),
                    problem: format!("{cidr:?}: {e}"),
                })?;
            }
            let list: Vec<String> = r.iter().map(|c| toml_str(c)).collect();
            out.note(
                "network.internal_ranges",
                format!(
                    "network.internal_ranges = [{}] (or \"jellyfin\": read Jellyfin's own LAN \
                     networks, so both always agree)",
                    list.join(", ")
                ),
            );
            let _ = writeln!(
                out.toml,
                "# Who is local. \"jellyfin\" instead reads Jellyfin's own LAN networks.\n\
                 internal_ranges = [{}]",
                list.join(", ")
            );
        }
        None => {
            out.note(
                "network.internal_ranges",
                "absent: network.internal_ranges = \"jellyfin\" (Jellyfin's own LAN networks)"
                    .into(),
            );
            out.toml.push_str("internal_ranges = \"jellyfin\"\n");
        }
    }
    let test_note = if test_mode {
        "test_mode was ON: the Python daemon treated these LAN ranges as remote for testing. \
         jellydemon has no such mode (it would limit people at home); nothing imported. To see \
         it work without real remote streams: `jellydemon demo`, or `jellydemon reconcile \
         --once --dry-run`"
    } else {
        "a testing aid of the Python daemon (treat LAN ranges as remote); jellydemon has none: \
         use `jellydemon demo` or `reconcile --once --dry-run`; nothing imported"
    };
    out.note("network.test_mode", test_note.into());
    if test_ranges.is_some_and(|r| !r.is_empty()) {
        out.note(
            "network.test_external_ranges",
            "used only by test_mode; nothing imported".into(),
        );
    }

    Ok(())
}

/// `bandwidth`: the algorithm, the link, the reserve and the per-user floor and ceiling.
fn bandwidth(root: &yaml_rust2::yaml::Hash, out: &mut Out) -> Result<(), ImportError> {
    let mut b = Section::new(root, "bandwidth")?;
    let algorithm = match b.string("algorithm")?.as_deref() {
        None | Some("equal_split") => "equal",
        Some("priority_based") => "priority",
        Some("demand_based") => "demand",
        Some(other) => {
            return Err(ImportError::Invalid {
                key: "bandwidth.algorithm".into(),
                problem: format!(
                    "{other:?} is not one of equal_split, priority_based, demand_based"
                ),
            });
        }
    };
    let min = b.number("min_per_user")?;
    let max = b.number("max_per_user")?;
    let reserved = b.number("reserved_bandwidth")?;
    let total = b.number("total_upload_mbps")?.ok_or(ImportError::Missing {
        key: "bandwidth.total_upload_mbps",
        why: "the upload speed of the link is what jellydemon shares",
    })?;
    if total <= 0.0 {
        return Err(ImportError::Invalid {
            key: "bandwidth.total_upload_mbps".into(),
            problem: "must be greater than 0".into(),
        });
    }
    // The per-algorithm sub-sections the Python loader reads (one override) or skips.
    let mut min_override = None;
    for sub in ["equal_split", "priority_based", "demand_based"] {
        match b.get(sub) {
            Value::Absent => {}
            Value::Present(Yaml::Hash(h)) => {
                for (k, v) in h {
                    let k = match k {
                        Yaml::String(s) => s.as_str(),
                        _ => "?",
                    };
                    match (sub, k, v) {
                        ("equal_split", "min_per_user_mbps", Yaml::Integer(i)) => {
                            min_override = Some(*i as f64)
                        }
                        ("equal_split", "min_per_user_mbps", Yaml::Real(r)) => {
                            min_override = r.parse::<f64>().ok()
                        }
                        _ => out.note(
                            &format!("bandwidth.{sub}.{k}"),
                            "ignored by the Python daemon too; nothing imported".into(),
                        ),
                    }
                }
            }
            Value::Present(other) => return Err(b.wrong(sub, "a section", other)),
        }
    }
    b.done()?;
    let min = min.or(min_override);
    let _ = write!(
        out.toml,
        "\n[bandwidth]\ntotal_upload_mbps = {total}\nalgorithm = {}\n",
        toml_str(algorithm)
    );
    out.note(
        "bandwidth.algorithm",
        format!("bandwidth.algorithm = {}", toml_str(algorithm)),
    );
    out.note(
        "bandwidth.total_upload_mbps",
        format!("bandwidth.total_upload_mbps = {total}"),
    );
    if let Some(r) = reserved {
        let _ = writeln!(out.toml, "reserved_mbps = {r}");
        out.note(
            "bandwidth.reserved_bandwidth",
            format!("bandwidth.reserved_mbps = {r}"),
        );
    }
    if let Some(m) = min {
        let _ = writeln!(out.toml, "min_per_user_mbps = {m}");
        out.note(
            "bandwidth.min_per_user",
            format!("bandwidth.min_per_user_mbps = {m}"),
        );
    }
    if let Some(m) = max {
        if min.is_some_and(|min| m < min) {
            return Err(ImportError::Invalid {
                key: "bandwidth.max_per_user".into(),
                problem: format!("{m} is below min_per_user"),
            });
        }
        let _ = writeln!(out.toml, "max_per_user_mbps = {m}");
        out.note(
            "bandwidth.max_per_user",
            format!("bandwidth.max_per_user_mbps = {m}"),
        );
    }

    Ok(())
}

/// `daemon`: the poll, the dry run; its logging keys become `[logging]`.
fn daemon(root: &yaml_rust2::yaml::Hash, out: &mut Out) -> Result<(), ImportError> {
    let mut d = Section::new(root, "daemon")?;
    let interval = match (
        d.number("update_interval")?,
        d.number("update_interval_seconds")?,
    ) {
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => None,
    };
    let log = LogKeys {
        level: d.string("log_level")?,
        file: d.string("log_file")?,
        max_size: d.string("log_max_size")?,
        backup_count: d.number("log_backup_count")?,
        anonymize: d.boolean("anonymize_logs")?,
        save_map: d.boolean("save_anonymization_map")?,
        map_file: d.string("anonymization_map_file")?,
    };
    let dry_run = d.boolean("dry_run")?;
    let backup = d.boolean("backup_user_settings")?;
    let pid_file = d.string("pid_file")?;
    d.done()?;

    out.toml.push_str(
        "\n[daemon]\n# The Python daemon polled; so does this configuration. The Jellyfin Webhook \
         plugin makes\n# jellydemon react at once: see webhook-templates/README.md, then set mode \
         = \"webhook\".\nmode = \"reconcile-only\"\n\
         # The webhook secret (generated); off loopback, the status page asks for it too.\n\
         webhook_token_file = \"webhook_token\"\n",
    );
    match interval {
        Some(secs) if secs >= 1.0 => {
            let secs = secs.round() as u64;
            let _ = writeln!(out.toml, "poll_interval = \"{secs}s\"");
            out.note(
                "daemon.update_interval",
                format!(
                    "daemon.mode = \"reconcile-only\", daemon.poll_interval = \"{secs}s\" (with \
                     the Webhook plugin, mode = \"webhook\" reacts at once and polls every 5 min)"
                ),
            );
        }
        Some(_) => {
            return Err(ImportError::Invalid {
                key: "daemon.update_interval".into(),
                problem: "must be at least 1 second".into(),
            });
        }
        None => out.note(
            "daemon.update_interval",
            "absent: daemon.mode = \"reconcile-only\", polling every 30 s".into(),
        ),
    }
    if let Some(true) = dry_run {
        out.toml.push_str("dry_run = true\n");
        out.note("daemon.dry_run", "daemon.dry_run = true".into());
    } else if dry_run.is_some() {
        out.note(
            "daemon.dry_run",
            "false, the default: nothing to write".into(),
        );
    }

    logging(log, out)?;
    if let Some(b) = backup {
        out.note(
            "daemon.backup_user_settings",
            format!(
                "{}: jellydemon always keeps every user's original limit in its state file \
                 (/var/lib/jellydemon/state.json) and puts it back on stop or with `jellydemon \
                 restore`",
                if b { "on" } else { "was off" }
            ),
        );
    }
    if pid_file.is_some() {
        out.note(
            "daemon.pid_file",
            "no equivalent: systemd or the container runtime keeps track of the process".into(),
        );
    }
    Ok(())
}

/// The files [`write()`] made.
#[derive(Debug)]
pub struct Written {
    /// `config.toml`.
    pub config: std::path::PathBuf,
    /// The API key's file beside it.
    pub api_key: std::path::PathBuf,
    /// The generated webhook secret's file beside it.
    pub webhook_token: std::path::PathBuf,
}

/// Write `c` as `config` (0644: no secret in it), the key to `api_key` and a new webhook
/// secret to `webhook_token` beside it (0600). Refuses to overwrite any of them without
/// `force`; checks all three before writing any.
pub fn write(
    c: &Conversion,
    config: &std::path::Path,
    force: bool,
) -> Result<Written, crate::folder::FolderError> {
    let folder = crate::folder::Folder::of(config);
    folder.check_free(force)?;
    folder.write(&c.api_key, &[], &c.toml)?;
    Ok(Written {
        config: folder.config.clone(),
        api_key: folder.api_key(),
        webhook_token: folder.webhook_token(),
    })
}

#[cfg(test)]
mod tests;
