//! Log colours: on a terminal only, and never with `NO_COLOR`. journald, `2> file` and pipes
//! get plain text (the pipe and file cases are also checked in `anonymize.rs`).

use std::io::Read;

use crate::common::{Harness, KEY};
use jellydemon::sim::fake::FakeJellyfin;
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// Run `reconcile --dry-run` at level info with its standard error on a pseudo-terminal, and
/// return what the terminal received.
async fn on_a_terminal(h: &Harness, no_color: Option<&str>) -> String {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jellydemon"));
    cmd.arg("--config")
        .arg(&h.config_path)
        .args(["reconcile", "--dry-run"])
        .env("RUST_LOG", "jellydemon=info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(slave);
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let status = cmd.status().await.unwrap();
    assert!(status.success());
    drop(cmd); // it holds our copy of the slave side
    // The child has exited and our copy of the slave is closed: read what is left, until
    // the terminal reports that nobody holds the other side (EIO) or nothing is left.
    // Non-blocking: everything was written before the child exited, so a read that would
    // wait means the end, and the test can never hang here.
    rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK).unwrap();
    let mut master = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn colours_on_a_terminal_unless_no_color() {
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    let h = Harness::start(fake, "", "").await;

    let coloured = on_a_terminal(&h, None).await;
    assert!(coloured.contains("planned"), "{coloured}");
    assert!(
        coloured.contains("\u{1b}["),
        "colours on a terminal: {coloured:?}"
    );

    let plain = on_a_terminal(&h, Some("1")).await;
    assert!(plain.contains("planned"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR: {plain:?}");

    // An empty NO_COLOR does not count (no-color.org).
    let empty = on_a_terminal(&h, Some("")).await;
    assert!(empty.contains("\u{1b}["), "{empty:?}");
}

/// A user and a device named to forge lines and recolour the terminal.
fn hostile(fake: &FakeJellyfin) -> String {
    use jellydemon::sim::fake::Playback;
    let id = fake.add_user("eve\u{1b}[2J\r\nok   all good\u{202e}", |_| {});
    let s = fake.add_session(Some(&id), Some("203.0.113.66"), "Jellyfin Web", None);
    fake.rename_device(&s, "TV\u{1b}]0;owned\u{7}\n[ok] fine");
    fake.start_playback(&s, Playback::direct("x", Some(8 * crate::common::M), None));
    id
}

fn assert_no_controls(what: &str, text: &str) {
    for c in ['\u{1b}', '\r', '\u{7}', '\u{202e}'] {
        assert!(!text.contains(c), "{what} prints {c:?}:\n{text}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("ok   all good") || l.starts_with("[ok] fine")),
        "{what} lets a name start a line:\n{text}"
    );
}

#[tokio::test]
async fn names_from_jellyfin_cannot_forge_terminal_output() {
    let fake = FakeJellyfin::new(KEY);
    hostile(&fake);
    let h = Harness::start(fake, "", "").await;
    for args in [
        &["check"][..],
        &["reconcile", "--dry-run"][..],
        &["reconcile"][..],
    ] {
        let (_, out, err) = h.cli(args).await;
        assert_no_controls(&format!("{args:?} (stdout)"), &out);
        assert_no_controls(&format!("{args:?} (stderr)"), &err);
        assert!(
            out.contains("eve\\u{1b}[2J\\r\\nok"),
            "{args:?} escapes the name:\n{out}"
        );
    }
    let (_, out, _) = h.cli(&["restore"]).await;
    assert_no_controls("restore", &out);
}

#[tokio::test]
async fn the_owners_terminal_shows_names_while_the_logs_keep_aliases() {
    use jellydemon::sim::fake::Playback;
    let fake = FakeJellyfin::new(KEY);
    let erin = fake.add_user("erin", |_| {});
    let s = fake.add_session(Some(&erin), Some("203.0.113.5"), "Jellyfin Web", None);
    fake.start_playback(&s, Playback::direct("x", Some(8 * crate::common::M), None));
    let h = Harness::start(fake, "", "").await;
    // The state folder does not exist yet: check says so, and creates nothing.
    let state_dir = h.dir.path().join("state");
    let cfg = std::fs::read_to_string(&h.config_path).unwrap().replace(
        &h.state_path.display().to_string(),
        &state_dir.join("state.json").display().to_string(),
    ) + "\n[logging]\nanonymize = true\nlevel = \"info\"\n";
    std::fs::write(&h.config_path, cfg).unwrap();

    let (code, out, err) = h.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("erin"), "check shows the name:\n{out}");
    assert!(!out.contains("User-001"), "{out}");
    assert!(out.contains("can be created"), "{out}");
    assert!(!state_dir.exists(), "check created {}", state_dir.display());

    let (code, out, err) = h.cli(&["reconcile"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.lines().any(|l| l.starts_with("erin ")), "{out}");
    assert!(
        err.contains("User-001") && !err.contains("erin"),
        "logs keep aliases:\n{err}"
    );
}
