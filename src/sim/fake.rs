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
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::jellyfin::Flavor;
use crate::network;
use crate::sim::emby;

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

/// Whether a version string such as "10.10.7" is older than `(major, minor)`.
/// The most a stream may carry: the user's effective limit (0: none) and the client's own
/// maximum; `None` when neither limits it.
fn cap(limit: i64, client_max: Option<i64>) -> Option<i64> {
    match (limit > 0, client_max) {
        (true, Some(m)) => Some(limit.min(m)),
        (true, None) => Some(limit),
        (false, m) => m,
    }
}

/// Jellyfin's decision for a stream under `cap`: a transcode at the cap when the source is
/// above it; direct play again when a stream transcoded for a cap now fits.
fn negotiate(p: &mut Playback, cap: Option<i64>) {
    match cap {
        Some(c) if p.source_rate() > c => {
            p.transcode_bitrate = Some(c);
            p.play_method = "Transcode".into();
            p.capped = true;
        }
        _ if p.capped => {
            // The source fits now: a re-negotiated stream plays it directly.
            p.transcode_bitrate = None;
            p.play_method = "DirectPlay".into();
            p.capped = false;
        }
        _ => {}
    }
}

/// The frames per second of the fake's video sources.
pub const SOURCE_FPS: f32 = 23.976;

/// `TranscodingInfo.HardwareAccelerationType` for the configured acceleration: 10.9 names the
/// encoder (`VAAPI`, `VideoToolBox`, … and nothing for software), 10.10 and later use the
/// configuration's lower-case names, `none` included.
fn transcoding_hardware(version: &str, kind: &str) -> Option<String> {
    if !version_before(version, (10, 10)) {
        return Some(kind.to_string());
    }
    match kind {
        "none" | "" => None,
        "videotoolbox" => Some("VideoToolBox".into()),
        k => Some(k.to_ascii_uppercase()),
    }
}

/// `GET /System/Configuration/encoding`: the transcoding settings (10.9 writes an empty
/// `HardwareAccelerationType` for software, later versions `none`).
fn encoding_config(g: &Inner) -> Value {
    let hw = if version_before(&g.version, (10, 10)) && g.hardware_acceleration == "none" {
        String::new()
    } else {
        g.hardware_acceleration.clone()
    };
    json!({
        "EncodingThreadCount": -1,
        "TranscodingTempPath": "/cache/transcodes",
        "EnableThrottling": false,
        "ThrottleDelaySeconds": 180,
        "HardwareAccelerationType": hw,
        "EnableHardwareEncoding": hw != "none" && !hw.is_empty(),
        "AllowHevcEncoding": false,
        "AllowAv1Encoding": false,
        "HardwareDecodingCodecs": ["h264", "vc1"]
    })
}

fn version_before(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (major, minor)
}

fn effective_limit(g: &Inner, s: &FakeSession) -> i64 {
    let ranges: Vec<IpNet> = g.network_config["LocalNetworkSubnets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| network::parse_cidr(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    let ranges = if ranges.is_empty() {
        network::jellyfin_default_ranges()
    } else {
        ranges
    };
    let remote = match s.remote_end_point.as_deref().map(network::parse_endpoint) {
        Some(Ok(ip)) => !network::is_internal(ip, &ranges),
        _ => false,
    };
    if !remote {
        return 0;
    }
    let user_limit = s
        .user_id
        .as_deref()
        .and_then(|id| g.users.iter().find(|u| u.id == id))
        .and_then(|u| u.policy["RemoteClientBitrateLimit"].as_i64())
        .unwrap_or(0);
    if user_limit > 0 {
        user_limit
    } else {
        g.server_config["RemoteClientBitrateLimit"]
            .as_i64()
            .unwrap_or(0)
    }
}

