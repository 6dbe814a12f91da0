//! The template in `webhook-templates/` rendered the way the Jellyfin Webhook plugin renders it
//! (Handlebars, the plugin's variables and helpers), then posted to a running jellydemon.

use crate::common::{Harness, KEY, M, dashed, eventually};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason, Renderable,
};
use jellydemon::adapters::webhook::{EventKind, parse};
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TEMPLATE: &str = include_str!("../../webhook-templates/jellydemon.handlebars");

/// `System.Text.Json.JsonEncodedText.Encode`: escapes `"`, `\`, control characters, non-ASCII
/// and `<>&'+` (as `\uXXXX`), without surrounding quotes. Throws when the variable is missing,
/// and the plugin then sends nothing.
fn json_encode(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let v = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
    let s = match v {
        Value::Null => {
            return Err(RenderErrorReason::Other("json_encode: missing variable".into()).into());
        }
        Value::String(s) => s,
        other => other.to_string(),
    };
    let mut enc = String::new();
    for c in s.encode_utf16() {
        match c {
            0x22 => enc.push_str("\\u0022"),
            0x5c => enc.push_str("\\\\"),
            0x0a => enc.push_str("\\n"),
            0x0d => enc.push_str("\\r"),
            0x09 => enc.push_str("\\t"),
            0x3c | 0x3e | 0x26 | 0x27 | 0x2b => enc.push_str(&format!("\\u{c:04X}")),
            c if !(0x20..=0x7e).contains(&c) => enc.push_str(&format!("\\u{c:04X}")),
            c => enc.push(c as u8 as char),
        }
    }
    out.write(&enc)?;
    Ok(())
}

/// `if_exist`: renders its block when the variable is neither null nor empty.
fn if_exist<'reg, 'rc>(
    h: &Helper<'rc>,
    r: &'reg Handlebars<'reg>,
    ctx: &'rc Context,
    rc: &mut RenderContext<'reg, 'rc>,
    out: &mut dyn Output,
) -> HelperResult {
    let exists = match h.param(0).map(|p| p.value()) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    if exists && let Some(t) = h.template() {
        t.render(r, ctx, rc, out)?;
    }
    Ok(())
}

fn engine() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.register_helper("json_encode", Box::new(json_encode));
    hb.register_helper("if_exist", Box::new(if_exist));
    hb.register_template_string("t", TEMPLATE).unwrap();
    hb
}

/// The plugin's variables for a playback event, as it names them; .NET booleans render as
/// True/False.
fn variables(kind: &str, user_id: &str, session_id: &str, device_id: &str) -> Value {
    json!({
        "NotificationType": kind,
        "ServerId": "f00dcafe0000400080000000000000aa",
        "ServerName": "fakefin",
        "ServerVersion": "10.11.11",
        "ServerUrl": "http://127.0.0.1:8096",
        "Timestamp": "2026-11-25 17:03:53",
        "UtcTimestamp": "2026-11-25 17:03:53",
        "Name": "Bob's \"big\" \\ night 🎬\nout",
        "ItemId": dashed("0123456789abcdef0123456789abcdef"),
        "ItemType": "Movie",
        "RunTimeTicks": 72000000000i64,
        "PlaybackPositionTicks": 0,
        "IsPaused": "False",
        "IsAutomated": "False",
        "PlayMethod": "DirectPlay",
        "DeviceId": device_id,
        "DeviceName": "Living room \"TV\"",
        "ClientName": "Jellyfin Web",
        "MediaSourceId": "0123456789abcdef0123456789abcdef",
        "Id": session_id,
        "UserId": dashed(user_id),
        "NotificationUsername": "Bob \\\"the\\\" O'Brien",
        "Client": "Jellyfin Web",
        "LastActivityDate": "2026-11-25 17:03:53",
        "RemoteEndPoint": "203.0.113.5",
        "Audio_0_Bitrate": 640000,
        "Video_0_Height": 2160,
    })
}

#[test]
fn the_template_renders_json_our_parser_reads_for_awkward_values() {
    let hb = engine();
    for device in [
        "plain-device-id",
        "dev\"ice with \"quotes\"",
        "back\\slash\\",
        "emoji 🎬📺 and ünïcödé",
        "new\nline\r\nand\ttab",
        "<script>&'+</script>",
    ] {
        let body = hb
            .render(
                "t",
                &variables("PlaybackStart", &"ab".repeat(16), &"cd".repeat(16), device),
            )
            .unwrap();
        let as_json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("not JSON for {device:?}: {e}\n{body}"));
        assert_eq!(as_json["DeviceId"], device, "round trip");
        let ev = parse(body.as_bytes()).unwrap();
        assert_eq!(ev.kind, EventKind::PlaybackStart);
        assert_eq!(
            ev.user_id.as_ref().map(|v| v.as_str()),
            Some("ab".repeat(16).as_str())
        );
        assert_eq!(
            ev.session_id.as_ref().map(|v| v.as_str()),
            Some("cd".repeat(16).as_str())
        );
        assert_eq!(ev.device_id.as_ref().map(|v| v.as_str()), Some(device));
        assert_eq!(ev.is_paused, Some(false));
        assert_eq!(ev.audio_bitrate, Some(640_000));
        assert_eq!(ev.remote_end_point.as_deref(), Some("203.0.113.5"));
    }
}

#[test]
fn optional_variables_may_be_missing() {
    // Before plugin v16 there is no RemoteEndPoint; PlayMethod and DeviceId may be absent.
    let hb = engine();
    let mut vars = variables("PlaybackStop", &"ab".repeat(16), &"cd".repeat(16), "d");
    for k in [
        "RemoteEndPoint",
        "PlayMethod",
        "DeviceId",
        "Audio_0_Bitrate",
        "Id",
    ] {
        vars.as_object_mut().unwrap().remove(k);
    }
    let body = hb
        .render("t", &vars)
        .expect("the plugin would send nothing if this failed");
    let ev = parse(body.as_bytes()).unwrap();
    assert_eq!(ev.kind, EventKind::PlaybackStop);
    assert_eq!(ev.remote_end_point, None);
    assert_eq!(ev.device_id, None);
    assert_eq!(ev.session_id, None);
}

#[tokio::test]
async fn a_rendered_template_drives_the_daemon() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    let h = Harness::start(fake, "", "").await;
    let d = h
        .daemon("poll_interval = \"1h\"\ndebounce = \"50ms\"")
        .await;
    eventually("startup", || h.fake.limit(&bob) == 55 * M).await;

    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    let hb = engine();
    let device = h.fake.sessions()[0].device_id.clone();
    let body = hb
        .render("t", &variables("PlaybackStart", &alice, &s, &device))
        .unwrap();
    let r = d.hook(&body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    eventually("bob lowered after alice's start", || {
        h.fake.limit(&bob) == 23 * M
    })
    .await;

    // The same event as "Send All Properties" JSON (undashed GUIDs, real booleans).
    h.fake.stop_playback(&s);
    let all = json!({
        "NotificationType": "PlaybackStop", "UserId": alice, "Id": s, "IsPaused": false,
        "PlayedToCompletion": true, "DeviceId": device, "NotificationUsername": "alice"
    });
    assert_eq!(
        d.hook(&all.to_string()).await.status(),
        StatusCode::ACCEPTED
    );
    eventually("bob back up after alice's stop", || {
        h.fake.limit(&bob) == 55 * M
    })
    .await;
    d.stop().await;
}
