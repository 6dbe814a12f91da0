//! A stateful fake Jellyfin server (axum) for the tests and the demo, faithful to what a real
//! Jellyfin (10.9 to 12) does, traps included:
//!
//! * only `Authorization: MediaBrowser Token="…"` authenticates; the legacy `X-Emby-Token`,
//!   `X-MediaBrowser-Token` and `?api_key=` get 401 (as on Jellyfin 12);
//! * PascalCase, enums as strings, null properties omitted, GUIDs as 32 hex digits without
//!   dashes, a session without a user has the all-zero `UserId` and no `UserName`;
//! * there is no `GET /Users/{id}/Policy` (405);
//! * `POST /Users/{id}/Policy` replaces the **whole** policy: a property missing from the body
//!   is reset (to its type's default here, which makes any loss visible), and a body without
//!   `AuthenticationProviderId`/`PasswordResetProviderId` is a 400 `ValidationProblemDetails`;
//!   demoting the last administrator is a 400 too;
//! * `RemoteClientBitrateLimit` 0 means "server default";
//! * a limit only applies when a stream starts ([`FakeJellyfin::start_playback`]): a stream that
//!   is playing keeps its rate when the policy changes.
//!
//! Every request is recorded (method, path, JSON body) so tests can assert on what jellydemon
//! sent, and faults can be injected (status codes, hangs, a hang on the n-th policy write).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::http::Method;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::adapters::jellyfin::Flavor;
use crate::sim::emby;

mod api;
mod model;

pub use api::default_user_policy;
use api::{default_network_config, default_server_config, handle};
pub use model::SOURCE_FPS;
use model::{cap, effective_limit, negotiate};

/// The `AuthenticationProviderId` of a user Jellyfin created itself; a policy POST without it is a 400.
pub const AUTH_PROVIDER: &str =
    "Jellyfin.Server.Implementations.Users.DefaultAuthenticationProvider";
/// The `PasswordResetProviderId` of a user Jellyfin created itself; required like the above.
pub const RESET_PROVIDER: &str =
    "Jellyfin.Server.Implementations.Users.DefaultPasswordResetProvider";
const SERVER_ID: &str = "f00dcafe0000400080000000000000aa";
const ZERO_GUID: &str = "00000000000000000000000000000000";
const TICKS_PER_SECOND: i64 = 10_000_000;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// GET, POST, …
    pub method: Method,
    /// The path without the base path, as sent (case preserved).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Header names, lowercase.
    pub headers: Vec<String>,
    /// The JSON body, if the request had one.
    pub body: Option<Value>,
    /// The status the fake answered.
    pub status: u16,
    /// When the request arrived (for latency measurements).
    pub at: std::time::Instant,
}

/// How a faulty request misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status and a short text body.
    Status(u16),
    /// Never answer (the client's timeout must fire).
    Hang,
    /// Apply the request, then never answer (a write that landed but was never confirmed).
    ApplyThenHang,
}

/// A fault applies to requests matching `method` and `path_prefix` (lowercase), after `skip`
/// matching requests have passed.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only this method (`None`: any).
    pub method: Option<Method>,
    /// Only paths starting with this (lowercase; `None`: any).
    pub path_prefix: Option<String>,
    /// Let this many matching requests through first.
    pub skip: usize,
    /// What happens to the rest.
    pub kind: FaultKind,
}

/// A user in the fake.
#[derive(Debug, Clone)]
pub struct FakeUser {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The whole `Policy` object, as Jellyfin would return it.
    pub policy: Value,
}