/// Jellyfin's policy for a freshly created user (10.11), in its property order (the provider
/// ids are filled in from [`AUTH_PROVIDER`] and [`RESET_PROVIDER`]).
const DEFAULT_POLICY: &str = r#"{
    "IsAdministrator": false,
    "IsHidden": false,
    "EnableCollectionManagement": false,
    "EnableSubtitleManagement": false,
    "EnableLyricManagement": false,
    "IsDisabled": false,
    "BlockedTags": [],
    "AllowedTags": [],
    "EnableUserPreferenceAccess": true,
    "AccessSchedules": [],
    "BlockUnratedItems": [],
    "EnableRemoteControlOfOtherUsers": false,
    "EnableSharedDeviceControl": true,
    "EnableRemoteAccess": true,
    "EnableLiveTvManagement": true,
    "EnableLiveTvAccess": true,
    "EnableMediaPlayback": true,
    "EnableAudioPlaybackTranscoding": true,
    "EnableVideoPlaybackTranscoding": true,
    "EnablePlaybackRemuxing": true,
    "ForceRemoteSourceTranscoding": false,
    "EnableContentDeletion": false,
    "EnableContentDeletionFromFolders": [],
    "EnableContentDownloading": true,
    "EnableSyncTranscoding": true,
    "EnableMediaConversion": true,
    "EnabledDevices": [],
    "EnableAllDevices": true,
    "EnabledChannels": [],
    "EnableAllChannels": true,
    "EnabledFolders": [],
    "EnableAllFolders": true,
    "InvalidLoginAttemptCount": 0,
    "LoginAttemptsBeforeLockout": -1,
    "MaxActiveSessions": 0,
    "EnablePublicSharing": true,
    "BlockedMediaFolders": [],
    "BlockedChannels": [],
    "RemoteClientBitrateLimit": 0,
    "AuthenticationProviderId": "",
    "PasswordResetProviderId": "",
    "SyncPlayAccess": "CreateAndJoinGroups"
}"#;

/// Jellyfin's policy for a freshly created user (10.11), in its property order.
pub fn default_user_policy() -> Value {
    let mut policy: Value = serde_json::from_str(DEFAULT_POLICY).expect("valid JSON");
    policy["AuthenticationProviderId"] = json!(AUTH_PROVIDER);
    policy["PasswordResetProviderId"] = json!(RESET_PROVIDER);
    policy
}

/// What Jellyfin leaves in a property the POST body did not send: here, the type's default, so
/// that any property a client drops visibly changes.
fn reset_value(v: &Value) -> Value {
    match v {
        Value::Bool(_) => json!(false),
        Value::Number(_) => json!(0),
        Value::Array(_) => json!([]),
        Value::String(_) => json!(""),
        Value::Object(_) => json!({}),
        Value::Null => Value::Null,
    }
}

fn default_server_config() -> Value {
    json!({
        "LogFileRetentionDays": 3,
        "IsStartupWizardCompleted": true,
        "EnableMetrics": false,
        "ServerName": "fakefin",
        "UICulture": "en-US",
        "RemoteClientBitrateLimit": 0,
        "MinResumePct": 5,
        "MaxResumePct": 90,
        "InactiveSessionThreshold": 0,
        "LibraryMonitorDelay": 60,
        "EnableSlowResponseWarning": true,
        "SlowResponseThresholdMs": 500,
        "CorsHosts": ["*"],
        "EnableLegacyAuthorization": false
    })
}

fn default_network_config() -> Value {
    json!({
        "BaseUrl": "",
        "EnableHttps": false,
        "RequireHttps": false,
        "InternalHttpPort": 8096,
        "InternalHttpsPort": 8920,
        "PublicHttpPort": 8096,
        "PublicHttpsPort": 8920,
        "AutoDiscovery": true,
        "EnableUPnP": false,
        "EnableIPv4": true,
        "EnableIPv6": true,
        "EnableRemoteAccess": true,
        "LocalNetworkSubnets": [],
        "LocalNetworkAddresses": [],
        "KnownProxies": [],
        "IgnoreVirtualInterfaces": true,
        "VirtualInterfaceNames": ["veth"],
        "EnablePublishedServerUriByRequest": false,
        "PublishedServerUriBySubnet": [],
        "RemoteIPFilter": [],
        "IsRemoteIPFilterBlacklist": false
    })
}

