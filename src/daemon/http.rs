//! The HTTP surface, one router: `POST /hook`, `POST /hook/{server}`, `GET /healthz`, the status page (`GET /` with
//! `status.css`, `status.js` and `POST /login`), `GET /api/state`, `GET /api/history`,
//! `GET /metrics`. Who may use which is in `access.rs`.
//!
//! Handlers only parse and hand over: `/hook` checks the secret, parses the body, answers 202
//! at once (the Webhook plugin waits for the answer inside Jellyfin's playback handling and
//! never retries) and gives start/stop events to the engine. The once-a-second
//! `PlaybackProgress` flood is counted and dropped right here: it costs one parse.
//!
//! Every response carries `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`,
//! `X-Frame-Options: DENY` and a Content-Security-Policy that allows only this server's own
//! script and styles (the status page has no inline script or style). `same-origin`, not
//! `no-referrer`: under `no-referrer` a browser sends `Origin: null` with the sign-in form's
//! POST, which the same-origin check must refuse; no other site ever sees a referrer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Settings;
use crate::metrics::Metrics;

use super::access::{Access, over_https, same_origin};
use super::engine::EngineHandle;
use super::status::Status;

mod hooks;

use hooks::{hook, server_hook};

/// What the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// `None`: no secret required (listener on loopback without a configured token).
    pub token: Option<Arc<SecretString>>,
    /// Who may read the status page, `/api/*` and `/metrics`.
    pub access: Arc<Access>,
    pub engine: EngineHandle,
    /// What the daemon has done, for `/healthz` and `/api/*`.
    pub status: Arc<Status>,
    pub metrics: Arc<Metrics>,
    /// Read the Plex servers at once (`None` without `[[server]] kind = "plex"`).
    pub plex_hook: Option<Arc<tokio::sync::Notify>>,
    /// Read the other Jellyfin and Emby servers at once (`None` without one).
    pub member_hook: Option<Arc<tokio::sync::Notify>>,
}

/// The Content-Security-Policy of every response: this server's own script, styles and API,
/// nothing inline, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The one router of the daemon.
pub fn router(state: AppState) -> Router {
    // What a person or Prometheus reads: under an allowed Host, with the status secret.
    let pages = Router::new()
        .route("/", get(status_page))
        .route("/status.css", get(status_css))
        .route("/status.js", get(status_js))
        // A sign-in form is a few dozen bytes.
        .route(
            "/login",
            get(login_form)
                .post(login)
                .layer(DefaultBodyLimit::max(4 * 1024)),
        )
        // An action is a few dozen bytes.
        .route(
            "/api/control",
            post(control).layer(DefaultBodyLimit::max(4 * 1024)),
        )
        .route("/logout", post(logout))
        .route("/api/state", get(api_state))
        .route("/api/history", get(api_history))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard));
    let headers = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    let request_timeout = state.settings.daemon.http_request_timeout;
    let mut app = Router::new()
        .route("/hook", post(hook))
        .route("/hook/{server}", post(server_hook))
        .route("/healthz", get(healthz))
        .merge(pages)
        .with_state(state)
        // Inside the header layers, so that a 408 carries them too.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ));
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    app
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The peer of a request served by `listener.rs` (absent when the router is called
/// without it).
struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| *a),
        ))
    }
}

/// In front of the status page, `/api/*` and `/metrics`: an allowed `Host` (421 otherwise),
/// then the status secret where it is needed (the sign-in page for `/`, 401 for the others).
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.access.host_allowed(req.headers()) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "this host name is not served here: add it to daemon.allowed_hosts",
        );
    }
    // The control API checks its own, stricter rule (the secret even on loopback).
    let open = matches!(
        req.uri().path(),
        "/status.css" | "/status.js" | "/login" | "/logout" | "/api/control"
    );
    if open || s.access.may_read(req.headers()) {
        return next.run(req).await;
    }
    if req.headers().contains_key(header::AUTHORIZATION) {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a);
        s.access.failed("status", peer);
    }
    if req.uri().path() == "/" {
        return login_page(StatusCode::UNAUTHORIZED, None);
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(json!({"error": "this needs the status secret: Authorization: Bearer <daemon.status_token>"})),
    )
        .into_response()
}

