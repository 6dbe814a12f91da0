//! Parsing the Jellyfin Webhook plugin's bodies. Pure: bytes in, an event or a precise error
//! out.
//!
//! Two shapes arrive at `/hook`: our own template (`webhook-templates/`), and the plugin's
//! "Send All Properties" JSON. Both carry the plugin's variable names (`NotificationType`,
//! `UserId`, the session id as `Id`, …). The parser is lenient where the plugin is sloppy:
//! keys are matched case-insensitively, GUIDs with or without dashes, booleans as `true`,
//! `"True"` or a bare `True` (a template writes `{{IsPaused}}` as `True`, which is not JSON).

use serde_json::{Map, Value};

use crate::ids::{DeviceId, SessionId, UserId, UserName, normalize_guid};

/// What a webhook tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A client started an item.
    PlaybackStart,
    /// A client stopped an item.
    PlaybackStop,
    /// Sent every second per playing session: counted, never a recompute.
    PlaybackProgress,
    /// Any other notification type: accepted and ignored.
    Other(String),
}

impl EventKind {
    /// Start and stop change who claims bandwidth; nothing else does.
    pub fn triggers_recompute(&self) -> bool {
        matches!(self, EventKind::PlaybackStart | EventKind::PlaybackStop)
    }
    /// The notification type as the plugin spells it (metrics labels).
    pub fn label(&self) -> &'static str {
        match self {
            EventKind::PlaybackStart => "PlaybackStart",
            EventKind::PlaybackStop => "PlaybackStop",
            EventKind::PlaybackProgress => "PlaybackProgress",
            EventKind::Other(_) => "other",
        }
    }
}

/// A parsed webhook. Everything but the kind is optional: the plugin omits what it does not
/// know, and `/Sessions` stays the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    /// What happened.
    pub kind: EventKind,
    /// `None` for none or the all-zero id.
    pub user_id: Option<UserId>,
    /// The user's name.
    pub user_name: Option<UserName>,
    /// The session.
    pub session_id: Option<SessionId>,
    /// The device's id.
    pub device_id: Option<DeviceId>,
    /// The device, e.g. "Firefox".
    pub device_name: Option<String>,
    /// The client application, e.g. "Jellyfin Web".
    pub client: Option<String>,
    /// The client's address as Jellyfin saw it (raw, classified later).
    pub remote_end_point: Option<String>,
    /// The item's id, normalized.
    pub item_id: Option<String>,
    /// The item's title.
    pub item_name: Option<String>,
    /// Playback is paused.
    pub is_paused: Option<bool>,
    /// "DirectPlay", "DirectStream" or "Transcode".
    pub play_method: Option<String>,
    /// The item's first video stream bitrate, bits/s, when the template sends it.
    pub video_bitrate: Option<i64>,
    /// The first audio stream's bitrate, bits/s.
    pub audio_bitrate: Option<i64>,
}

/// Why a body was rejected; the message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// Nothing was sent.
    #[error("empty body: configure the webhook's template (see webhook-templates/)")]
    Empty,
    /// The body is not JSON (or not UTF-8).
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("body is JSON but not an object")]
    NotObject,
    /// No `NotificationType`: not a notification.
    #[error("missing NotificationType")]
    MissingType,
    /// A playback start or stop that does not say whose it is.
    #[error(
        "{0} without a UserId: the limits are per user, so the event must name one (the \
         template in webhook-templates/ sends it as \"UserId\")"
    )]
    MissingUser(&'static str),
    /// A field has a value of the wrong shape.
    #[error("field {field}: {problem}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

/// What a webhook from one of the other Jellyfin or Emby servers (`POST /hook/{server}`)
/// asks for. Only whether to read that server again matters: its `/Sessions` says the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// An item started, stopped, paused or resumed: read the server now.
    Playback(&'static str),
    /// The Jellyfin plugin's once-a-second progress (or Emby's): dropped.
    Progress,
    /// Anything else (a library or user event): accepted and ignored.
    Other,
}

impl MemberEvent {
    /// Whether the server is to be read again at once.
    pub fn triggers_read(&self) -> bool {
        matches!(self, MemberEvent::Playback(_))
    }
    /// A label for the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            MemberEvent::Playback(kind) => kind,
            MemberEvent::Progress => "PlaybackProgress",
            MemberEvent::Other => "other",
        }
    }
}