fn user_dto(u: &FakeUser) -> Value {
    json!({
        "Name": u.name,
        "ServerId": SERVER_ID,
        "Id": u.id,
        "HasPassword": true,
        "HasConfiguredPassword": true,
        "HasConfiguredEasyPassword": false,
        "EnableAutoLogin": false,
        "LastLoginDate": "2026-11-25T17:03:53.1234567Z",
        "LastActivityDate": "2026-11-25T17:03:53.1234567Z",
        "Configuration": {
            "PlayDefaultAudioTrack": true,
            "SubtitleLanguagePreference": "",
            "DisplayMissingEpisodes": false,
            "GroupedFolders": [],
            "SubtitleMode": "Default",
            "DisplayCollectionsView": false,
            "EnableLocalPassword": false,
            "OrderedViews": [],
            "LatestItemsExcludes": [],
            "MyMediaExcludes": [],
            "HidePlayedInLatest": true,
            "RememberAudioSelections": true,
            "RememberSubtitleSelections": true,
            "EnableNextEpisodeAutoPlay": true
        },
        "Policy": u.policy
    })
}

fn session_dto(g: &Inner, s: &FakeSession) -> Value {
    let user = s
        .user_id
        .as_deref()
        .and_then(|id| g.users.iter().find(|u| u.id == id));
    let mut v = json!({
        "PlayState": {
            "CanSeek": false,
            "IsPaused": false,
            "IsMuted": false,
            "RepeatMode": "RepeatNone",
            "PlaybackOrder": "Default"
        },
        "AdditionalUsers": [],
        "Capabilities": {
            "PlayableMediaTypes": ["Audio", "Video"],
            "SupportedCommands": s.supported_commands,
            "SupportsMediaControl": true,
            "SupportsPersistentIdentifier": false
        },
        "PlayableMediaTypes": ["Audio", "Video"],
        "Id": s.id,
        "UserId": s.user_id.as_deref().unwrap_or(ZERO_GUID),
        "Client": s.client,
        "LastActivityDate": "2026-11-25T17:03:53.1234567Z",
        "LastPlaybackCheckIn": "2026-11-25T17:03:53.1234567Z",
        "DeviceName": s.device_name,
        "DeviceId": s.device_id,
        "ApplicationVersion": "10.11.11",
        "IsActive": true,
        "SupportsMediaControl": true,
        "SupportsRemoteControl": true,
        "NowPlayingQueue": [],
        "NowPlayingQueueFullItems": [],
        "HasCustomDeviceName": false,
        "ServerId": SERVER_ID,
        "SupportedCommands": s.supported_commands
    });
    let o = v.as_object_mut().expect("object");
    if g.flavor == Flavor::Emby || !version_before(&g.version, (12, 0)) {
        // Removed in Jellyfin 12.0; not Emby's.
        o.remove("NowPlayingQueueFullItems");
    }
    if let Some(ep) = &s.remote_end_point {
        o.insert("RemoteEndPoint".into(), json!(ep));
    }
    if let Some(u) = user {
        o.insert("UserName".into(), json!(u.name));
    }
    if let Some(p) = &s.playing {
        let ps = o["PlayState"].as_object_mut().expect("object");
        ps.insert("CanSeek".into(), json!(true));
        ps.insert("IsPaused".into(), json!(p.paused));
        ps.insert("PositionTicks".into(), json!(600 * TICKS_PER_SECOND));
        ps.insert("MediaSourceId".into(), json!(p.item_id));
        ps.insert("PlayMethod".into(), json!(p.play_method));
        let mut streams = Vec::new();
        let mut video = json!({"Codec": "hevc", "Type": "Video", "Index": 0, "IsDefault": true,
                               "IsExternal": false, "Height": 2160, "Width": 3840,
                               "RealFrameRate": SOURCE_FPS});
        if let Some(b) = p.video_bitrate {
            video["BitRate"] = json!(b);
        }
        let mut audio = json!({"Codec": "eac3", "Type": "Audio", "Index": 1, "IsDefault": true,
                               "IsExternal": false, "Channels": 6});
        if let Some(b) = p.audio_bitrate {
            audio["BitRate"] = json!(b);
        }
        if p.item_type != "Audio" {
            streams.push(video);
        }
        streams.push(audio);
        if p.audio_bitrate.is_some() {
            // A second audio track the client did not select: it is not part of the stream.
            streams.push(
                json!({"Codec": "aac", "Type": "Audio", "Index": 2, "IsDefault": false,
                                "IsExternal": false, "Channels": 2, "BitRate": 192_000,
                                "Title": "Commentary"}),
            );
        }
        ps.insert("AudioStreamIndex".into(), json!(1));
        o.insert(
            "NowPlayingItem".into(),
            json!({
                "Name": p.item_name,
                "ServerId": SERVER_ID,
                "Id": p.item_id,
                "Type": p.item_type,
                "MediaType": if p.item_type == "Audio" { "Audio" } else { "Video" },
                "RunTimeTicks": 2700 * TICKS_PER_SECOND,
                "MediaStreams": streams
            }),
        );
        if let Some(b) = p.transcode_bitrate {
            let mut info = json!({
                "AudioCodec": "aac",
                "VideoCodec": "h264",
                "Container": "ts",
                "IsVideoDirect": false,
                "IsAudioDirect": false,
                "Bitrate": b,
                "Framerate": p.transcode_framerate,
                "Width": 1920,
                "Height": 1080,
                "AudioChannels": 2,
                "TranscodeReasons": ["ContainerBitrateExceedsLimit"]
            });
            if g.flavor == Flavor::Emby {
                emby::transcoding_info(
                    info.as_object_mut().expect("object"),
                    &g.hardware_acceleration,
                );
            } else if let Some(hw) = transcoding_hardware(&g.version, &g.hardware_acceleration) {
                info["HardwareAccelerationType"] = json!(hw);
            }
            o.insert("TranscodingInfo".into(), info);
        }
    }
    v
}

