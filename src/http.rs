//! The HTTP surface, one router: `POST /hook`, `GET /healthz`, `GET /api/state`, `GET /metrics`.
//!
//! Handlers only parse and hand over: `/hook` checks the secret, parses the body, answers 202
//! at once (the Webhook plugin waits for the answer inside Jellyfin's playback handling and
//! never retries) and gives start/stop events to the engine. The once-a-second
//! `PlaybackProgress` flood is counted and dropped right here: it costs one parse.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use crate::anon;
use crate::config::{Mode, Settings};
use crate::engine::{EngineHandle, Shared};
use crate::plan::{Direction, fmt_mbps};
use crate::sync::lock;
use crate::webhook;

/// What the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// `None`: no secret required (listener on loopback without a configured token).
    pub token: Option<Arc<SecretString>>,
    pub engine: EngineHandle,
    pub shared: Arc<Shared>,
}

/// The one router of the daemon.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.daemon.max_hook_body_bytes;
    Router::new()
        .route("/hook", post(hook).layer(DefaultBodyLimit::max(limit)))
        .route("/healthz", get(healthz))
        .route("/api/state", get(api_state))
        .route("/metrics", get(metrics))
        .route("/api/history", get(api_history))
        .route("/", get(status_page))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The secret from `X-Jellydemon-Token` or `Authorization: Bearer …`, compared in constant time.
fn authorized(headers: &HeaderMap, token: &SecretString) -> bool {
    let presented = headers
        .get("x-jellydemon-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.trim()
                        .strip_prefix("Bearer ")
                        .or_else(|| v.trim().strip_prefix("bearer "))
                })
                .map(str::trim)
        });
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.expose_secret().as_bytes())))
}

async fn hook(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let m = &s.shared.metrics;
    if s.settings.daemon.mode == Mode::ReconcileOnly {
        return error(
            StatusCode::NOT_FOUND,
            "webhooks are disabled (daemon.mode = \"reconcile-only\")",
        );
    }
    if let Some(token) = &s.token
        && !authorized(&headers, token)
    {
        m.event("unknown", "unauthorized");
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong secret: send it in the X-Jellydemon-Token header",
        );
    }
    let event = match webhook::parse(&body) {
        Ok(e) => e,
        Err(e) => {
            m.event("invalid", "rejected");
            warn!(target: "jellydemon::http", "rejected webhook: {e}");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let kind = event.kind.label();
    if !event.kind.triggers_recompute() {
        m.event(kind, "ignored");
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "ignored"})),
        )
            .into_response();
    }
    debug!(target: "jellydemon::http", kind, "webhook accepted");
    if s.engine.offer(event) {
        m.event(kind, "accepted");
    } else {
        m.event(kind, "dropped");
        warn!(target: "jellydemon::http", "engine queue full; event dropped, the next poll repairs");
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "accepted"})),
    )
        .into_response()
}

