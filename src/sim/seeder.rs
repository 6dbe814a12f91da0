//! A simulated qBittorrent that seeds all it is allowed: the WebUI API v2 calls jellydemon
//! makes (`src/adapters/downloader/qbittorrent.rs`), with the WebUI's "bypass authentication for
//! clients on localhost" (no login). It uploads its limit, or the room the link leaves when
//! that is less (the caller says how much room there is). For the demo.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The simulated client; clones share it.
#[derive(Clone, Default)]
pub struct FakeSeeder {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// `up_limit`, bytes/s (0: unlimited).
    up_limit: AtomicI64,
    /// `alt_up_limit`, bytes/s.
    alt_up_limit: AtomicI64,
    /// What the link leaves it, bits/s.
    room_bps: AtomicU64,
}

impl FakeSeeder {
    /// A client with no upload limit, as a fresh qBittorrent is.
    pub fn new() -> FakeSeeder {
        let s = FakeSeeder::default();
        s.inner.alt_up_limit.store(10 * 1024, Ordering::SeqCst);
        s
    }

    /// Serve on an ephemeral loopback port until `stop`; returns the WebUI's URL.
    pub async fn spawn(&self, stop: CancellationToken) -> std::io::Result<String> {
        use axum::routing::{get, post};
        let app = axum::Router::new()
            .route("/api/v2/transfer/speedLimitsMode", get(|| async { "0" }))
            .route(
                "/api/v2/app/version",
                get(|| async { "v4.5.2 (simulated)" }),
            )
            .route("/api/v2/app/preferences", get(preferences))
            .route("/api/v2/app/setPreferences", post(set_preferences))
            .route("/api/v2/transfer/info", get(info))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Ok(url)
    }

    /// What the link leaves it from now on, bits/s.
    pub fn set_room(&self, bps: u64) {
        self.inner.room_bps.store(bps, Ordering::SeqCst);
    }

    /// What it uploads now, bits/s: its limit, or the room when that is less.
    pub fn rate_bps(&self) -> u64 {
        let room = self.inner.room_bps.load(Ordering::SeqCst);
        match self.inner.up_limit.load(Ordering::SeqCst) {
            l if l <= 0 => room,
            l => (l as u64 * 8).min(room),
        }
    }

    /// Its upload limit, bytes/s (0: unlimited).
    pub fn up_limit(&self) -> i64 {
        self.inner.up_limit.load(Ordering::SeqCst)
    }
}

async fn preferences(State(s): State<FakeSeeder>) -> Response {
    axum::Json(json!({
        "up_limit": s.inner.up_limit.load(Ordering::SeqCst),
        "alt_up_limit": s.inner.alt_up_limit.load(Ordering::SeqCst),
    }))
    .into_response()
}

/// qBittorrent keeps whole KiB/s; -1 is unlimited, as 0.
fn kib(v: i64) -> i64 {
    if v <= 0 { 0 } else { (v / 1024).max(1) * 1024 }
}

async fn set_preferences(
    State(s): State<FakeSeeder>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(Ok(Value::Object(p))) = form.get("json").map(|j| serde_json::from_str(j)) else {
        return (StatusCode::BAD_REQUEST, "json expected").into_response();
    };
    for (key, slot) in [
        ("up_limit", &s.inner.up_limit),
        ("alt_up_limit", &s.inner.alt_up_limit),
    ] {
        if let Some(v) = p.get(key).and_then(Value::as_i64) {
            slot.store(kib(v), Ordering::SeqCst);
        }
    }
    StatusCode::OK.into_response()
}

async fn info(State(s): State<FakeSeeder>) -> Response {
    axum::Json(json!({ "up_info_speed": s.rate_bps() / 8, "connection_status": "connected" }))
        .into_response()
}
