use super::*;
use serde_json::json;

#[test]
fn policy_rewrite_changes_one_field_and_keeps_the_rest_in_order() {
    let p = json!({"IsAdministrator": true, "RemoteClientBitrateLimit": 0, "Unknown": {"x": [1]}, "AuthenticationProviderId": "a"});
    let out = with_remote_limit(Some(&p), 12_000_000).unwrap();
    assert_eq!(
        serde_json::to_string(&out).unwrap(),
        r#"{"IsAdministrator":true,"RemoteClientBitrateLimit":12000000,"Unknown":{"x":[1]},"AuthenticationProviderId":"a"}"#
    );
    assert!(with_remote_limit(None, 1).is_none());
    assert!(with_remote_limit(Some(&json!([])), 1).is_none());
}

/// What a transcode costs, read from `/Sessions` as 10.9 and 10.10+ write it.
#[test]
fn video_transcodes_and_their_speed_are_read() {
    let session = |transcoding: serde_json::Value| -> Session {
        serde_json::from_value(json!({
            "Id": "s",
            "NowPlayingItem": {"Id": "i", "MediaStreams": [
                {"Type": "Video", "BitRate": 70_000_000, "Height": 2160, "Width": 3840,
                 "RealFrameRate": 23.976},
                {"Type": "Audio", "BitRate": 640_000, "Index": 1}
            ]},
            "PlayState": {"PlayMethod": "Transcode"},
            "TranscodingInfo": transcoding
        }))
        .unwrap()
    };
    let slow = session(json!({
        "Bitrate": 18_000_000, "IsVideoDirect": false, "Framerate": 14.5, "Width": 1920,
        "Height": 1080, "HardwareAccelerationType": "none",
        "TranscodeReasons": ["ContainerBitrateExceedsLimit"]
    }));
    assert!(slow.transcodes_video());
    assert_eq!(slow.transcode_behind(), Some(true));
    let t = slow.transcoding_info.as_ref().unwrap();
    assert!(t.for_bitrate());
    assert_eq!(t.hardware(), None, "none is software");
    assert_eq!(slow.source_video().unwrap().height, Some(2160));
    let fast = session(json!({"IsVideoDirect": false, "Framerate": 95.0,
                              "HardwareAccelerationType": "VAAPI",
                              "TranscodeReasons": ["AudioCodecNotSupported"]}));
    assert_eq!(fast.transcode_behind(), Some(false));
    assert_eq!(
        fast.transcoding_info
            .as_ref()
            .unwrap()
            .hardware()
            .as_deref(),
        Some("vaapi")
    );
    assert!(!fast.transcoding_info.as_ref().unwrap().for_bitrate());
    // A remux copies the video: no encode.
    let remux = session(json!({"IsVideoDirect": true, "Bitrate": 71_000_000}));
    assert!(remux.is_transcoding() && !remux.transcodes_video());
    // No frame rate reported: unknown.
    assert_eq!(
        session(json!({"IsVideoDirect": false})).transcode_behind(),
        None
    );
}

#[test]
fn debug_never_shows_the_key() {
    let c = Client::new(
        "http://127.0.0.1:1/",
        &SecretString::from("supersecretkey".to_string()),
        Duration::from_secs(1),
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("supersecretkey"));
    assert_eq!(c.base_url(), "http://127.0.0.1:1");
}

#[tokio::test]
async fn an_error_names_the_url_without_credentials() {
    let c = Client::new(
        "http://admin:hunter2@127.0.0.1:1/jf",
        &SecretString::from("k".to_string()),
        Duration::from_secs(2),
    )
    .unwrap();
    let e = c.users().await.unwrap_err().to_string();
    assert!(e.starts_with("GET http://127.0.0.1:1/jf/Users: "), "{e}");
    assert!(!e.contains("hunter2") && !e.contains("admin"), "{e}");
}

#[test]
fn session_helpers() {
    let s: Session = serde_json::from_value(json!({
        "Id": "abc", "UserId": "00000000000000000000000000000000",
        "NowPlayingItem": {"MediaStreams": [{"Type": "Video", "BitRate": 8000000}, {"Type": "Audio", "BitRate": 640000}, {"Type": "Subtitle"}]},
        "PlayState": {"IsPaused": true}
    }))
    .unwrap();
    assert_eq!(s.user(), None);
    assert!(s.is_paused());
    assert_eq!(s.stream_rate(), Some(RateSource::MediaStreams(8_640_000)));
    let t: Session = serde_json::from_value(json!({
        "Id": "abc", "UserId": "0f0f", "TranscodingInfo": {"Bitrate": 4000000},
        "NowPlayingItem": {"MediaStreams": [{"BitRate": 80000000}]}
    }))
    .unwrap();
    assert_eq!(t.stream_rate(), Some(RateSource::Transcode(4_000_000)));
    let none: Session = serde_json::from_value(json!({"Id": "x", "NowPlayingItem": {}})).unwrap();
    assert_eq!(none.stream_rate(), None);
    // Rates beyond Jellyfin's int32 are bounded: their sum cannot overflow.
    let huge: Session = serde_json::from_value(json!({
        "Id": "x",
        "NowPlayingItem": {"MediaStreams": [
            {"Type": "Video", "BitRate": i64::MAX}, {"Type": "Audio", "BitRate": i64::MAX}
        ]}
    }))
    .unwrap();
    assert_eq!(
        huge.stream_rate(),
        Some(RateSource::MediaStreams(2 * i32::MAX as u64))
    );
}