enum Auth {
    Admin,
    NonAdmin,
    None,
}

/// The token from `Authorization: MediaBrowser Token="…"` (other parameters may be present).
fn token(headers: &HeaderMap) -> Option<String> {
    let h = headers.get("authorization")?.to_str().ok()?;
    let rest = h.trim().strip_prefix("MediaBrowser")?.trim_start();
    rest.split(',').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("token")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_string()).into_response()
}

fn json_response(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

fn validation_problem(field: &str) -> Response {
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": { field: [format!("The {field} field is required.")] },
        "traceId": "00-00000000000000000000000000000000-0000000000000000-00"
    });
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/problem+json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(fake): State<FakeJellyfin>, req: Request) -> Response {
    let is_policy_write =
        req.method() == Method::POST && req.uri().path().to_ascii_lowercase().ends_with("/policy");
    let delay = is_policy_write.then(|| fake.next_write_delay()).flatten();
    let Some(delay) = delay else {
        return answer(fake, req).await;
    };
    // The body is read first (a client that went away leaves it behind, received), then the
    // rest runs in a task of its own, so that a client going away does not stop the write.
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    fake.lock().writes_in_flight += 1;
    let task = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let response = answer(fake.clone(), req).await;
        fake.lock().writes_in_flight -= 1;
        response
    });
    task.await
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, ""))
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

async fn answer(fake: FakeJellyfin, req: Request) -> Response {
    let method = req.method().clone();
    let uri: Uri = req.uri().clone();
    let headers = req.headers().clone();
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    let at = std::time::Instant::now();
    let base = fake.lock().base_path.clone();
    let full_path = uri.path().to_string();
    let path = if base.is_empty() {
        Some(full_path.clone())
    } else if full_path
        .to_ascii_lowercase()
        .starts_with(&base.to_ascii_lowercase())
    {
        Some(full_path[base.len()..].to_string())
    } else {
        None
    };
    let recorded_path = path.clone().unwrap_or(full_path);

    let (response, delay) = match path {
        None => (text(StatusCode::NOT_FOUND, ""), None),
        Some(p) => route(
            &fake,
            &method,
            &p,
            (&headers, uri.query()),
            &bytes,
            body.clone(),
        ),
    };
    fake.lock().requests.push(Recorded {
        method,
        path: recorded_path,
        query: uri.query().map(str::to_string),
        headers: headers.keys().map(|k| k.as_str().to_string()).collect(),
        body,
        status: response.status().as_u16(),
        at,
    });
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    response
}

const HANG: Duration = Duration::from_secs(3600);