/// `GET /`: the status page, one self-contained HTML file (no CDN) that polls `/api/state`.
async fn status_page() -> Response {
    (
        [
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "no-cache"),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

const STATUS_PAGE: &str = include_str!("status.html");

/// `GET /api/history`: the in-memory samples behind the chart, oldest first.
async fn api_history(State(s): State<AppState>) -> Response {
    let h: Vec<crate::engine::Sample> = lock(&s.shared.history).iter().copied().collect();
    axum::Json(json!({ "samples": h })).into_response()
}

/// `GET /metrics`: the OpenMetrics text.
async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.shared.metrics.encode(),
    )
        .into_response()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Alive when the engine runs and the last successful read of Jellyfin is recent enough
/// (`daemon.unhealthy_after`); during start-up the grace period is the same.
async fn healthz(State(s): State<AppState>) -> Response {
    let alive = s.shared.engine_alive.load(Ordering::SeqCst);
    let limit = s.settings.daemon.unhealthy_after;
    let (age, error) = {
        let p = lock(&s.shared.poll);
        (p.last_ok.map(|t| t.elapsed()), p.last_error.clone())
    };
    let uptime = s.shared.started.elapsed();
    let fresh = match age {
        Some(a) => a <= limit,
        None => uptime <= limit,
    };
    let healthy = alive && fresh;
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "engine_alive": alive,
        "last_successful_poll_age_seconds": age.map(|a| a.as_secs_f64()),
        "last_poll_error": error,
        "unhealthy_after_seconds": limit.as_secs(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn api_state(State(s): State<AppState>) -> Response {
    let last = lock(&s.shared.last_plan).clone();
    let m = &s.shared.metrics;
    let poll = {
        let p = lock(&s.shared.poll);
        json!({
            "last_ok_unix": p.last_ok_at.map(unix),
            "last_ok_age_seconds": p.last_ok.map(|t| t.elapsed().as_secs_f64()),
            "last_error": p.last_error,
            "consecutive_failures": p.consecutive_failures,
            "polls": m.poll_count(),
            "recomputes": m.recomputes.get(),
        })
    };
    let count = |kind: &str| {
        ["accepted", "ignored", "dropped"]
            .iter()
            .map(|r| m.events(kind, r))
            .sum::<u64>()
    };
    let events = json!({
        "PlaybackStart": count("PlaybackStart"),
        "PlaybackStop": count("PlaybackStop"),
        "PlaybackProgress": count("PlaybackProgress"),
        "other": count("other"),
        "rejected": m.events("invalid", "rejected"),
        "unauthorized": m.events("unknown", "unauthorized"),
        "dropped": m.events("PlaybackStart", "dropped") + m.events("PlaybackStop", "dropped"),
    });
    let (down, up) = (m.pushes_sent(Direction::Down), m.pushes_sent(Direction::Up));
    let starts = m.item_starts.get();
    let writes = json!({
        "pending": m.pending_writes.get(),
        "written": m.policy_writes.get(),
        "failed": m.policy_write_failures.get(),
        "pushes": { "down": down, "up": up },
        "item_starts": starts,
        "pushes_per_item_start": (starts > 0).then(|| (down + up) as f64 / starts as f64),
    });
    let budget = s.settings.budget().budget_bps;
    let plan = last.as_ref().map(|l| {
        let p = &l.plan;
        let users: Vec<Value> = p
            .decisions
            .iter()
            .map(|d| {
                json!({
                    "user_id": anon::user_id(&d.user_id).to_string(),
                    "user": anon::user(&d.user_name).to_string(),
                    "role": d.role.label(),
                    "streams": d.streams.len(),
                    "endpoints": d.endpoints.iter().map(|ip| anon::ip(*ip).to_string()).collect::<Vec<_>>(),
                    "stream_rate_bps": d.stream_rate,
                    "current_limit_bps": d.current,
                    "limit_bps": d.target,
                    "reason": d.reason,
                    "stream_details": d.streams.iter().map(|s| json!({
                        "session": anon::session(&s.session_id).to_string(),
                        "device": anon::device(&s.device).to_string(),
                        "source_bps": s.source,
                        "rate_bps": s.rate,
                        "held_bps": s.held,
                        "push": s.push.map(|p| json!({"direction": p.direction, "bitrate_bps": p.bitrate})),
                        "uncontrolled": s.uncontrolled.map(|u| u.to_string()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "at_unix": unix(l.at),
            "trigger": l.trigger,
            "from_stale_model": l.from_stale_model,
            "algorithm": p.algorithm.to_string(),
            "streaming_bps": p.streaming,
            "held_bps": p.held,
            "unmanaged_bps": p.unmanaged_bps,
            "overloaded": p.overloaded,
            "claimants": p.claimants(),
            "uncontrolled_streams": p.streams().filter(|(_, s)| s.uncontrolled.is_some()).count(),
            "users": users,
            "warnings": p.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            "local_streams": p.sessions.iter()
                .filter(|v| v.playing && matches!(v.location, crate::network::Location::Local(_)))
                .map(|v| json!({
                    "user": v.user_name.as_deref().map(|n| anon::user(n).to_string()),
                    "device": anon::device(&v.device).to_string(),
                    "rate_bps": v.rate.map(|r| r.bps()),
                    "paused": v.paused,
                }))
                .collect::<Vec<_>>(),
            "summary": format!("{} streaming of a {} budget, {} remote user(s)", fmt_mbps(p.streaming), fmt_mbps(p.budget), p.claimants()),
        })
    });
    axum::Json(json!({
        "mode": match s.settings.daemon.mode { Mode::Webhook => "webhook", Mode::ReconcileOnly => "reconcile-only" },
        "dry_run": s.settings.daemon.dry_run,
        "budget_bps": budget,
        "uptime_seconds": s.shared.started.elapsed().as_secs(),
        "poll_interval_seconds": s.settings.daemon.poll_interval().as_secs(),
        "poll": poll,
        "events": events,
        "writes": writes,
        "last_decision": plan,
        "recent": lock(&s.shared.recent).iter().rev().cloned().collect::<Vec<_>>(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_either_header() {
        let t = SecretString::from("0123456789abcdef".to_string());
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &t));
        h.insert("x-jellydemon-token", "0123456789abcdef".parse().unwrap());
        assert!(authorized(&h, &t));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer 0123456789abcdef".parse().unwrap());
        assert!(authorized(&h, &t));
        h.insert("authorization", "Bearer 0123456789abcdeX".parse().unwrap());
        assert!(!authorized(&h, &t));
        h.insert("authorization", "Bearer 0123456789abcde".parse().unwrap());
        assert!(!authorized(&h, &t));
    }
}
