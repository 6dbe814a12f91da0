//! The owner's overrides (`src/core/control.rs`) kept on disk beside the state file
//! (`overrides.json`): read at start, saved after each change, a corrupt file set aside rather
//! than lost in silence.

use std::path::Path;

use crate::core::control::Overrides;

/// Read the overrides saved by the daemon before. A missing file is none. A file that cannot
/// be parsed is an error that says what was lost; with `set_aside` (the commands that write:
/// the daemon, `reconcile`) it is first moved aside (`overrides.json.corrupt-<unix ms>`), so
/// that the next save starts a new one and the owner can still read the old one.
pub fn load(path: &Path, set_aside: bool) -> Result<Overrides, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Overrides::default()),
        Err(e) => return Err(format!("{} cannot be read: {e}", path.display())),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        let mut msg = format!("{} cannot be parsed ({e})", path.display());
        if set_aside {
            let aside =
                path.with_extension(format!("json.corrupt-{}", crate::clock::unix_millis_now()));
            match std::fs::rename(path, &aside) {
                Ok(()) => msg.push_str(&format!("; moved aside to {}", aside.display())),
                Err(e) => msg.push_str(&format!("; it could not be moved aside: {e}")),
            }
        }
        msg.push_str(": no override (pause, pin, exemption, weight, reserve) is in force");
        msg
    })
}

/// Save the overrides atomically, readable by the owner only.
pub fn save(path: &Path, overrides: &Overrides) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(overrides).expect("overrides serialize");
    json.push(b'\n');
    crate::files::write_private(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::control::Action;

    fn pause() -> Action {
        serde_json::from_str(r#"{"action":"pause","for":"1h"}"#).unwrap()
    }

    #[test]
    fn saved_overrides_load_and_a_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overrides.json");
        assert_eq!(load(&path, true).unwrap(), Overrides::default());
        let mut o = Overrides::default();
        o.apply(&pause(), "cli", 5, &[]).unwrap();
        save(&path, &o).unwrap();
        assert_eq!(load(&path, true).unwrap(), o);
        std::fs::write(&path, b"{ not json").unwrap();
        // A reader leaves it where it is.
        assert!(load(&path, false).is_err());
        assert!(path.exists());
        let e = load(&path, true).unwrap_err();
        assert!(e.contains("moved aside"), "{e}");
        assert!(!path.exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            aside
                .iter()
                .any(|n| n.starts_with("overrides.json.corrupt-")),
            "{aside:?}"
        );
    }
}