/// What a session is playing.
#[derive(Debug, Clone)]
pub struct Playback {
    /// The item's id (32 hex digits).
    pub item_id: String,
    /// Its title.
    pub item_name: String,
    /// `Movie`, `Episode`, `Audio`, `TvChannel`, …
    pub item_type: String,
    /// The source file's video stream bitrate (None: not reported).
    pub video_bitrate: Option<i64>,
    /// The source file's audio stream bitrate.
    pub audio_bitrate: Option<i64>,
    /// Set when the server transcodes: the output bitrate.
    pub transcode_bitrate: Option<i64>,
    /// Playback is paused.
    pub paused: bool,
    /// `DirectPlay`, `DirectStream` or `Transcode`.
    pub play_method: String,
    /// The limit that applied when the stream started (0: none), for simulations.
    pub limit_at_start: i64,
    /// Transcoded because of a bitrate cap (not, say, a codec the client lacks).
    pub capped: bool,
    /// The frames per second a transcode runs at (the source's 23.976 when the server keeps
    /// up; less on a server that cannot transcode it in real time).
    pub transcode_framerate: f32,
}

impl Playback {
    /// A direct-played item with the given source rates.
    pub fn direct(name: &str, video_bitrate: Option<i64>, audio_bitrate: Option<i64>) -> Playback {
        Playback {
            item_id: format!("{:032x}", fxhash(name)),
            item_name: name.to_string(),
            item_type: "Episode".into(),
            video_bitrate,
            audio_bitrate,
            transcode_bitrate: None,
            paused: false,
            play_method: "DirectPlay".into(),
            limit_at_start: 0,
            capped: false,
            transcode_framerate: SOURCE_FPS,
        }
    }
    /// A transcoded item: source rates plus the output bitrate.
    pub fn transcode(name: &str, source_bitrate: i64, output_bitrate: i64) -> Playback {
        Playback {
            transcode_bitrate: Some(output_bitrate),
            play_method: "Transcode".into(),
            // The fake reports every transcode as ContainerBitrateExceedsLimit.
            capped: true,
            ..Playback::direct(name, Some(source_bitrate), Some(640_000))
        }
    }
    /// The same, its transcode running at `fps` (below the source's 23.976: slower than real
    /// time).
    pub fn at_framerate(mut self, fps: f32) -> Playback {
        self.transcode_framerate = fps;
        self
    }
    /// The same, paused.
    pub fn paused(mut self) -> Playback {
        self.paused = true;
        self
    }
    /// The source rate: the sum of the stream rates that are known.
    pub fn source_rate(&self) -> i64 {
        self.video_bitrate.unwrap_or(0) + self.audio_bitrate.unwrap_or(0)
    }
    /// The rate the stream uses on the wire.
    pub fn wire_rate(&self) -> i64 {
        self.transcode_bitrate.unwrap_or_else(|| self.source_rate())
    }
}

/// A client session.
#[derive(Debug, Clone)]
pub struct FakeSession {
    /// Its id (32 hex digits).
    pub id: String,
    /// `None`: a session without a user.
    pub user_id: Option<String>,
    /// What Jellyfin reports as the client's address (`None`: nothing).
    pub remote_end_point: Option<String>,
    /// The client application, e.g. "Jellyfin Web".
    pub client: String,
    /// The device, e.g. "Firefox".
    pub device_name: String,
    /// The device's id.
    pub device_id: String,
    /// The remote-control commands the client accepts.
    pub supported_commands: Vec<String>,
    /// What it plays (`None`: nothing).
    pub playing: Option<Playback>,
    /// The bitrate last pushed with `SetMaxStreamingBitrate`: the web client keeps it as its
    /// own maximum for later items too (jellyfin-web saves it as its quality setting).
    pub client_max: Option<i64>,
    /// The client plays the source whatever the limit (Infuse, Kodi in native mode).
    pub ignores_limits: bool,
}