/// Route one request. Returns the response and, for a hang, how long to wait before sending it.
fn route(
    fake: &FakeJellyfin,
    method: &Method,
    path: &str,
    (headers, query): (&HeaderMap, Option<&str>),
    raw: &[u8],
    body: Option<Value>,
) -> (Response, Option<Duration>) {
    let lower = path.trim_end_matches('/').to_ascii_lowercase();
    let segments: Vec<&str> = lower.split('/').filter(|s| !s.is_empty()).collect();
    let mut g = fake.lock();
    let product = match g.flavor {
        Flavor::Jellyfin => "Jellyfin Server",
        Flavor::Emby => emby::PRODUCT_NAME,
    };

    // Anonymous endpoints.
    match (method, segments.as_slice()) {
        (&Method::GET, ["system", "info", "public"]) => {
            return (
                json_response(json!({
                    "LocalAddress": "http://127.0.0.1:8096",
                    "ServerName": g.server_name,
                    "Version": g.version,
                    "ProductName": product,
                    "Id": SERVER_ID,
                    "StartupWizardCompleted": true
                })),
                None,
            );
        }
        (&Method::GET, ["system", "ping"]) => {
            return (text(StatusCode::OK, &format!("\"{product}\"")), None);
        }
        _ => {}
    }

    let presented = match g.flavor {
        Flavor::Jellyfin => token(headers),
        Flavor::Emby => emby::token(headers, query),
    };
    let auth = match presented {
        Some(t) if t == g.api_key => Auth::Admin,
        Some(t) if g.non_admin_keys.contains(&t) => Auth::NonAdmin,
        _ => Auth::None,
    };
    if matches!(auth, Auth::None) {
        return (text(StatusCode::UNAUTHORIZED, ""), None);
    }

    // Faults.
    let mut fault = None;
    for (f, seen) in g.faults.iter_mut() {
        let matches = f.method.as_ref().is_none_or(|m| m == method)
            && f.path_prefix
                .as_deref()
                .is_none_or(|p| lower.starts_with(p));
        if matches {
            *seen += 1;
            if *seen > f.skip {
                fault = Some(f.kind);
                break;
            }
        }
    }
    match fault {
        Some(FaultKind::Status(s)) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (text(status, "injected fault"), None);
        }
        Some(FaultKind::Hang) => return (text(StatusCode::SERVICE_UNAVAILABLE, ""), Some(HANG)),
        _ => {}
    }
    let hang_after = (fault == Some(FaultKind::ApplyThenHang)).then_some(HANG);

    let admin = matches!(auth, Auth::Admin);
    let forbidden = || (text(StatusCode::FORBIDDEN, ""), None);
    let response = match (method, segments.as_slice()) {
        (&Method::GET, ["system", "info"]) => json_response(json!({
            "LocalAddress": "http://127.0.0.1:8096",
            "ServerName": g.server_name,
            "Version": g.version,
            "ProductName": product,
            "OperatingSystem": "Linux",
            "Id": SERVER_ID,
            "StartupWizardCompleted": true,
            "HasPendingRestart": false,
            "IsShuttingDown": false,
            "SupportsLibraryMonitor": true,
            "WebSocketPortNumber": 8096,
            "CanSelfRestart": false,
            "CanLaunchWebBrowser": false,
            "HasUpdateAvailable": false
        })),
        (&Method::GET, ["auth", "providers"]) => {
            if !admin {
                return forbidden();
            }
            json_response(json!([{"Name": "Default", "Id": AUTH_PROVIDER}]))
        }
        (&Method::GET, ["system", "configuration"]) => {
            let mut config = g.server_config.clone();
            // Added in 10.11; older servers do not have the property.
            if version_before(&g.version, (10, 11)) {
                config
                    .as_object_mut()
                    .expect("object")
                    .remove("EnableLegacyAuthorization");
            }
            json_response(config)
        }
        (&Method::GET, ["system", "configuration", "network"]) if g.flavor == Flavor::Emby => {
            text(StatusCode::NOT_FOUND, "")
        }
        (&Method::GET, ["system", "configuration", "network"]) => {
            json_response(g.network_config.clone())
        }
        (&Method::GET, ["system", "configuration", "encoding"]) => {
            json_response(encoding_config(&g))
        }
        (&Method::GET, ["sessions"]) => {
            let list: Vec<Value> = g.sessions.iter().map(|s| session_dto(&g, s)).collect();
            json_response(Value::Array(list))
        }
        (&Method::GET, ["users"]) if g.flavor == Flavor::Emby => text(StatusCode::NOT_FOUND, ""),
        (&Method::GET, ["users", "query"]) if g.flavor == Flavor::Emby => {
            if !admin {
                return forbidden();
            }
            let items: Vec<Value> = g
                .users
                .iter()
                .map(|u| emby::listed_user(user_dto(u)))
                .collect();
            json_response(json!({"Items": items, "TotalRecordCount": g.users.len()}))
        }
        (&Method::GET, ["users"]) => {
            if !admin {
                return forbidden();
            }
            json_response(Value::Array(g.users.iter().map(user_dto).collect()))
        }
        (&Method::GET, ["users", id]) => {
            let id = crate::ids::normalize_guid(id);
            match g.users.iter().find(|u| u.id == id) {
                Some(u) => json_response(user_dto(u)),
                None => text(StatusCode::NOT_FOUND, "User not found"),
            }
        }
        (_, ["users", _, "policy"]) if method != Method::POST => {
            text(StatusCode::METHOD_NOT_ALLOWED, "")
        }
        (&Method::POST, ["users", id, "policy"]) => {
            if !admin {
                return forbidden();
            }
            let id = crate::ids::normalize_guid(id);
            post_policy(&mut g, &id, raw, body)
        }
        (&Method::POST, ["sessions", id, "command"]) => {
            // A client that lists SetMaxStreamingBitrate answers it by re-requesting playback
            // info: its stream restarts under the user's current limit (and the pushed rate).
            let id = id.to_string();
            let pushed = body
                .as_ref()
                .filter(|b| b["Name"] == "SetMaxStreamingBitrate")
                .and_then(|b| b["Arguments"]["Bitrate"].as_str()?.parse::<i64>().ok());
            if let Some(bitrate) = pushed
                && let Some(s) = g.sessions.iter().find(|s| s.id == id).cloned()
                && s.supported_commands
                    .iter()
                    .any(|c| c == "SetMaxStreamingBitrate")
                && !s.ignores_limits
            {
                let limit = effective_limit(&g, &s);
                if let Some(s) = g.sessions.iter_mut().find(|s| s.id == id) {
                    s.client_max = Some(bitrate);
                    if let Some(p) = s.playing.as_mut() {
                        p.limit_at_start = limit;
                        negotiate(p, cap(limit, Some(bitrate)));
                    }
                }
            }
            text(StatusCode::NO_CONTENT, "")
        }
        _ => text(StatusCode::NOT_FOUND, ""),
    };
    (response, hang_after)
}

