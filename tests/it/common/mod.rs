//! Shared helpers for the integration tests: a fake Jellyfin on an ephemeral port, a config
//! file in a temp dir, and validation against the official OpenAPI specs.

pub mod bin;
pub mod cdp;
pub mod openapi;
pub mod torrent;

use std::path::PathBuf;

use jellydemon::adapters::jellyfin::Client;
use jellydemon::adapters::jellyfin::fleet::Fleet;
use jellydemon::adapters::ledger::Ledger;
use jellydemon::config::Settings;
use jellydemon::sim::fake::FakeJellyfin;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "0123456789abcdef0123456789abcdef";
pub const M: i64 = 1_000_000;

/// A running fake plus a temp dir with a config file pointing at it.
pub struct Harness {
    pub fake: FakeJellyfin,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub state_path: PathBuf,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// Serve `fake` and write a config (budget 60 - 5 = 55 Mbps) with `bandwidth` lines added
    /// to `[bandwidth]` and `extra` appended at the end.
    pub async fn start(fake: FakeJellyfin, bandwidth: &str, extra: &str) -> Harness {
        Self::with_budget(fake, 60, 5, bandwidth, extra).await
    }

    /// As [`Harness::start`], with `total - reserved` Mbps as the budget.
    pub async fn with_budget(
        fake: FakeJellyfin,
        total: u32,
        reserved: u32,
        bandwidth: &str,
        extra: &str,
    ) -> Harness {
        let (url, _addr, shutdown) = fake.spawn().await;
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("state.json");
        let config_path = dir.path().join("config.toml");
        let toml = format!(
            r#"
[jellyfin]
url = "{url}"
api_key = "{KEY}"
timeout = "2s"

[bandwidth]
total_upload_mbps = {total}
reserved_mbps = {reserved}
min_per_user_mbps = 2
step_mbps = 0.5
{bandwidth}

[state]
file = "{}"
{extra}
"#,
            state_path.display()
        );
        std::fs::write(&config_path, toml).unwrap();
        Harness {
            fake,
            url,
            dir,
            config_path,
            state_path,
            shutdown,
        }
    }

    pub fn settings(&self) -> Settings {
        Settings::from_toml_str(&std::fs::read_to_string(&self.config_path).unwrap()).unwrap()
    }

    pub fn client(&self) -> Client {
        let s = self.settings();
        Client::new(&s.jellyfin.url, s.api_key().unwrap(), s.jellyfin.timeout).unwrap()
    }

    /// The servers the settings name, as the daemon builds them.
    pub fn fleet(&self) -> Fleet {
        Fleet::from_settings(&self.settings()).unwrap()
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::open(&self.state_path).unwrap()
    }

    /// Run the real binary with `args` (the config is passed) and return (exit code, stdout,
    /// stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = bin::Bin::with_config(&self.config_path, args)
            .output()
            .await;
        (out.code, out.stdout, out.stderr)
    }
}

/// Ids of the users in the mixed scenario.
pub struct Mixed {
    pub admin: String,
    pub alice: String,
    pub bob: String,
    pub carol: String,
    pub dave: String,
    pub erin: String,
    pub guest: String,
}

/// Two remote users on the web client playing remuxes (ann 70 Mbps, ben 60 Mbps) that the
/// 55 Mbps budget of [`Harness::start`] cannot hold direct: with `[transcoding] capacity = 1`
/// their limits force two transcodes on a server that runs one. Returns (user id, session id)
/// of each.
pub fn two_remuxes(fake: &FakeJellyfin) -> [(String, String); 2] {
    [("ann", "203.0.113.20", 70), ("ben", "203.0.113.21", 60)].map(|(name, ip, source)| {
        let id = fake.add_user(name, |_| {});
        let s = fake.add_session(
            Some(&id),
            Some(ip),
            "Jellyfin Web",
            Some(jellydemon::sim::fake::Playback::direct(
                "Remux",
                Some(source * M),
                None,
            )),
        );
        (id, s)
    })
}

/// The mixed scenario: an admin with their own cap streaming over IPv6 (transcode),
/// users at 0 over IPv4 (direct play) and IPv4-mapped IPv6 (transcode), a LAN streamer, a paused
/// remote stream, an idle user, a user without remote access, and a session with no user.
pub fn mixed_scenario(fake: &FakeJellyfin) -> Mixed {
    use jellydemon::sim::fake::Playback;
    use serde_json::json;
    let admin = fake.add_user("Admin", |p| {
        p.insert("IsAdministrator".into(), json!(true));
        p.insert("RemoteClientBitrateLimit".into(), json!(8 * M));
    });
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("Bob O'Brien", |_| {});
    let carol = fake.add_user("carol", |_| {});
    let dave = fake.add_user("dave", |_| {});
    let erin = fake.add_user("erin", |p| {
        p.insert("EnableLyricManagement".into(), json!(true));
        p.insert("BlockedTags".into(), json!(["horror"]));
    });
    let guest = fake.add_user("guest", |p| {
        p.insert("EnableRemoteAccess".into(), json!(false));
    });
    fake.add_session(
        Some(&admin),
        Some("2001:db8::10"),
        "Jellyfin Web",
        Some(Playback::transcode("Movie A", 40 * M, 6 * M)),
    );
    fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Android TV",
        Some(Playback::direct(
            "Episode 1",
            Some(19_360_000),
            Some(640_000),
        )),
    );
    fake.add_session(
        Some(&bob),
        Some("::ffff:198.51.100.7"),
        "Jellyfin Web",
        Some(Playback::transcode("Episode 2", 20 * M, 4 * M)),
    );
    fake.add_session(
        Some(&carol),
        Some("192.168.1.50"),
        "Jellyfin Web",
        Some(Playback::direct(
            "Local film",
            Some(60 * M),
            Some(1_500_000),
        )),
    );
    fake.add_session(
        Some(&dave),
        Some("203.0.113.9"),
        "Jellyfin iOS",
        Some(Playback::direct("Paused film", Some(10 * M), Some(640_000)).paused()),
    );
    fake.add_session(
        None,
        Some("203.0.113.200"),
        "Jellyfin Web",
        Some(Playback::direct("Nobody's", Some(10 * M), None)),
    );
    fake.add_session(Some(&erin), Some("192.168.1.60"), "Jellyfin Web", None);
    Mixed {
        admin,
        alice,
        bob,
        carol,
        dave,
        erin,
        guest,
    }
}