/// Parse the JSON body of a webhook from another Jellyfin server (the Webhook plugin, with
/// `NotificationType` as at `/hook`) or from Emby (its own webhooks: `Event` is
/// `playback.start`, `playback.pause`, `playback.unpause`, `playback.stop`, ...). Unlike
/// [`parse`], nothing but the event's type is needed, so no `UserId` is required.
pub fn parse_member(body: &[u8]) -> Result<MemberEvent, HookError> {
    let map = object(body)?;
    let kind = field(&map, &["NotificationType", "Event", "EventType"])
        .and_then(as_string)
        .ok_or(HookError::MissingType)?;
    let squeezed: String = kind
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Ok(match squeezed.as_str() {
        "playbackstart" => MemberEvent::Playback("PlaybackStart"),
        "playbackstop" => MemberEvent::Playback("PlaybackStop"),
        "playbackpause" => MemberEvent::Playback("PlaybackPause"),
        "playbackunpause" => MemberEvent::Playback("PlaybackUnpause"),
        "playbackprogress" => MemberEvent::Progress,
        _ => MemberEvent::Other,
    })
}

/// The body as a JSON object, leniently (bare `True`/`False` accepted).
fn object(body: &[u8]) -> Result<Map<String, Value>, HookError> {
    let text =
        std::str::from_utf8(body).map_err(|e| HookError::NotJson(format!("not UTF-8 ({e})")))?;
    if text.trim().is_empty() {
        return Err(HookError::Empty);
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(first) => serde_json::from_str(&fix_bare_booleans(text))
            .map_err(|_| HookError::NotJson(first.to_string()))?,
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(HookError::NotObject),
    }
}

/// Parse a `/hook` body.
pub fn parse(body: &[u8]) -> Result<HookEvent, HookError> {
    let map = object(body)?;
    let get = |names: &[&str]| field(&map, names);
    let kind = match get(&["NotificationType", "Event", "EventType"]).and_then(as_string) {
        None => return Err(HookError::MissingType),
        Some(t) => match t.to_ascii_lowercase().as_str() {
            "playbackstart" => EventKind::PlaybackStart,
            "playbackstop" => EventKind::PlaybackStop,
            "playbackprogress" => EventKind::PlaybackProgress,
            _ => EventKind::Other(t),
        },
    };
    let guid = |names: &[&str], label: &'static str| -> Result<Option<String>, HookError> {
        match get(names).and_then(as_string) {
            None => Ok(None),
            Some(s) => {
                let n = normalize_guid(&s);
                if n.is_empty() {
                    Ok(None)
                } else if n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(Some(n))
                } else {
                    Err(HookError::BadField {
                        field: label,
                        problem: format!("\"{s}\" is not a GUID"),
                    })
                }
            }
        }
    };
    let user_id = guid(&["UserId"], "UserId")?.map(UserId::new);
    match (&kind, &user_id) {
        (EventKind::PlaybackStart, None) => return Err(HookError::MissingUser("PlaybackStart")),
        (EventKind::PlaybackStop, None) => return Err(HookError::MissingUser("PlaybackStop")),
        _ => {}
    }
    // The all-zero id: a session without a user (nothing to manage).
    let user_id = user_id.filter(|id| !id.is_nil());
    let is_paused = match get(&["IsPaused"]) {
        None => None,
        Some(v) => Some(as_bool(v).ok_or_else(|| HookError::BadField {
            field: "IsPaused",
            problem: format!("{v} is not a boolean"),
        })?),
    };
    let int = |names: &[&str], label: &'static str| -> Result<Option<i64>, HookError> {
        match get(names) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match as_int(v) {
                // Jellyfin's bitrates are int32: anything else is not one of its events.
                Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n)),
                Some(n) => Err(HookError::BadField {
                    field: label,
                    problem: format!("{n} is not a bitrate (0 to {} bits/s)", i32::MAX),
                }),
                None => Err(HookError::BadField {
                    field: label,
                    problem: format!("{v} is not an integer"),
                }),
            },
        }
    };
    Ok(HookEvent {
        kind,
        user_id,
        user_name: get(&["NotificationUsername", "UserName", "Username"])
            .and_then(as_string)
            .map(UserName::new),
        session_id: get(&["SessionId", "Id"])
            .and_then(as_string)
            .map(SessionId::new)
            .filter(|s| !s.is_empty()),
        device_id: get(&["DeviceId"]).and_then(as_string).map(DeviceId::new),
        device_name: get(&["DeviceName"]).and_then(as_string),
        client: get(&["ClientName", "Client"]).and_then(as_string),
        remote_end_point: get(&["RemoteEndPoint"]).and_then(as_string),
        item_id: get(&["ItemId"])
            .and_then(as_string)
            .map(|s| normalize_guid(&s)),
        item_name: get(&["Name"]).and_then(as_string),
        is_paused,
        play_method: get(&["PlayMethod"]).and_then(as_string),
        video_bitrate: int(&["Video_0_BitRate", "Video_0_Bitrate"], "Video_0_BitRate")?,
        audio_bitrate: int(&["Audio_0_BitRate", "Audio_0_Bitrate"], "Audio_0_BitRate")?,
    })
}