fn post_policy(g: &mut Inner, id: &str, raw: &[u8], body: Option<Value>) -> Response {
    let Some(Value::Object(posted)) = body else {
        let what = if raw.is_empty() {
            "empty body"
        } else {
            "not a JSON object"
        };
        return text(StatusCode::BAD_REQUEST, what);
    };
    let required: &[&str] = match g.flavor {
        Flavor::Jellyfin => &["AuthenticationProviderId", "PasswordResetProviderId"],
        Flavor::Emby => &[],
    };
    for &field in required {
        if posted
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return validation_problem(field);
        }
    }
    if let Some(v) = posted.get("RemoteClientBitrateLimit")
        && v.as_i64().is_none_or(|n| i32::try_from(n).is_err())
    {
        return text(
            StatusCode::BAD_REQUEST,
            "RemoteClientBitrateLimit is not an int32",
        );
    }
    let Some(idx) = g.users.iter().position(|u| u.id == id) else {
        return text(StatusCode::NOT_FOUND, "User not found");
    };
    let demotes_last_admin = posted.get("IsAdministrator").and_then(Value::as_bool) != Some(true)
        && g.users[idx].policy["IsAdministrator"] == json!(true)
        && g.users
            .iter()
            .filter(|u| u.policy["IsAdministrator"] == json!(true))
            .count()
            == 1;
    if demotes_last_admin {
        return text(
            StatusCode::BAD_REQUEST,
            "There must be at least one user in the system with administrative access.",
        );
    }
    // Full replacement: every known property takes the posted value or is reset; properties
    // the body adds are kept after them.
    let template = match g.flavor {
        Flavor::Jellyfin => default_user_policy(),
        Flavor::Emby => emby::default_user_policy(),
    };
    let template = template.as_object().expect("object");
    let mut out: Map<String, Value> = template
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                posted.get(k).cloned().unwrap_or_else(|| reset_value(v)),
            )
        })
        .collect();
    for (k, v) in posted {
        if !template.contains_key(&k) {
            out.insert(k, v);
        }
    }
    g.users[idx].policy = Value::Object(out);
    text(StatusCode::NO_CONTENT, "")
}
