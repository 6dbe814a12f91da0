//! Real torrent clients: Debian's `qbittorrent-nox` and `transmission-daemon`, started on
//! loopback with a profile in a temp dir (`.ci/run` installs them; without them the tests are
//! skipped, unless `JD_TEST_REQUIRE_TORRENT` is set, as `.ci/run` does).
//!
//! Their upload settings start from values written in their own configuration files, so
//! that what jellydemon reads is checked against the client's own storage, not against
//! itself: qBittorrent 100 KiB/s normal, 20 KiB/s alternative; Transmission 100 kB/s normal
//! (disabled), 50 kB/s alternative.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use jellydemon::adapters::downloader::Downloader;

/// A fake Jellyfin where alice streams 20 Mbps from outside, and the harness around it with
/// `downloaders` (`[[downloader]]` entries and the like) at the end of its configuration;
/// returns alice's id too.
pub async fn streaming_house(downloaders: &str) -> (super::Harness, String) {
    use jellydemon::sim::fake::{FakeJellyfin, Playback};
    let fake = FakeJellyfin::new(super::KEY);
    let alice = fake.add_user("alice", |_| {});
    fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Web",
        Some(Playback::direct("Film", Some(20 * super::M), None)),
    );
    (super::Harness::start(fake, "", downloaders).await, alice)
}

/// The WebUI/RPC login the clients are given.
pub const USER: &str = "jd";
pub const PASS: &str = "seeding-secret-0123";

/// Which client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Qbittorrent,
    Transmission,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Qbittorrent => "/usr/bin/qbittorrent-nox",
            Kind::Transmission => "/usr/bin/transmission-daemon",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Qbittorrent => "qbittorrent",
            Kind::Transmission => "transmission",
        }
    }
}

/// A running client.
pub struct Torrent {
    pub kind: Kind,
    pub url: String,
    port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Drop for Torrent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// qBittorrent's `WebUI\Password_PBKDF2`: PBKDF2-HMAC-SHA512, 100,000 rounds, a 16-byte
/// salt, 64 bytes, each in base64.
fn qbit_password(password: &str) -> String {
    let salt: [u8; 16] = *b"jellydemon-tests";
    let mut hash = [0u8; 64];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        std::num::NonZeroU32::new(100_000).unwrap(),
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("@ByteArray({}:{})", b64.encode(salt), b64.encode(hash))
}

impl Torrent {
    /// Start one, or `None` (the test is skipped) when it is not installed.
    pub async fn start(kind: Kind) -> Option<Torrent> {
        if !Path::new(kind.binary()).is_file() {
            assert!(
                std::env::var("JD_TEST_REQUIRE_TORRENT").is_err(),
                "{} is required (JD_TEST_REQUIRE_TORRENT is set) but not installed",
                kind.binary()
            );
            eprintln!("skipped: {} is not installed", kind.binary());
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut t = Torrent {
            kind,
            url: String::new(),
            port: 0,
            peer_port: 0,
            dir,
            child: None,
        };
        // A port picked free may be taken by another test meanwhile: a few tries.
        for _ in 0..4 {
            t.port = free_port();
            t.peer_port = free_port();
            t.url = format!("http://127.0.0.1:{}", t.port);
            t.write_profile();
            if t.launch().await {
                return Some(t);
            }
            t.kill();
        }
        panic!("{} did not start", kind.binary());
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    fn write_profile(&self) {
        match self.kind {
            Kind::Qbittorrent => {
                let conf = self.profile().join("qBittorrent").join("config");
                std::fs::create_dir_all(&conf).unwrap();
                std::fs::write(
                    conf.join("qBittorrent.conf"),
                    format!(
                        "[LegalNotice]\nAccepted=true\n\n\
                         [BitTorrent]\nSession\\Port={peer}\nSession\\GlobalUPSpeedLimit=100\n\
                         Session\\AlternativeGlobalUPSpeedLimit=20\n\
                         Session\\UseAlternativeGlobalSpeedLimit=false\n\
                         Session\\DHTEnabled=false\nSession\\LSDEnabled=false\n\
                         Session\\PeXEnabled=false\n\n\
                         [Network]\nPortForwardingEnabled=false\n\n\
                         [Preferences]\nWebUI\\Address=127.0.0.1\nWebUI\\Port={port}\n\
                         WebUI\\LocalHostAuth=true\nWebUI\\Username={USER}\n\
                         WebUI\\Password_PBKDF2=\"{hash}\"\nWebUI\\MaxAuthenticationFailCount=5\n\
                         WebUI\\BanDuration=3600\nConnection\\UPnP=false\n\
                         General\\Locale=en\n",
                        peer = self.peer_port,
                        port = self.port,
                        hash = qbit_password(PASS),
                    ),
                )
                .unwrap();
            }
            Kind::Transmission => {
                std::fs::create_dir_all(self.profile()).unwrap();
                let settings = self.profile().join("settings.json");
                if !settings.exists() {
                    std::fs::write(
                        settings,
                        serde_json::json!({
                            "speed-limit-up": 100,
                            "speed-limit-up-enabled": false,
                            "alt-speed-up": 50,
                            "alt-speed-enabled": false,
                        })
                        .to_string(),
                    )
                    .unwrap();
                }
            }
        }
    }

    /// Start the process and wait (at most 20 s) until its API answers.
    async fn launch(&mut self) -> bool {
        let mut cmd = Command::new(self.kind.binary());
        match self.kind {
            Kind::Qbittorrent => {
                cmd.arg(format!("--profile={}", self.profile().display()));
            }
            Kind::Transmission => {
                cmd.args(["-f", "-g"])
                    .arg(self.profile())
                    .args(["-p", &self.port.to_string()])
                    .args(["-P", &self.peer_port.to_string()])
                    .args([
                        "-r",
                        "127.0.0.1",
                        "-O",
                        "-Y",
                        "-M",
                        "-t",
                        "-u",
                        USER,
                        "-v",
                        PASS,
                    ])
                    .arg("-w")
                    .arg(self.dir.path());
            }
        }
        cmd.env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().unwrap());
        let http = reqwest::Client::new();
        let probe = match self.kind {
            Kind::Qbittorrent => format!("{}/api/v2/app/version", self.url),
            Kind::Transmission => format!("{}/transmission/rpc", self.url),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited: the port was taken
            }
            if http.get(&probe).send().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Kill the process (its settings stay in the profile).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port with the same profile.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch().await,
            "{} did not come back",
            self.kind.name()
        );
    }