/// The daemon running in-process on an ephemeral port.
pub struct Daemon {
    pub url: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<
        Result<jellydemon::daemon::Shutdown, jellydemon::daemon::DaemonError>,
    >,
    pub http: reqwest::Client,
}

pub const HOOK_TOKEN: &str = "hook-secret-0123456789";

impl Harness {
    /// Start `jellydemon run` in-process with `daemon` lines in its `[daemon]` section, and wait
    /// for its start-up pass to finish.
    pub async fn daemon(&self, daemon: &str) -> Daemon {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let mut settings = Settings::from_toml_str(&format!(
            "{text}\n[daemon]\nwebhook_token = \"{HOOK_TOKEN}\"\n{daemon}\n"
        ))
        .unwrap();
        // As `jellydemon run` does: SQM's rate read before anything plans.
        jellydemon::adapters::budget::sqm::resolve(&mut settings)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(jellydemon::daemon::run(
            std::sync::Arc::new(settings),
            listener,
            shutdown.clone(),
        ));
        let d = Daemon {
            url,
            shutdown,
            task,
            http: daemon_client(),
        };
        d.wait_for(|s| s["poll"]["polls"].as_u64() >= Some(1)).await;
        d
    }
}

impl Daemon {
    /// `/api/state`, with the status secret (the webhook secret here) in case it is needed.
    pub async fn state(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/api/state", self.url))
            .bearer_auth(HOOK_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Poll `/api/state` until `pred` holds (at most 10 s).
    pub async fn wait_for(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let s = self.state().await;
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached; state: {s:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The body of `GET path` (with the status secret), as text.
    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(HOOK_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /api/control` with the status secret; the status code and the answer.
    pub async fn control(&self, action: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/api/control", self.url))
            .bearer_auth(HOOK_TOKEN)
            .json(&action)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// POST a body to `/hook` with the secret.
    pub async fn hook(&self, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/hook", self.url))
            .header("X-Jellydemon-Token", HOOK_TOKEN)
            .header("Content-Type", "text/plain")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn stop(self) -> jellydemon::daemon::Shutdown {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap()
    }
}

/// A client for the daemon's HTTP server. The daemon closes a keep-alive connection idle
/// for `daemon.http_header_timeout` (10 s); a client that reuses one just then has its
/// request reset. So idle connections are dropped well before that (reqwest keeps them 90 s).
pub fn daemon_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("a client")
}

/// Wait (at most 10 s) until `pred` holds.
pub async fn eventually(what: &str, pred: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pred() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A PlaybackStart/Stop/Progress body as our template renders it.
pub fn event(kind: &str, user_id: &str, session_id: &str) -> String {
    serde_json::json!({
        "NotificationType": kind,
        "UserId": user_id,
        "Id": session_id,
        "IsPaused": "False",
    })
    .to_string()
}

/// A GUID as .NET renders it in a template (`Guid.ToString()`): with dashes.
pub fn dashed(id: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    )
}

/// Every user's current limit, to compare after a restore.
pub fn limits_now(fake: &FakeJellyfin) -> Vec<(String, i64)> {
    fake.users()
        .iter()
        .map(|u| (u.id.clone(), fake.limit(&u.id)))
        .collect()
}

/// Every user is back at the limit recorded in `originals`.
pub fn assert_originals(fake: &FakeJellyfin, originals: &[(String, i64)]) {
    for (id, limit) in originals {
        assert_eq!(
            fake.limit(id),
            *limit,
            "user {} not back at its original",
            fake.user(id).map(|u| u.name).unwrap_or_default()
        );
    }
}

/// A small deterministic generator (xorshift64) for kill points and stream changes, so a
/// failing round can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `jellydemon --config <config> run`, its output collected, killed if the test ends first.
pub fn spawn_run(config: &std::path::Path) -> bin::Running {
    bin::Bin::with_config(config, &["run"]).spawn()
}

/// A loopback port that refuses connections for as long as the returned socket lives: bound but
/// never listening, so no other test can take the port meanwhile (as it could one picked and
/// released).
pub fn refusing_port() -> (rustix::fd::OwnedFd, u16) {
    use rustix::net::{AddressFamily, SocketType, bind, getsockname, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("a socket");
    bind(
        &fd,
        &std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0),
    )
    .expect("bind a loopback port");
    let addr = std::net::SocketAddrV4::try_from(getsockname(&fd).expect("its address"))
        .expect("an IPv4 address");
    (fd, addr.port())
}
