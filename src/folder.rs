//! The configuration folder `init` and `import-config` write: `config.toml` (0644, no secret
//! in it), and beside it one owner-only (0600) file per secret (`api_key`, a fresh
//! `webhook_token`, the torrent client's password ...), which `config.toml` names with
//! `<key>_file`. Nothing is overwritten without `force`, and every name is checked before any
//! file is written.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Where the files go.
#[derive(Debug, Clone)]
pub struct Folder {
    /// The folder (`.` when `config` has no parent).
    pub dir: PathBuf,
    /// `config.toml`.
    pub config: PathBuf,
}

/// Why the folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// A file is there and `force` was not given.
    #[error("{} exists; pass --force to overwrite it", .0.display())]
    Exists(PathBuf),
    /// A file or the folder could not be written, with the reason.
    #[error("{0}")]
    Io(String),
}

impl Folder {
    /// The folder of the configuration file `config`.
    pub fn of(config: &Path) -> Folder {
        let dir = config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Folder {
            dir,
            config: config.to_path_buf(),
        }
    }

    /// The API key's file.
    pub fn api_key(&self) -> PathBuf {
        self.dir.join("api_key")
    }

    /// The webhook secret's file (it also guards the status page off loopback).
    pub fn webhook_token(&self) -> PathBuf {
        self.dir.join("webhook_token")
    }

    /// The file named `name` in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `Exists` for the first of the configuration, the API key's and the webhook secret's
    /// files that is there, unless `force`.
    pub fn check_free(&self, force: bool) -> Result<(), FolderError> {
        if force {
            return Ok(());
        }
        for p in [self.config.clone(), self.api_key(), self.webhook_token()] {
            if p.exists() {
                return Err(FolderError::Exists(p));
            }
        }
        Ok(())
    }

    /// Create the folder; write `api_key`, a new webhook secret, each of `secrets` (file name,
    /// value), each owner-only with a trailing newline; then `toml` as the configuration,
    /// readable by the service's user.
    pub fn write(
        &self,
        api_key: &SecretString,
        secrets: &[(String, &SecretString)],
        toml: &str,
    ) -> Result<(), FolderError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| FolderError::Io(format!("cannot create {}: {e}", self.dir.display())))?;
        let put = |path: &Path, text: &str| {
            crate::files::write_private(path, text.as_bytes())
                .map_err(|e| FolderError::Io(format!("cannot write {}: {e}", path.display())))
        };
        put(&self.api_key(), &format!("{}\n", api_key.expose_secret()))?;
        put(&self.webhook_token(), &format!("{}\n", new_secret()?))?;
        for (name, value) in secrets {
            put(&self.file(name), &format!("{}\n", value.expose_secret()))?;
        }
        put(&self.config, toml)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o644)).map_err(
            |e| {
                FolderError::Io(format!(
                    "cannot set the mode of {}: {e}",
                    self.config.display()
                ))
            },
        )
    }
}

/// A webhook secret: 32 random hex digits.
pub fn new_secret() -> Result<String, FolderError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| FolderError::Io(format!("no randomness for the webhook secret: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_folder_gets_its_secrets_owner_only_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Folder::of(&tmp.path().join("sub").join("config.toml"));
        f.check_free(false).unwrap();
        let key = SecretString::from("k".repeat(32));
        let pw = SecretString::from("hunter2".to_string());
        f.write(&key, &[("qbittorrent_password".into(), &pw)], "x = 1\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(f.api_key()).unwrap(),
            format!("{}\n", "k".repeat(32))
        );
        let token = std::fs::read_to_string(f.webhook_token()).unwrap();
        assert_eq!(token.trim().len(), 32, "{token}");
        assert_eq!(
            std::fs::read_to_string(f.file("qbittorrent_password")).unwrap(),
            "hunter2\n"
        );
        assert_eq!(std::fs::read_to_string(&f.config).unwrap(), "x = 1\n");
        for p in [
            f.api_key(),
            f.webhook_token(),
            f.file("qbittorrent_password"),
        ] {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        assert_eq!(mode(&f.config), 0o644);
        let err = f.check_free(false).unwrap_err().to_string();
        assert!(err.contains("config.toml exists; pass --force"), "{err}");
        f.check_free(true).unwrap();
    }

    #[test]
    fn a_config_without_a_folder_is_in_the_current_one() {
        assert_eq!(Folder::of(Path::new("config.toml")).dir, Path::new("."));
    }
}
