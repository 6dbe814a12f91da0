//! The Emby dialect of the fake server ([`super::fake::FakeJellyfin::emby`]): what Emby Server
//! 4.8 does differently from Jellyfin, as `docs/media-servers.md` records it from Emby's own
//! API document.
//!
//! * the key is accepted in an `X-Emby-Token` header or an `api_key` query parameter, not in
//!   Jellyfin's `Authorization: MediaBrowser Token="…"` (which gets a 401 here, so a client
//!   that speaks the wrong dialect is seen at once);
//! * there is no `GET /Users` (404); `GET /Users/Query` lists the users as a query result
//!   (`Items`, `TotalRecordCount`) and, since the document does not say it carries each
//!   user's `Policy`, this fake leaves the policy out: a client must read `GET /Users/{id}`;
//! * the policy has Emby's fields (no `PasswordResetProviderId`, `SimultaneousStreamLimit`
//!   and others), still replaced whole by `POST /Users/{id}/Policy`;
//! * `TranscodingInfo` says `VideoEncoderIsHardware` and friends instead of
//!   `HardwareAccelerationType`;
//! * there is no `GET /System/Configuration/network` (404).

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

/// The product name Emby reports in `/System/Info`.
pub const PRODUCT_NAME: &str = "Emby Server";
/// The version a fresh fake Emby reports.
pub const VERSION: &str = "4.8.11.0";

/// Emby's policy for a new user, in its property order (the fields of `Users.UserPolicy` in
/// the 4.8 document; the values are this fake's, the document gives none).
const DEFAULT_POLICY: &str = r#"{
    "IsAdministrator": false,
    "IsHidden": false,
    "IsHiddenRemotely": false,
    "IsHiddenFromUnusedDevices": false,
    "IsDisabled": false,
    "AllowTagOrRating": false,
    "BlockedTags": [],
    "IsTagBlockingModeInclusive": false,
    "IncludeTags": [],
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
    "EnableContentDeletion": false,
    "RestrictedFeatures": [],
    "EnableContentDeletionFromFolders": [],
    "EnableContentDownloading": true,
    "EnableSubtitleDownloading": false,
    "EnableSubtitleManagement": false,
    "EnableSyncTranscoding": true,
    "EnableMediaConversion": true,
    "EnabledChannels": [],
    "EnableAllChannels": true,
    "EnabledFolders": [],
    "EnableAllFolders": true,
    "InvalidLoginAttemptCount": 0,
    "EnablePublicSharing": true,
    "RemoteClientBitrateLimit": 0,
    "AuthenticationProviderId": "Emby.Server.Implementations.Library.DefaultAuthenticationProvider",
    "ExcludedSubFolders": [],
    "SimultaneousStreamLimit": 0,
    "EnabledDevices": [],
    "EnableAllDevices": true,
    "AllowCameraUpload": true,
    "AllowSharingPersonalItems": false
}"#;

/// Emby's policy for a freshly created user.
pub fn default_user_policy() -> Value {
    serde_json::from_str(DEFAULT_POLICY).expect("valid JSON")
}

/// The key a request carries in Emby's way: the `X-Emby-Token` header, else the `api_key`
/// query parameter.
pub fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get("x-emby-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case("api_key").then(|| v.to_string())
    })
}

/// A user as `GET /Users/Query` lists it: the user without its policy.
pub fn listed_user(mut dto: Value) -> Value {
    if let Some(o) = dto.as_object_mut() {
        o.remove("Policy");
    }
    dto
}

/// `TranscodingInfo` in Emby's words: no `HardwareAccelerationType`, the hardware said per
/// direction instead.
pub fn transcoding_info(info: &mut Map<String, Value>, hardware: &str) {
    let hw = hardware != "none" && !hardware.is_empty();
    info.remove("HardwareAccelerationType");
    info.insert("VideoDecoderIsHardware".into(), json!(hw));
    info.insert("VideoEncoderIsHardware".into(), json!(hw));
    if hw {
        info.insert("VideoDecoderHwAccel".into(), json!(hardware.to_uppercase()));
        info.insert("VideoEncoderHwAccel".into(), json!(hardware.to_uppercase()));
    }
    info.insert("CurrentCpuUsage".into(), json!(12.5));
    info.insert("AverageCpuUsage".into(), json!(11.0));
    info.insert("CurrentThrottle".into(), json!(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(token(&h, Some("a=1&api_key=k1")), Some("k1".into()));
        assert_eq!(token(&h, Some("a=1")), None);
        h.insert("x-emby-token", "k2".parse().unwrap());
        assert_eq!(token(&h, None), Some("k2".into()));
        let mut jf = HeaderMap::new();
        jf.insert(
            "authorization",
            "MediaBrowser Token=\"k3\"".parse().unwrap(),
        );
        assert_eq!(token(&jf, None), None);
    }

    #[test]
    fn the_policy_is_embys() {
        let p = default_user_policy();
        assert_eq!(p["RemoteClientBitrateLimit"], 0);
        assert!(p.get("PasswordResetProviderId").is_none());
        assert!(p.get("SimultaneousStreamLimit").is_some());
    }
}
