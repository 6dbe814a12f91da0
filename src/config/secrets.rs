//! A secret given inline (`key = "…"`) or as `key_file = "path"`: never both, its file read
//! once at load (trimmed), endpoint tokens long enough.

use std::path::Path;

use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, invalid};

/// A secret of the configuration. `Settings::load` reads a `key_file` once and puts what it
/// holds in the field of `key`, so nothing reads a secret's file after the load.
///
/// A file this process cannot read does not fail the load: `check`, `report` and `ctl` run as
/// another user than the service's still load the rest; whatever needs the secret (the daemon
/// at its start) gets the error that names the key and the file.
#[derive(Clone)]
pub enum Secret {
    /// Given inline, or read from its file (surrounding whitespace removed).
    Known(SecretString),
    /// Its file could not be read by this process.
    Unreadable {
        /// The file's key, e.g. `jellyfin.api_key_file`.
        key: &'static str,
        /// Why, with the file's path (never its content).
        message: String,
    },
}

impl Secret {
    /// The secret, or why its file could not be read.
    pub fn get(&self) -> Result<&SecretString, ConfigError> {
        match self {
            Secret::Known(s) => Ok(s),
            Secret::Unreadable { key, message } => Err(invalid(key, message.clone())),
        }
    }

    /// The secret given inline (`None`: it came from an unreadable file).
    pub(super) fn inline(&self) -> Option<&str> {
        match self {
            Secret::Known(s) => Some(s.expose_secret()),
            Secret::Unreadable { .. } => None,
        }
    }
}

impl From<SecretString> for Secret {
    fn from(s: SecretString) -> Secret {
        Secret::Known(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::Known(SecretString::from(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Known(_) => f.write_str("Secret([REDACTED])"),
            Secret::Unreadable { key, .. } => write!(f, "Secret(unreadable {key})"),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        SecretString::deserialize(d).map(Secret::Known)
    }
}

/// `inline` or the file, `None` when neither is set. Runs at load, after the checks that a
/// secret is given one way only.
pub(super) fn resolve(
    inline: &mut Option<Secret>,
    file: &Option<RelativePathBuf>,
    file_key: &'static str,
) -> Result<(), ConfigError> {
    if inline.is_some() {
        return Ok(());
    }
    let Some(path) = file.as_ref().map(RelativePathBuf::relative) else {
        return Ok(());
    };
    let text = match std::fs::read_to_string(&path).or_else(|e| credential(&path).ok_or(e)) {
        Ok(text) => text,
        Err(e) => {
            *inline = Some(Secret::Unreadable {
                key: file_key,
                message: format!("cannot read {}: {e}", path.display()),
            });
            return Ok(());
        }
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid(file_key, format!("{} is empty", path.display())));
    }
    *inline = Some(Secret::Known(SecretString::from(t.to_owned())));
    Ok(())
}

/// [`resolve`], then the secret out of `inline`: `None` when neither way gives it.
pub(super) fn take(
    inline: &mut Option<Secret>,
    file: &Option<RelativePathBuf>,
    file_key: &'static str,
) -> Result<Option<Secret>, ConfigError> {
    resolve(inline, file, file_key)?;
    Ok(inline.take())
}

/// A secret file the service cannot read itself, handed to it by systemd as a credential of
/// the same name (`LoadCredential=qbittorrent_password:/etc/jellydemon/qbittorrent_password`
/// puts it in `$CREDENTIALS_DIRECTORY`).
fn credential(path: &Path) -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    std::fs::read_to_string(Path::new(&dir).join(path.file_name()?)).ok()
}

/// The fewest characters a webhook or status secret may have, inline or in its file.
pub(super) const MIN_TOKEN_LEN: usize = 16;

/// [`resolve`] for a secret that guards an endpoint: a file's too must be at least
/// [`MIN_TOKEN_LEN`] characters (as an inline one is, checked before).
pub(super) fn resolve_token(
    inline: &mut Option<Secret>,
    file: &Option<RelativePathBuf>,
    file_key: &'static str,
) -> Result<(), ConfigError> {
    let given_inline = inline.is_some();
    resolve(inline, file, file_key)?;
    match inline {
        Some(Secret::Known(t)) if !given_inline && t.expose_secret().len() < MIN_TOKEN_LEN => {
            Err(short_token(file_key))
        }
        _ => Ok(()),
    }
}

pub(super) fn short_token(file_key: &'static str) -> ConfigError {
    invalid(
        file_key,
        format!(
            "the secret in it must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand \
             -hex 16`)"
        ),
    )
}