/// The sign-in form (an error shown above the field when there is one).
fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let page = LOGIN_PAGE.replace(
        "<!--error-->",
        &error
            .map(|e| format!("<p class=\"warn\">{e}</p>"))
            .unwrap_or_default(),
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /login`: the sign-in form. The right secret sets the session cookie and goes back to
/// the page.
async fn login(
    State(s): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignIn>,
) -> Response {
    if !same_origin(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("Sign in from this page, not from another site."),
        );
    }
    if let Err(wait) = s.access.may_try_sign_in(peer) {
        s.access.failed("sign-in (too many tries)", peer);
        let mut r = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many tries from your address: wait {} s.",
                wait.as_secs().max(1)
            )),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    match s.access.sign_in(&form.token, over_https(&headers)) {
        Some(cookie) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, "./".to_string()),
            ],
        )
            .into_response(),
        None => {
            s.access.failed("sign-in", peer);
            login_page(
                StatusCode::UNAUTHORIZED,
                Some("That is not the status secret."),
            )
        }
    }
}

/// `GET /login`: the sign-in form (on loopback the page is open, but control needs a
/// session).
async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// `POST /api/control`: an owner's action (`src/core/control.rs`, a JSON body such as
/// `{"action": "pause", "for": "2h"}`), applied by the engine, which plans again at once.
/// Needs the status secret (`Access::may_control`); answers what changed.
async fn control(
    State(s): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let by = match s.access.may_control(&headers) {
        Ok(by) => by,
        Err((code, why)) => {
            if code == 401 {
                s.access.failed("control", peer);
            }
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN);
            return error(code, why);
        }
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the action as JSON (Content-Type: application/json)",
        );
    }
    let action: crate::core::control::Action = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not an action: {e}")),
    };
    // The command line says who it is; the rest is the page or another program.
    let by = match headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        Some(ua) if by == "api" && ua.starts_with("jellydemon/") => "cli",
        _ => by,
    };
    match s.engine.control(action, by).await {
        Ok(done) => axum::Json(json!({
            "done": done,
            "overrides": s.status.view(&s.settings).overrides,
        }))
        .into_response(),
        Err(e @ crate::core::control::ControlError::UnknownUser(_)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `POST /logout`: forget the session and remove the cookie, then back to the page (the
/// sign-in form where one is needed).
async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "sign out from this page, not from another site",
        );
    }
    let cookie = s.access.sign_out(&headers, over_https(&headers));
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "./".to_string()),
        ],
    )
        .into_response()
}

/// `GET /`: the status page (no CDN: it works offline), which polls `/api/state`.
async fn status_page() -> Response {
    asset("text/html; charset=utf-8", STATUS_PAGE)
}

async fn status_css() -> Response {
    asset("text/css; charset=utf-8", STATUS_CSS)
}

async fn status_js() -> Response {
    asset("text/javascript; charset=utf-8", STATUS_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

const STATUS_PAGE: &str = include_str!("page/index.html");
const STATUS_CSS: &str = include_str!("page/status.css");
const STATUS_JS: &str = include_str!("page/status.js");
const LOGIN_PAGE: &str = include_str!("page/login.html");

#[derive(serde::Deserialize)]
struct HistoryQuery {
    /// "7d", "24h": the figures and chart of that period from the history database.
    since: Option<String>,
}

/// `GET /api/history`: the in-memory samples behind the live chart, oldest first; with
/// `?since=7d`, that period from the history database (`src/adapters/history/stats.rs`): per-user
/// figures, time over budget per day, the week's hours, and a chart series.
async fn api_history(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<HistoryQuery>,
) -> Response {
    let Some(since) = q.since else {
        return axum::Json(json!({ "samples": s.status.history() })).into_response();
    };
    let span = match humantime::parse_duration(since.trim()) {
        Ok(d) if d <= crate::adapters::history::stats::MAX_SPAN => d,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "since is a duration up to 400 days, e.g. 24h or 7d",
            );
        }
    };
    if !s.settings.history.enabled {
        return error(
            StatusCode::NOT_FOUND,
            "the history is off (history.enabled)",
        );
    }
    let path = s.settings.history.path(&s.settings.state.file);
    let tz = s.settings.timezone();
    let now = crate::clock::unix_millis_now();
    let from = now.saturating_sub(span.as_millis() as u64);
    let loaded = tokio::task::spawn_blocking(move || {
        crate::adapters::history::stats::load(&path, from, now, None, &tz, 168)
    })
    .await;
    match loaded {
        Ok(Ok((stats, series))) => {
            axum::Json(json!({ "stats": stats, "series": series })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the history could not be read",
        ),
    }
}

/// `GET /metrics`: the OpenMetrics text.
async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

/// Alive when the engine runs and the last successful read of Jellyfin is recent enough
/// (`daemon.unhealthy_after`); unhealthy until Jellyfin was first reached.
async fn healthz(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let limit = s.settings.daemon.unhealthy_after;
    let h = s.status.health(limit);
    // An error may quote Jellyfin's answer: only for those who may read the status.
    let error = h.last_error.filter(|_| s.access.may_read(&headers));
    let body = json!({
        "status": if h.healthy { "ok" } else { "unhealthy" },
        "engine_alive": h.engine_alive,
        "jellyfin_reached": h.age.is_some(),
        "last_successful_poll_age_seconds": h.age.map(|a| a.as_secs_f64()),
        "last_poll_error": error,
        "unhealthy_after_seconds": limit.as_secs(),
    });
    let code = if h.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// `GET /api/state`: [`Status::view`], with what this request may change.
async fn api_state(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let mut view = s.status.view(&s.settings);
    view.control = super::status::ControlView {
        available: s.access.has_secret(),
        signed_in: s.access.signed_in(&headers),
    };
    axum::Json(view).into_response()
}
