use super::*;
use crate::webhook::parse;

fn fetched() -> Snapshot {
    Snapshot {
        sessions: vec![crate::media::Playback::from(
            &serde_json::from_value::<crate::jellyfin::Session>(serde_json::json!({
                "Id": "aa11bb22cc33dd44ee55ff6677889900",
                "UserId": "4f1c2d3e000011112222333344445555",
                "RemoteEndPoint": "203.0.113.7",
                "DeviceId": "dev-1"
            }))
            .unwrap(),
        )],
        users: vec![],
        server_limit: 0,
        members: vec![],
        ranges: vec![],
    }
}

#[test]
fn start_and_stop_patch_the_model() {
    let mut m = fetched();
    let start = parse(br#"{"NotificationType":"PlaybackStart","UserId":"4f1c2d3e-0000-1111-2222-333344445555","Id":"AA11BB22-CC33-DD44-EE55-FF6677889900","Video_0_BitRate":8000000}"#).unwrap();
    patch(&mut m, &start);
    assert!(m.sessions[0].is_playing());
    assert_eq!(m.sessions[0].rate().unwrap().bps(), 8_000_000);
    let stop = parse(br#"{"NotificationType":"PlaybackStop","UserId":"4f1c2d3e000011112222333344445555","Id":"aa11bb22cc33dd44ee55ff6677889900"}"#).unwrap();
    patch(&mut m, &stop);
    assert!(!m.sessions[0].is_playing());
}

#[test]
fn a_start_for_an_unknown_session_adds_it() {
    let mut m = fetched();
    let start = parse(br#"{"NotificationType":"PlaybackStart","UserId":"0000000000000000000000000000000a","DeviceId":"tv","RemoteEndPoint":"198.51.100.1"}"#).unwrap();
    patch(&mut m, &start);
    assert_eq!(m.sessions.len(), 2);
    assert!(m.sessions[1].is_playing());
    assert_eq!(m.sessions[1].endpoint.as_deref(), Some("198.51.100.1"));
}