#[derive(Debug)]
struct Inner {
    /// Jellyfin, or Emby's dialect (`src/sim/emby.rs`).
    flavor: Flavor,
    api_key: String,
    non_admin_keys: Vec<String>,
    version: String,
    server_name: String,
    base_path: String,
    server_config: Value,
    network_config: Value,
    /// `EncodingOptions.HardwareAccelerationType` as 10.10 and later write it (`none`,
    /// `vaapi`, `qsv`, …).
    hardware_acceleration: String,
    users: Vec<FakeUser>,
    sessions: Vec<FakeSession>,
    requests: Vec<Recorded>,
    faults: Vec<(Fault, usize)>,
    next_id: u64,
    /// Policy writes are held this long (a range, picked per request) before they are applied
    /// and answered; see [`FakeJellyfin::apply_writes_late`].
    write_delay: Option<(Duration, Duration)>,
    /// A generator for those delays.
    delay_seed: u64,
    /// Policy writes received and not applied yet.
    writes_in_flight: usize,
}

/// A cheap-to-clone handle on the fake server's state.
#[derive(Debug, Clone)]
pub struct FakeJellyfin {
    inner: Arc<Mutex<Inner>>,
}

/// A stable, well-mixed 128-bit id for a name (FNV-1a folded through splitmix64), so ids look
/// like Jellyfin's random GUIDs and the same name always gets the same id.
fn fxhash(s: &str) -> u128 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    ((mix(h) as u128) << 64) | mix(h ^ 0x5555_5555_5555_5555) as u128
}

impl FakeJellyfin {
    /// A fresh server (version 10.11.11) that accepts `api_key`.
    pub fn new(api_key: &str) -> FakeJellyfin {
        FakeJellyfin {
            inner: Arc::new(Mutex::new(Inner {
                flavor: Flavor::Jellyfin,
                api_key: api_key.to_string(),
                non_admin_keys: Vec::new(),
                version: "10.11.11".into(),
                server_name: "fakefin".into(),
                base_path: String::new(),
                server_config: default_server_config(),
                network_config: default_network_config(),
                hardware_acceleration: "none".into(),
                users: Vec::new(),
                sessions: Vec::new(),
                requests: Vec::new(),
                faults: Vec::new(),
                next_id: 1,
                write_delay: None,
                delay_seed: 0x9E37_79B9_7F4A_7C15,
                writes_in_flight: 0,
            })),
        }
    }

