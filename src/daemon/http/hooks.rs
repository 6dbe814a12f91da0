//! `POST /hook` (the Jellyfin Webhook plugin) and `POST /hook/{server}` (another media
//! server's webhook): the secret, the body read within its size and time, the event parsed
//! and handed to the engine or the members' watch without waiting.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{debug, warn};

use crate::adapters::webhook;
use crate::config::Mode;
use crate::daemon::access::{query_secret_matches, webhook_secret_matches};

use super::{AppState, Peer, error};

/// What every webhook passes before any of its body is read: webhooks are on, the request
/// is not from a web page, and it carries the secret (in the X-Jellydemon-Token header, or,
/// where `query` is given, as `?token=` in the URL, which some servers' webhooks can only
/// do). `label` is the event kind the metrics count a refusal under. The refusal, if any.
fn admit(
    s: &AppState,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
    label: &'static str,
    query: Option<Option<&str>>,
) -> Option<Response> {
    if s.settings.daemon.mode == Mode::ReconcileOnly {
        return Some(error(
            StatusCode::NOT_FOUND,
            "webhooks are disabled (daemon.mode = \"reconcile-only\")",
        ));
    }
    // Browsers send Origin with every POST; the Webhook plugin never does. A page open in a
    // browser on this machine must not be able to inject events.
    if headers.contains_key(header::ORIGIN) {
        s.metrics.event(label, "unauthorized");
        return Some(error(
            StatusCode::FORBIDDEN,
            "requests from web pages (with an Origin header) are not accepted",
        ));
    }
    if let Some(token) = &s.token
        && !webhook_secret_matches(headers, token)
        && !query.is_some_and(|q| query_secret_matches(q, token))
    {
        s.access.failed("webhook", peer);
        s.metrics.event(label, "unauthorized");
        return Some(error(
            StatusCode::UNAUTHORIZED,
            match query {
                None => "missing or wrong secret: send it in the X-Jellydemon-Token header",
                Some(_) => {
                    "missing or wrong secret: send it in the X-Jellydemon-Token header, or add \
                     ?token=<daemon.webhook_token> to the webhook's URL"
                }
            },
        ));
    }
    None
}

/// `POST /hook`. The secret is checked on the headers, before any of the body is read: a
/// client without it costs one header parse, however slowly it would send a body.
pub(super) async fn hook(State(s): State<AppState>, Peer(peer): Peer, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let m = &s.metrics;
    if let Some(refused) = admit(&s, &headers, peer, "unknown", None) {
        return refused;
    }
    let limit = s.settings.daemon.max_hook_body_bytes;
    let body = match read_body(&headers, body, limit).await {
        Ok(b) => b,
        Err(status) => {
            m.event("invalid", "rejected");
            return if status == StatusCode::PAYLOAD_TOO_LARGE {
                error(
                    status,
                    format!("the body is larger than daemon.max_hook_body_bytes ({limit} bytes)"),
                )
            } else {
                error(status, "the body could not be read")
            };
        }
    };
    let event = match webhook::parse(&body) {
        Ok(e) => e,
        Err(e) => {
            m.event("invalid", "rejected");
            warn!("rejected webhook: {e}");
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
    debug!(kind, "webhook accepted");
    if s.engine.offer(event) {
        m.event(kind, "accepted");
    } else {
        m.event(kind, "dropped");
        warn!("engine queue full; event dropped, the next poll repairs");
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "accepted"})),
    )
        .into_response()
}

/// `POST /hook/{server}`: a webhook from one of the other media servers, named as in its
/// `[[server]]` entry (`/hook/plex` also reaches the Plex servers whatever their names). The
/// secret comes in the `X-Jellydemon-Token` header, `Authorization: Bearer`, or the query's
/// `token` (Plex and Emby cannot send a header). What plays there is read again at once from
/// the server itself, which says more than the event could:
/// - Plex (a Plex Pass webhook, multipart, often with a poster): the body is not read;
/// - Jellyfin (the Webhook plugin, as at `/hook`) and Emby (its own webhooks): a JSON body is
///   parsed for its type alone, so the plugin's once-a-second `PlaybackProgress` costs a parse
///   and no read; Emby's multipart form (its default before 4.9) is not read and triggers a
///   read, which is coalesced to one a second.
pub(super) async fn server_hook(
    State(s): State<AppState>,
    Peer(peer): Peer,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let m = &s.metrics;
    if let Some(refused) = admit(&s, &headers, peer, "server", Some(query.as_deref())) {
        return refused;
    }
    let names = crate::config::server_names(&s.settings.server);
    let entry = names
        .iter()
        .zip(&s.settings.server)
        .find(|(n, _)| **n == name)
        .map(|(_, e)| e);
    let accepted = |label: &'static str| {
        m.event(label, "accepted");
        (
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "accepted"})),
        )
            .into_response()
    };
    match entry {
        Some(e) if e.manages_users() => {
            let Some(read) = &s.member_hook else {
                return error(StatusCode::NOT_FOUND, "no such server");
            };
            let multipart = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("multipart/"));
            if multipart {
                read.notify_one();
                return accepted("server");
            }
            let limit = s.settings.daemon.max_hook_body_bytes;
            let body = match read_body(&headers, body, limit).await {
                Ok(b) => b,
                Err(status) => {
                    m.event("invalid", "rejected");
                    return error(status, "the body could not be read, or is too large");
                }
            };
            match webhook::parse_member(&body) {
                Err(e) => {
                    m.event("invalid", "rejected");
                    warn!(server = %name, "rejected webhook: {e}");
                    error(StatusCode::BAD_REQUEST, e.to_string())
                }
                Ok(event) if event.triggers_read() => {
                    read.notify_one();
                    accepted(event.label())
                }
                Ok(event) => {
                    m.event(event.label(), "ignored");
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(json!({"status": "ignored"})),
                    )
                        .into_response()
                }
            }
        }
        Some(e) if e.is_plex() => plex_read(&s),
        None if name == "plex" && s.plex_hook.is_some() => plex_read(&s),
        _ => {
            m.event("server", "rejected");
            error(
                StatusCode::NOT_FOUND,
                format!("no [[server]] is named \"{name}\""),
            )
        }
    }
}

/// A Plex webhook: read the Plex servers again at once.
pub(super) fn plex_read(s: &AppState) -> Response {
    let Some(read) = &s.plex_hook else {
        return error(StatusCode::NOT_FOUND, "no [[server]] of kind \"plex\"");
    };
    read.notify_one();
    s.metrics.event("plex", "accepted");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "accepted"})),
    )
        .into_response()
}

/// The body, at most `limit` bytes: 413 as soon as `Content-Length` or what arrived says it
/// is larger, 400 when the client breaks off.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Vec<u8>, StatusCode> {
    use futures_util::StreamExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if out.len() + chunk.len() > limit {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