    /// A `[[downloader]]` block for it, logging in with `password`.
    pub fn config(&self, password: &str) -> String {
        let file = self.dir.path().join(format!("password-{}", password.len()));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        format!(
            "[[downloader]]\nkind = \"{}\"\nurl = \"{}\"\nusername = \"{USER}\"\n\
             password_file = \"{}\"\ntimeout = \"3s\"\n",
            self.kind.name(),
            self.url,
            file.display()
        )
    }

    /// A client with the right login, for the test to look and to change things by hand.
    pub fn client(&self) -> Downloader {
        let s = jellydemon::config::Settings::from_toml_str(&format!(
            "[jellyfin]\nurl = \"http://127.0.0.1:1\"\napi_key = \"k\"\n[bandwidth]\n\
             total_upload_mbps = 10\n{}",
            self.config(PASS)
        ))
        .unwrap();
        Downloader::new(&s.downloader[0]).unwrap()
    }

    /// The failed WebUI logins qBittorrent logged.
    pub fn failed_logins(&self) -> usize {
        let log = self
            .profile()
            .join("qBittorrent")
            .join("data")
            .join("logs")
            .join("qbittorrent.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("WebAPI login failure")
            .count()
    }
}

impl Torrent {
    /// Switch the alternative ("turtle") limits on or off, as a person would in the client.
    pub async fn alternative(&self, on: bool) {
        let http = reqwest::Client::new();
        match self.kind {
            Kind::Qbittorrent => {
                let login = http
                    .post(format!("{}/api/v2/auth/login", self.url))
                    .form(&[("username", USER), ("password", PASS)])
                    .send()
                    .await
                    .unwrap();
                let sid = login
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|c| c.split(';').next())
                    .expect("a SID")
                    .to_string();
                let mode = http
                    .get(format!("{}/api/v2/transfer/speedLimitsMode", self.url))
                    .header("cookie", &sid)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if (mode.trim() == "1") != on {
                    let r = http
                        .post(format!(
                            "{}/api/v2/transfer/toggleSpeedLimitsMode",
                            self.url
                        ))
                        .header("cookie", &sid)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                }
            }
            Kind::Transmission => {
                let rpc = format!("{}/transmission/rpc", self.url);
                let first = http
                    .post(&rpc)
                    .basic_auth(USER, Some(PASS))
                    .send()
                    .await
                    .unwrap();
                let id = first.headers()["x-transmission-session-id"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let r = http
                    .post(&rpc)
                    .basic_auth(USER, Some(PASS))
                    .header("X-Transmission-Session-Id", id)
                    .json(&serde_json::json!({
                        "method": "session-set",
                        "arguments": {"alt-speed-enabled": on}
                    }))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        }
    }
}