    /// A fresh Emby Server (4.8.11.0) that accepts `api_key`, speaking Emby's dialect
    /// (`src/sim/emby.rs`). Emby serves under `/emby`: [`FakeJellyfin::set_base_path`].
    pub fn emby(api_key: &str) -> FakeJellyfin {
        let fake = FakeJellyfin::new(api_key);
        {
            let mut g = fake.lock();
            g.flavor = Flavor::Emby;
            g.version = emby::VERSION.into();
            g.server_name = "fakemby".into();
            g.server_config["ServerName"] = json!("fakemby");
            g.server_config
                .as_object_mut()
                .expect("object")
                .remove("EnableLegacyAuthorization");
        }
        fake
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    fn new_id(&self, salt: &str) -> String {
        let mut g = self.lock();
        g.next_id += 1;
        format!("{:032x}", fxhash(&format!("{salt}/{}", g.next_id)))
    }

    /// Serve under a base path such as `/jellyfin` (Jellyfin's `BaseUrl`).
    pub fn set_base_path(&self, base: &str) {
        self.lock().base_path = base.trim_end_matches('/').to_string();
    }
    /// The version `/System/Info/Public` reports.
    pub fn set_version(&self, version: &str) {
        self.lock().version = version.to_string();
    }
    /// A token that authenticates but lacks administrator rights (a non-admin's user token).
    pub fn add_non_admin_key(&self, key: &str) {
        self.lock().non_admin_keys.push(key.to_string());
    }
    /// The server-wide `RemoteClientBitrateLimit` (bits/s, 0 = none).
    pub fn set_server_limit(&self, bps: i64) {
        self.lock().server_config["RemoteClientBitrateLimit"] = json!(bps);
    }
    /// The transcoding hardware acceleration (Dashboard > Playback > Transcoding): `none`,
    /// `vaapi`, `qsv`, `nvenc`, … as 10.10 and later name them.
    pub fn set_hardware_acceleration(&self, kind: &str) {
        self.lock().hardware_acceleration = kind.to_ascii_lowercase();
    }
    /// Jellyfin's `LocalNetworkSubnets` (empty: its default LAN ranges).
    pub fn set_local_subnets(&self, subnets: &[&str]) {
        self.lock().network_config["LocalNetworkSubnets"] = json!(subnets);
    }

    /// Add a user with Jellyfin's usual policy for a new user, then `edit` it. Returns its id.
    pub fn add_user(&self, name: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let id = format!("{:032x}", fxhash(&format!("user/{name}")));
        let mut policy = match self.lock().flavor {
            Flavor::Jellyfin => default_user_policy(),
            Flavor::Emby => emby::default_user_policy(),
        };
        edit(policy.as_object_mut().expect("object"));
        self.lock().users.push(FakeUser {
            id: id.clone(),
            name: name.to_string(),
            policy,
        });
        id
    }

    /// Add a session for `user_id` (None: no user) from `endpoint`. Returns its id.
    pub fn add_session(
        &self,
        user_id: Option<&str>,
        endpoint: Option<&str>,
        client: &str,
        playing: Option<Playback>,
    ) -> String {
        let id = self.new_id("session");
        let device_id = self.new_id("device");
        let supported = if client == "Jellyfin Web" {
            vec![
                "SetMaxStreamingBitrate".to_string(),
                "DisplayMessage".into(),
            ]
        } else {
            vec!["DisplayMessage".to_string()]
        };
        self.lock().sessions.push(FakeSession {
            id: id.clone(),
            user_id: user_id.map(str::to_string),
            remote_end_point: endpoint.map(str::to_string),
            client: client.to_string(),
            device_name: format!("{client} device"),
            device_id,
            supported_commands: supported,
            playing,
            client_max: None,
            ignores_limits: false,
        });
        id
    }

    /// Make a session's client ignore limits and pushes: it always plays the source.
    pub fn ignore_limits(&self, session_id: &str) {
        if let Some(s) = self.lock().sessions.iter_mut().find(|s| s.id == session_id) {
            s.ignores_limits = true;
        }
    }

    /// Start playing on a session the way Jellyfin does: the user's limit (or the server's
    /// when the user's is 0) applies only if the client is outside the LAN, and only now, as
    /// does the client's own maximum. A source above them is transcoded down. Returns the
    /// wire rate.
    pub fn start_playback(&self, session_id: &str, mut playback: Playback) -> i64 {
        let mut g = self.lock();
        let Some(s) = g.sessions.iter().find(|s| s.id == session_id).cloned() else {
            return 0;
        };
        let limit = effective_limit(&g, &s);
        playback.limit_at_start = limit;
        if !s.ignores_limits {
            negotiate(&mut playback, cap(limit, s.client_max));
        }
        let rate = playback.wire_rate();
        if let Some(s) = g.sessions.iter_mut().find(|s| s.id == session_id) {
            s.playing = Some(playback);
        }
        rate
    }

    /// The session stops playing (it stays connected).
    pub fn stop_playback(&self, session_id: &str) {
        if let Some(s) = self.lock().sessions.iter_mut().find(|s| s.id == session_id) {
            s.playing = None;
        }
    }

    /// The session disconnects.
    pub fn remove_session(&self, session_id: &str) {
        self.lock().sessions.retain(|s| s.id != session_id);
    }

    /// Every session, as the fake holds it.
    pub fn sessions(&self) -> Vec<FakeSession> {
        self.lock().sessions.clone()
    }

    /// The user with this id.
    pub fn user(&self, id: &str) -> Option<FakeUser> {
        self.lock().users.iter().find(|u| u.id == id).cloned()
    }

    /// Every user.
    pub fn users(&self) -> Vec<FakeUser> {
        self.lock().users.clone()
    }

    /// A user's `RemoteClientBitrateLimit`.
    pub fn limit(&self, id: &str) -> i64 {
        self.user(id)
            .and_then(|u| u.policy["RemoteClientBitrateLimit"].as_i64())
            .unwrap_or(0)
    }

    /// The wire rate of the first stream `user_id` plays (0 when none).
    pub fn stream_rate(&self, user_id: &str) -> i64 {
        self.lock()
            .sessions
            .iter()
            .filter(|s| s.user_id.as_deref() == Some(user_id))
            .find_map(|s| s.playing.as_ref().map(Playback::wire_rate))
            .unwrap_or(0)
    }

    /// Rename a session's device (a client chooses its own device name).
    pub fn rename_device(&self, session_id: &str, name: &str) {
        if let Some(s) = self.lock().sessions.iter_mut().find(|s| s.id == session_id) {
            s.device_name = name.to_string();
        }
    }

    /// Change a user's limit as an admin would in the dashboard.
    pub fn set_limit_by_hand(&self, id: &str, bps: i64) {
        if let Some(u) = self.lock().users.iter_mut().find(|u| u.id == id) {
            u.policy["RemoteClientBitrateLimit"] = json!(bps);
        }
    }

    /// Delete a user (its sessions stay, as orphans would).
    pub fn remove_user(&self, id: &str) {
        self.lock().users.retain(|u| u.id != id);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Forget the requests received so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// The bodies of the successful `POST /Users/{id}/Policy` requests, with the user id.
    pub fn policy_posts(&self) -> Vec<(String, Value)> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == Method::POST && r.status == 204)
            .filter_map(|r| {
                let lower = r.path.to_ascii_lowercase();
                let id = lower.strip_prefix("/users/")?.strip_suffix("/policy")?;
                Some((id.to_string(), r.body.clone()?))
            })
            .collect()
    }

