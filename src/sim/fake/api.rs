//! The fake's HTTP side: authentication, the routes jellydemon uses with Jellyfin's DTOs
//! and errors, the policy POST that replaces the whole policy, and the faults a test sets.
//! Over 600 lines on purpose: `authenticated` (with `anonymous` before it) is the one table of
//! the endpoints the fake serves, read top to bottom against Jellyfin's OpenAPI spec, with the
//! DTOs it answers beside it; [`route`] runs a request through the key, the faults and the
//! table.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::adapters::jellyfin::Flavor;
use crate::sim::emby;

use super::model::{
    SOURCE_FPS, cap, effective_limit, encoding_config, negotiate, transcoding_hardware,
    version_before,
};
use super::{
    AUTH_PROVIDER, FakeJellyfin, FakeSession, FakeUser, FaultKind, Inner, RESET_PROVIDER, Recorded,
    SERVER_ID, TICKS_PER_SECOND, ZERO_GUID,
};

/// Jellyfin's policy for a freshly created user (10.11), in its property order (the provider
/// ids are filled in from [`AUTH_PROVIDER`] and [`RESET_PROVIDER`]).
pub(super) const DEFAULT_POLICY: &str = r#"{
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
pub(super) fn reset_value(v: &Value) -> Value {
    match v {
        Value::Bool(_) => json!(false),
        Value::Number(_) => json!(0),
        Value::Array(_) => json!([]),
        Value::String(_) => json!(""),
        Value::Object(_) => json!({}),
        Value::Null => Value::Null,
    }
}

pub(super) fn default_server_config() -> Value {
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

pub(super) fn default_network_config() -> Value {
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

pub(super) fn user_dto(u: &FakeUser) -> Value {
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

pub(super) fn session_dto(g: &Inner, s: &FakeSession) -> Value {
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

pub(super) enum Auth {
    Admin,
    NonAdmin,
    None,
}

/// The token from `Authorization: MediaBrowser Token="…"` (other parameters may be present).
pub(super) fn token(headers: &HeaderMap) -> Option<String> {
    let h = headers.get("authorization")?.to_str().ok()?;
    let rest = h.trim().strip_prefix("MediaBrowser")?.trim_start();
    rest.split(',').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("token")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

pub(super) fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_string()).into_response()
}

pub(super) fn json_response(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

pub(super) fn validation_problem(field: &str) -> Response {
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

pub(super) async fn handle(State(fake): State<FakeJellyfin>, req: Request) -> Response {
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

pub(super) async fn answer(fake: FakeJellyfin, req: Request) -> Response {
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

pub(super) const HANG: Duration = Duration::from_secs(3600);

/// Route one request. Returns the response and, for a hang, how long to wait before sending it.
pub(super) fn route(
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
    if let Some(r) = anonymous(&g, method, &segments) {
        return (r, None);
    }
    let auth = authorize(&g, headers, query);
    if matches!(auth, Auth::None) {
        return (text(StatusCode::UNAUTHORIZED, ""), None);
    }
    let fault = injected_fault(&mut g, method, &lower);
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
    let response = authenticated(&mut g, method, &segments, admin, raw, body);
    (response, hang_after)
}

/// The server's name as its `/System/Info` says it.
fn product(g: &Inner) -> &'static str {
    match g.flavor {
        Flavor::Jellyfin => "Jellyfin Server",
        Flavor::Emby => emby::PRODUCT_NAME,
    }
}

/// The endpoints anyone may read.
fn anonymous(g: &Inner, method: &Method, segments: &[&str]) -> Option<Response> {
    let product = product(g);
    match (method, segments) {
        (&Method::GET, ["system", "info", "public"]) => Some(json_response(json!({
                "LocalAddress": "http://127.0.0.1:8096",
                "ServerName": g.server_name,
                "Version": g.version,
                "ProductName": product,
                "Id": SERVER_ID,
                "StartupWizardCompleted": true
        }))),
        (&Method::GET, ["system", "ping"]) => Some(text(StatusCode::OK, &format!("\"{product}\""))),
        _ => None,
    }
}

/// Who the request's key says it is.
fn authorize(g: &Inner, headers: &HeaderMap, query: Option<&str>) -> Auth {
    let presented = match g.flavor {
        Flavor::Jellyfin => token(headers),
        Flavor::Emby => emby::token(headers, query),
    };
    match presented {
        Some(t) if t == g.api_key => Auth::Admin,
        Some(t) if g.non_admin_keys.contains(&t) => Auth::NonAdmin,
        _ => Auth::None,
    }
}

/// The fault a test set for this request, if its turn has come.
fn injected_fault(g: &mut Inner, method: &Method, lower: &str) -> Option<FaultKind> {
    for (f, seen) in g.faults.iter_mut() {
        let matches = f.method.as_ref().is_none_or(|m| m == method)
            && f.path_prefix
                .as_deref()
                .is_none_or(|p| lower.starts_with(p));
        if matches {
            *seen += 1;
            if *seen > f.skip {
                return Some(f.kind);
            }
        }
    }
    None
}

/// The endpoints behind the API key: the table of what the fake serves, read top to bottom
/// against Jellyfin's OpenAPI spec (`admin`: an administrator's key).
fn authenticated(
    g: &mut Inner,
    method: &Method,
    segments: &[&str],
    admin: bool,
    raw: &[u8],
    body: Option<Value>,
) -> Response {
    let product = product(g);
    match (method, segments) {
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
                return text(StatusCode::FORBIDDEN, "");
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
            json_response(encoding_config(g))
        }
        (&Method::GET, ["sessions"]) => {
            let list: Vec<Value> = g.sessions.iter().map(|s| session_dto(g, s)).collect();
            json_response(Value::Array(list))
        }
        (&Method::GET, ["users"]) if g.flavor == Flavor::Emby => text(StatusCode::NOT_FOUND, ""),
        (&Method::GET, ["users", "query"]) if g.flavor == Flavor::Emby => {
            if !admin {
                return text(StatusCode::FORBIDDEN, "");
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
                return text(StatusCode::FORBIDDEN, "");
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
                return text(StatusCode::FORBIDDEN, "");
            }
            let id = crate::ids::normalize_guid(id);
            post_policy(g, &id, raw, body)
        }
        (&Method::POST, ["sessions", id, "command"]) => {
            set_max_streaming_bitrate(g, id, body.as_ref())
        }
        _ => text(StatusCode::NOT_FOUND, ""),
    }
}

/// `SetMaxStreamingBitrate` sent to session `id`. A client that lists the command answers it by
/// re-requesting playback info: its stream restarts under the user's current limit (and the
/// pushed rate).
fn set_max_streaming_bitrate(g: &mut Inner, id: &str, body: Option<&Value>) -> Response {
    let pushed = body
        .filter(|b| b["Name"] == "SetMaxStreamingBitrate")
        .and_then(|b| b["Arguments"]["Bitrate"].as_str()?.parse::<i64>().ok());
    if let Some(bitrate) = pushed
        && let Some(s) = g.sessions.iter().find(|s| s.id == id).cloned()
        && s.supported_commands
            .iter()
            .any(|c| c == "SetMaxStreamingBitrate")
        && !s.ignores_limits
    {
        let limit = effective_limit(g, &s);
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

pub(super) fn post_policy(g: &mut Inner, id: &str, raw: &[u8], body: Option<Value>) -> Response {
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
