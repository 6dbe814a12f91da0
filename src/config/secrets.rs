//! A secret given inline or as `<key>_file`: read, trimmed, never both, tokens long enough.

use std::path::Path;

use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, invalid};

/// A secret given inline or in a file (whitespace trimmed); `file_key` names the file key in
/// errors.
pub(super) fn secret_from(
    inline: &Option<SecretString>,
    file: &Option<RelativePathBuf>,
    file_key: &'static str,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(t) = inline {
        return Ok(Some(t.clone()));
    }
    let Some(path) = file.as_ref().map(RelativePathBuf::relative) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .or_else(|e| credential(&path).ok_or(e))
        .map_err(|e| invalid(file_key, format!("cannot read {}: {e}", path.display())))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid(file_key, format!("{} is empty", path.display())));
    }
    Ok(Some(SecretString::from(t.to_owned())))
}

/// A secret file the service cannot read itself, handed to it by systemd as a credential of
/// the same name (`LoadCredential=qbittorrent_password:/etc/jellydemon/qbittorrent_password`
/// puts it in `$CREDENTIALS_DIRECTORY`).
pub(super) fn credential(path: &Path) -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    std::fs::read_to_string(Path::new(&dir).join(path.file_name()?)).ok()
}

/// The fewest characters a webhook or status secret may have, inline or in its file.
pub(super) const MIN_TOKEN_LEN: usize = 16;

/// [`secret_from`] for a secret that guards an endpoint: a file's too must be at least
/// [`MIN_TOKEN_LEN`] characters (as an inline one is, checked at load).
pub(super) fn token_from(
    inline: &Option<SecretString>,
    file: &Option<RelativePathBuf>,
    file_key: &'static str,
) -> Result<Option<SecretString>, ConfigError> {
    let t = secret_from(inline, file, file_key)?;
    if inline.is_none()
        && t.as_ref()
            .is_some_and(|t| t.expose_secret().len() < MIN_TOKEN_LEN)
    {
        return Err(short_token(file_key));
    }
    Ok(t)
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
