//! A fake Plex Media Server for the tests: `GET /status/sessions` as `docs/media-servers.md`
//! describes it (JSON when asked for, `MediaContainer.Metadata[]` with `Session`, `User` and
//! `Player`), behind `X-Plex-Token`; `GET /:/prefs` and `PUT /:/prefs?<id>=<value>` for its
//! `WanTotalMaxUploadRate`. Streams are added and removed by the test; the server can be made
//! to fail.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One session the fake reports.
#[derive(Debug, Clone)]
pub struct PlexSession {
    /// The account's name.
    pub user: String,
    /// `wan`, `lan` or `cellular`.
    pub location: String,
    /// What Plex reserved for it, kbit/s.
    pub bandwidth_kbps: u64,
}

#[derive(Default)]
struct Inner {
    sessions: Vec<PlexSession>,
    /// `WanTotalMaxUploadRate`, kbit/s (0: none).
    wan_total_kbps: i64,
    failing: bool,
    reads: u64,
    /// Every `WanTotalMaxUploadRate` written by `PUT /:/prefs`, in order.
    wan_writes: Vec<i64>,
}

/// The fake; clones share the same server.
#[derive(Clone)]
pub struct FakePlex {
    token: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakePlex {
    /// A server that answers requests carrying `token`.
    pub fn new(token: &str) -> FakePlex {
        FakePlex {
            token: token.to_string(),
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `user` streams `kbps` at `location`.
    pub fn add_session(&self, user: &str, location: &str, kbps: u64) {
        self.lock().sessions.push(PlexSession {
            user: user.into(),
            location: location.into(),
            bandwidth_kbps: kbps,
        });
    }

    /// Every session stops.
    pub fn clear(&self) {
        self.lock().sessions.clear();
    }

    /// Set `WanTotalMaxUploadRate` (kbit/s, 0: none), as the owner would in Plex's settings.
    pub fn set_wan_total_kbps(&self, kbps: i64) {
        self.lock().wan_total_kbps = kbps;
    }

    /// `WanTotalMaxUploadRate` now, kbit/s.
    pub fn wan_total_kbps(&self) -> i64 {
        self.lock().wan_total_kbps
    }

    /// Every `WanTotalMaxUploadRate` written to it, in order.
    pub fn wan_writes(&self) -> Vec<i64> {
        self.lock().wan_writes.clone()
    }

    /// Answer 500 to everything (or not).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// How many `/status/sessions` reads it has answered.
    pub fn reads(&self) -> u64 {
        self.lock().reads
    }

    /// Serve on a loopback port until the token is cancelled; its URL.
    pub async fn spawn(&self) -> (String, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let token = CancellationToken::new();
        // Plex's preferences live at `/:/prefs`, a literal colon.
        let app = Router::new()
            .without_v07_checks()
            .route("/status/sessions", get(sessions))
            .route("/:/prefs", get(prefs).put(set_prefs))
            .with_state(self.clone());
        let stop = token.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        (url, token)
    }
}

/// `GET /:/prefs`: a few of Plex's preferences, `WanTotalMaxUploadRate` among them.
async fn prefs(State(fake): State<FakePlex>, headers: HeaderMap) -> Response {
    if headers.get("X-Plex-Token").and_then(|v| v.to_str().ok()) != Some(fake.token.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let inner = fake.lock();
    if inner.failing {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    axum::Json(json!({
        "MediaContainer": { "size": 3, "Setting": [
            { "id": "FriendlyName", "label": "Friendly name", "type": "text",
              "default": "", "value": "fake" },
            { "id": "WanPerStreamMaxUploadRate", "label": "Limit remote stream bitrate",
              "type": "int", "default": 0, "value": 0 },
            { "id": "WanTotalMaxUploadRate",
              "label": "External network total upload limit (kbps)", "type": "int",
              "default": 0, "value": inner.wan_total_kbps },
        ]}
    }))
    .into_response()
}

/// `PUT /:/prefs?WanTotalMaxUploadRate=<kbps>`: 200 with an empty body; a preference it does
/// not know or a value that is not a whole number is refused with 400.
async fn set_prefs(
    State(fake): State<FakePlex>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if headers.get("X-Plex-Token").and_then(|v| v.to_str().ok()) != Some(fake.token.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut inner = fake.lock();
    if inner.failing {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let query = query.unwrap_or_default();
    let mut set = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("WanTotalMaxUploadRate", v)) => match v.parse::<i64>() {
                Ok(v) if v >= 0 => set = Some(v),
                _ => return StatusCode::BAD_REQUEST.into_response(),
            },
            _ => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    let Some(v) = set else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    inner.wan_total_kbps = v;
    inner.wan_writes.push(v);
    StatusCode::OK.into_response()
}

async fn sessions(State(fake): State<FakePlex>, headers: HeaderMap) -> Response {
    if headers.get("X-Plex-Token").and_then(|v| v.to_str().ok()) != Some(fake.token.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut inner = fake.lock();
    if inner.failing {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    inner.reads += 1;
    let json_wanted = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if !json_wanted {
        // Plex answers XML unless asked for JSON.
        return (
            [(axum::http::header::CONTENT_TYPE, "application/xml")],
            format!("<MediaContainer size=\"{}\"/>", inner.sessions.len()),
        )
            .into_response();
    }
    let metadata: Vec<Value> = inner
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "type": "movie",
                "title": format!("Film {i}"),
                "User": { "id": (i + 1).to_string(), "title": s.user },
                "Player": {
                    "title": format!("Player {i}"),
                    "product": "Plex Web",
                    "state": "playing",
                    "local": s.location == "lan",
                    "address": if s.location == "lan" { "192.168.1.20" } else { "203.0.113.20" },
                },
                "Session": {
                    "id": format!("session-{i}"),
                    "bandwidth": s.bandwidth_kbps,
                    "location": s.location,
                },
            })
        })
        .collect();
    axum::Json(json!({
        "MediaContainer": { "size": metadata.len(), "Metadata": metadata }
    }))
    .into_response()
}
