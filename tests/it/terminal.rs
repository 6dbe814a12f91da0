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