/// The first of `names` present (case-insensitive), ignoring empty strings (a template renders
/// a missing variable as "").
fn field<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Value::String(s) if s.trim().is_empty()))
    })
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Replace bare `True`/`False` (outside strings) by `true`/`false`: a Handlebars template
/// renders .NET booleans that way.
fn fix_bare_booleans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        } else if let Some(r) = rest.strip_prefix("True") {
            out.push_str("true");
            rest = r;
            continue;
        } else if let Some(r) = rest.strip_prefix("False") {
            out.push_str("false");
            rest = r;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn template_body_with_dashed_guids_and_bare_booleans() {
        let body = br#"{
            "NotificationType": "PlaybackStart",
            "UserId": "4F1C2D3E-0000-1111-2222-333344445555",
            "NotificationUsername": "Bob \"the\" O'Brien",
            "Id": "aa11bb22-cc33-dd44-ee55-ff6677889900",
            "DeviceId": "dev-1",
            "ClientName": "Jellyfin Web",
            "RemoteEndPoint": "203.0.113.7",
            "IsPaused": False,
            "PlayMethod": "Transcode",
            "Name": "It's \"True\"",
            "Video_0_BitRate": "8000000"
        }"#;
        let e = parse(body).unwrap();
        assert_eq!(e.kind, EventKind::PlaybackStart);
        assert_eq!(
            e.user_id.as_ref().map(UserId::as_str),
            Some("4f1c2d3e000011112222333344445555")
        );
        assert_eq!(
            e.session_id.as_ref().map(SessionId::as_str),
            Some("aa11bb22cc33dd44ee55ff6677889900")
        );
        assert_eq!(
            e.user_name.as_ref().map(UserName::as_str),
            Some("Bob \"the\" O'Brien")
        );
        assert_eq!(e.is_paused, Some(false));
        assert_eq!(
            e.item_name.as_deref(),
            Some("It's \"True\""),
            "strings untouched"
        );
        assert_eq!(e.video_bitrate, Some(8_000_000));
    }

    #[test]
    fn send_all_properties_body() {
        let body = br#"{"ServerId":"x","NotificationType":"PlaybackStop","UserId":"4f1c2d3e000011112222333344445555","Id":"aa11bb22cc33dd44ee55ff6677889900","IsPaused":true,"PlayedToCompletion":false,"RemoteEndPoint":"2001:db8::1"}"#;
        let e = parse(body).unwrap();
        assert_eq!(e.kind, EventKind::PlaybackStop);
        assert_eq!(e.is_paused, Some(true));
        assert_eq!(e.remote_end_point.as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn quoted_booleans_and_lowercase_keys() {
        let e = parse(br#"{"notificationtype":"playbackprogress","isPaused":"True"}"#).unwrap();
        assert_eq!(e.kind, EventKind::PlaybackProgress);
        assert_eq!(e.is_paused, Some(true));
    }

    #[test]
    fn unknown_types_are_accepted_as_other() {
        let e = parse(br#"{"NotificationType":"ItemAdded"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Other("ItemAdded".into()));
        assert!(!e.kind.triggers_recompute());
    }

    #[test]
    fn empty_template_variables_count_as_absent() {
        let e =
            parse(br#"{"NotificationType":"PlaybackProgress","UserId":"","RemoteEndPoint":" "}"#)
                .unwrap();
        assert_eq!(e.user_id, None);
        assert_eq!(e.remote_end_point, None);
        let e = parse(br#"{"NotificationType":"PlaybackStart","UserId":"00000000-0000-0000-0000-000000000000"}"#).unwrap();
        assert_eq!(e.user_id, None, "the all-zero GUID is no user");
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        assert_eq!(parse(b""), Err(HookError::Empty));
        assert_eq!(parse(b"  \n"), Err(HookError::Empty));
        assert!(matches!(
            parse(b"{\"NotificationType\": "),
            Err(HookError::NotJson(_))
        ));
        assert!(matches!(parse(&[0xff, 0xfe]), Err(HookError::NotJson(_))));
        assert_eq!(parse(b"[1,2]"), Err(HookError::NotObject));
        assert_eq!(parse(b"{\"UserId\":\"x\"}"), Err(HookError::MissingType));
        let err = parse(br#"{"NotificationType":"PlaybackStart","UserId":"bob"}"#).unwrap_err();
        assert_eq!(err.to_string(), "field UserId: \"bob\" is not a GUID");
        let user = r#""UserId":"4f1c4f1c4f1c4f1c4f1c4f1c4f1c4f1c""#;
        let err = parse(
            format!(r#"{{"NotificationType":"PlaybackStart",{user},"IsPaused":"maybe"}}"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("field IsPaused"), "{err}");
        // A start or stop that names no user cannot be acted on.
        for kind in ["PlaybackStart", "PlaybackStop"] {
            for body in [
                format!(r#"{{"NotificationType":"{kind}"}}"#),
                format!(r#"{{"NotificationType":"{kind}","UserId":""}}"#),
            ] {
                let err = parse(body.as_bytes()).unwrap_err();
                assert_eq!(
                    err,
                    HookError::MissingUser(if kind == "PlaybackStart" {
                        "PlaybackStart"
                    } else {
                        "PlaybackStop"
                    })
                );
                assert!(err.to_string().contains("without a UserId"), "{err}");
            }
        }
        // Bitrates are Jellyfin's int32: a forged huge one is refused, not summed.
        for v in [i64::MAX.to_string(), "-5".into(), "2147483648".into()] {
            let body =
                format!(r#"{{"NotificationType":"PlaybackStart",{user},"Video_0_BitRate":{v}}}"#);
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("is not a bitrate"), "{v}: {err}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&body);
        }

        #[test]
        fn bare_boolean_fix_leaves_strings_alone(s in "[a-zA-Z \"\\\\]{0,20}") {
            let json = serde_json::to_string(&serde_json::json!({"NotificationType": "x", "Name": s})).unwrap();
            let e = parse(json.as_bytes()).unwrap();
            prop_assert_eq!(e.item_name.unwrap_or_default(), s.trim().to_string());
        }
    }

    #[test]
    fn member_events_from_jellyfin_and_emby() {
        let jellyfin = br#"{"NotificationType":"PlaybackStart","IsPaused":False}"#;
        assert_eq!(
            parse_member(jellyfin),
            Ok(MemberEvent::Playback("PlaybackStart"))
        );
        let flood = br#"{"NotificationType":"PlaybackProgress"}"#;
        assert_eq!(parse_member(flood), Ok(MemberEvent::Progress));
        assert!(!MemberEvent::Progress.triggers_read());
        // Emby's own webhooks: no UserId is needed, the server's /Sessions says who.
        for (event, label) in [
            ("playback.start", "PlaybackStart"),
            ("playback.stop", "PlaybackStop"),
            ("playback.pause", "PlaybackPause"),
            ("playback.unpause", "PlaybackUnpause"),
        ] {
            let body = format!(r#"{{"Title":"x","Event":"{event}","User":{{"Name":"a"}}}}"#);
            let e = parse_member(body.as_bytes()).unwrap();
            assert_eq!(e, MemberEvent::Playback(label));
            assert!(e.triggers_read());
        }
        let other = br#"{"Event":"library.new"}"#;
        assert_eq!(parse_member(other), Ok(MemberEvent::Other));
        assert_eq!(parse_member(b"{}"), Err(HookError::MissingType));
        assert!(matches!(
            parse_member(b"--x\r\n"),
            Err(HookError::NotJson(_))
        ));
        assert_eq!(parse_member(b"  "), Err(HookError::Empty));
    }
}