    /// How many `method` requests went to `path` (case-insensitive).
    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == *method && r.path.eq_ignore_ascii_case(path))
            .count()
    }

    /// Make matching requests misbehave (see [`Fault`]).
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push((fault, 0));
    }

    /// Every authenticated request answers `status`.
    pub fn fail_all(&self, status: u16) {
        self.add_fault(Fault {
            method: None,
            path_prefix: None,
            skip: 0,
            kind: FaultKind::Status(status),
        });
    }

    /// Hold each `POST /Users/{id}/Policy` for a delay between `min` and `max` before applying
    /// and answering it, as a busy Jellyfin does. The write is applied when its time comes
    /// even if the client has gone meanwhile (a server finishes a request whose client went
    /// away): the write jellydemon sent in flight lands late. `None`: at once again.
    pub fn apply_writes_late(&self, delay: Option<(Duration, Duration)>) {
        self.lock().write_delay = delay;
    }

    /// Policy writes received and not applied yet (with [`FakeJellyfin::apply_writes_late`]).
    pub fn writes_in_flight(&self) -> usize {
        self.lock().writes_in_flight
    }

    /// Every request behaves again.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The router, for embedding; [`FakeJellyfin::serve`] runs it.
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Serve on `listener` until `shutdown` is cancelled.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let _ = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }

    /// Bind 127.0.0.1 on an ephemeral port and serve in the background; returns the base URL
    /// (with the base path) and the token that stops it.
    pub async fn spawn(&self) -> (String, SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = CancellationToken::new();
        tokio::spawn(self.clone().serve(listener, token.clone()));
        let base = self.lock().base_path.clone();
        (format!("http://{addr}{base}"), addr, token)
    }
}

impl FakeJellyfin {
    /// The delay for the next late policy write, when they are late.
    fn next_write_delay(&self) -> Option<Duration> {
        let mut g = self.lock();
        let (min, max) = g.write_delay?;
        let mut x = g.delay_seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        g.delay_seed = x;
        let span = max.saturating_sub(min).as_millis() as u64;
        Some(min + Duration::from_millis(x % (span + 1)))
    }
}
