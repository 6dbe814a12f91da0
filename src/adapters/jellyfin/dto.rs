//! The few Jellyfin DTOs jellydemon reads. Jellyfin omits null properties, so every field is
//! optional or defaulted; unknown fields are ignored. The user policy is kept as raw JSON so a
//! read-modify-write keeps every field, known to us or not.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::core::media::RateSource;
use crate::core::media::{
    Account, Playback, Playing, Transcode, bounded, device_label, reported, source_rate,
};
use crate::ids::{DeviceId, DeviceName, SessionId, UserId, UserName, normalize_guid};

/// `GET /System/Info/Public`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PublicSystemInfo {
    /// The server's name, as set in the dashboard.
    pub server_name: Option<String>,
    /// Jellyfin's version, e.g. "10.10.7".
    pub version: Option<String>,
    /// The server's id.
    pub id: Option<String>,
    /// "Jellyfin Server" on a Jellyfin.
    pub product_name: Option<String>,
    /// Whether the set-up wizard has been completed.
    pub startup_wizard_completed: Option<bool>,
}

/// `GET /System/Configuration` (the parts we read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServerConfiguration {
    /// The server-wide remote limit (bits/s); 0 means none.
    pub remote_client_bitrate_limit: i64,
}

/// `GET /System/Configuration/encoding` (the parts we read): how Jellyfin transcodes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EncodingOptions {
    /// `none` (10.10 and later) or empty (10.9) for software, else `vaapi`, `qsv`, `nvenc`, …
    pub hardware_acceleration_type: Option<String>,
}

impl EncodingOptions {
    /// The hardware acceleration configured, lower-cased; `None`: software.
    pub fn hardware(&self) -> Option<String> {
        hardware_name(self.hardware_acceleration_type.as_deref())
    }
}

/// A `HardwareAccelerationType` lower-cased, `None` for software: empty (10.9's encoding
/// settings), `none` (10.10 and later) or absent.
fn hardware_name(value: Option<&str>) -> Option<String> {
    value
        .map(str::to_ascii_lowercase)
        .filter(|h| !h.is_empty() && h != "none")
}

/// `GET /System/Configuration/network` (the parts we read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkConfiguration {
    /// The LAN's ranges as configured in Jellyfin (empty: Jellyfin's defaults).
    pub local_network_subnets: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` Jellyfin trusts.
    pub known_proxies: Vec<String>,
}

/// `GET /Users` and `GET /Users/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    /// Normalized when parsed.
    pub id: UserId,
    /// The user's name.
    #[serde(default)]
    pub name: Option<UserName>,
    /// The whole policy as received, so that it can be posted back unchanged but for one field.
    #[serde(default)]
    pub policy: Option<Value>,
}

/// Emby's `GET /Users/Query` answer (`QueryResult_UserDto`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserQueryResult {
    /// The users of this page (jellydemon asks for all at once).
    #[serde(default)]
    pub items: Vec<User>,
}

impl User {
    fn policy_field(&self, key: &str) -> Option<&Value> {
        self.policy.as_ref().and_then(|p| p.get(key))
    }
    fn policy_bool(&self, key: &str) -> bool {
        self.policy_field(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    /// `Policy.RemoteClientBitrateLimit`, bits/s; absent counts as 0 ("server default").
    pub fn remote_limit(&self) -> i64 {
        self.policy_field("RemoteClientBitrateLimit")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
    /// `Policy.IsAdministrator`.
    pub fn is_admin(&self) -> bool {
        self.policy_bool("IsAdministrator")
    }
    /// `Policy.IsDisabled`.
    pub fn is_disabled(&self) -> bool {
        self.policy_bool("IsDisabled")
    }
    /// `Policy.EnableRemoteAccess`: may stream from outside the LAN.
    pub fn remote_access(&self) -> bool {
        self.policy_bool("EnableRemoteAccess")
    }
}

/// `GET /Sessions` element.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Session {
    /// The session's id (normalized when parsed).
    pub id: SessionId,
    /// As Jellyfin sends it: all zeros for a session without a user (see [`Session::user`]).
    pub user_id: Option<UserId>,
    /// The user's name (absent for a session without a user).
    pub user_name: Option<UserName>,
    /// Raw: classified by [`crate::network::classify`].
    pub remote_end_point: Option<String>,
    /// The client application, e.g. "Jellyfin Web".
    pub client: Option<String>,
    /// The device, e.g. "Firefox".
    pub device_name: Option<String>,
    /// The device's id.
    pub device_id: Option<DeviceId>,
    /// What it plays; absent when it plays nothing.
    pub now_playing_item: Option<NowPlayingItem>,
    /// Paused or not, how it plays, which audio track.
    pub play_state: Option<PlayState>,
    /// Present while Jellyfin transcodes for it.
    pub transcoding_info: Option<TranscodingInfo>,
    /// The remote-control commands the client accepts (`SetMaxStreamingBitrate`, …).
    pub supported_commands: Vec<String>,
    /// When the client was last active (ISO 8601).
    pub last_activity_date: Option<String>,
}

impl Session {
    /// The session's user, or `None` for a session without a user.
    pub fn user(&self) -> Option<&UserId> {
        self.user_id.as_ref().filter(|id| !id.is_nil())
    }
    /// Something is playing (paused or not).
    pub fn is_playing(&self) -> bool {
        self.now_playing_item.is_some()
    }
    /// Playback is paused.
    pub fn is_paused(&self) -> bool {
        self.play_state.as_ref().is_some_and(|p| p.is_paused)
    }
    /// Jellyfin transcodes the stream.
    pub fn is_transcoding(&self) -> bool {
        self.transcoding_info.is_some()
    }
    /// Jellyfin encodes the video (not a remux, not an audio-only transcode, not music): the
    /// kind of transcode that costs the server.
    pub fn transcodes_video(&self) -> bool {
        self.transcoding_info
            .as_ref()
            .is_some_and(TranscodingInfo::encodes_video)
            && self.source_video().is_some()
    }
    /// The source's video stream, when the item has one.
    pub fn source_video(&self) -> Option<&MediaStream> {
        self.now_playing_item
            .as_ref()?
            .media_streams
            .iter()
            .find(|s| {
                s.stream_type
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case("Video"))
            })
    }
    /// The source's video is 4K (wider than 2560 or taller than 1440 pixels): its transcode
    /// costs the server more than a 1080p one.
    pub fn source_is_4k(&self) -> bool {
        self.source_video().is_some_and(|v| {
            v.width.is_some_and(|w| w > 2560) || v.height.is_some_and(|h| h > 1440)
        })
    }
    /// The transcode is for a bitrate over a limit (or Jellyfin gives no reason): the source
    /// plays direct again under a limit at least its bitrate. A codec or container the client
    /// cannot play transcodes whatever the limit.
    pub fn transcode_for_bitrate(&self) -> bool {
        self.transcoding_info
            .as_ref()
            .is_none_or(|t| t.transcode_reasons.is_empty() || t.for_bitrate())
    }
    /// A video transcode that runs slower than its source plays (`Framerate` below the
    /// source's `RealFrameRate`, by more than 5 %): the server cannot keep up. `None` when
    /// Jellyfin reports either figure not.
    pub fn transcode_behind(&self) -> Option<bool> {
        if !self.transcodes_video() {
            return Some(false);
        }
        let fps = self
            .transcoding_info
            .as_ref()?
            .framerate
            .filter(|f| *f > 0.0)?;
        let source = self.source_video()?.real_frame_rate.filter(|f| *f > 0.0)?;
        Some(fps < source * 0.95)
    }
    /// The bitrate of what the session plays, as stored in the library: the video stream plus
    /// the selected audio stream (`PlayState.AudioStreamIndex`, else the default audio track,
    /// else the first), bits/s. `None` when Jellyfin reports neither. This is what the user
    /// would stream without a limit, whatever limit is in force.
    pub fn source_rate(&self) -> Option<u64> {
        let streams = &self.now_playing_item.as_ref()?.media_streams;
        let rate = |s: &MediaStream| reported(s.bit_rate);
        let of_type = |t: &'static str| {
            streams.iter().filter(move |s| {
                s.stream_type
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(t))
            })
        };
        let video = of_type("Video").find_map(rate);
        let selected = self.play_state.as_ref().and_then(|p| p.audio_stream_index);
        let audio = selected
            .and_then(|i| of_type("Audio").find(|s| s.index == Some(i)))
            .or_else(|| of_type("Audio").find(|s| s.is_default))
            .or_else(|| of_type("Audio").next())
            .and_then(rate);
        source_rate(video, audio)
    }
    /// The stream's current rate: the transcode's output bitrate while transcoding (bounded by
    /// the limit in force when it started), else the source rate, else `None` (unknown; never
    /// a guess that looks like data).
    pub fn stream_rate(&self) -> Option<RateSource> {
        if let Some(b) = self
            .transcoding_info
            .as_ref()
            .and_then(|t| t.bitrate)
            .filter(|b| *b > 0)
        {
            return Some(RateSource::Transcode(bounded(b)));
        }
        self.source_rate().map(RateSource::MediaStreams)
    }
    /// The id of the item playing, normalized, or "" when Jellyfin gives none.
    pub fn item_key(&self) -> String {
        self.now_playing_item
            .as_ref()
            .and_then(|i| i.id.as_deref())
            .map(normalize_guid)
            .unwrap_or_default()
    }
    /// The client accepts the remote-control `command`.
    pub fn supports(&self, command: &str) -> bool {
        self.supported_commands.iter().any(|c| c == command)
    }
    /// "client on device name", what the admin sees of the device.
    pub fn device_label(&self) -> DeviceName {
        device_label(self.client.as_deref(), self.device_name.as_deref())
    }
}

impl From<&User> for Account {
    fn from(u: &User) -> Account {
        Account {
            id: u.id.clone(),
            name: u.name.clone(),
            limit: u.remote_limit(),
            admin: u.is_admin(),
            disabled: u.is_disabled(),
            remote_access: u.remote_access(),
            server_limit: None,
            same_as: None,
        }
    }
}

impl From<&Session> for Playback {
    fn from(s: &Session) -> Playback {
        Playback {
            id: s.id.clone(),
            user_id: s.user().cloned(),
            user_name: s.user_name.clone(),
            endpoint: s.remote_end_point.clone(),
            device: s.device_label(),
            device_id: s.device_id.clone(),
            supports_push: s.supports(crate::core::media::PUSH_COMMAND),
            paused: s.is_paused(),
            playing: s.now_playing_item.as_ref().map(|item| Playing {
                item: s.item_key().into(),
                kind: item.item_type.clone(),
                source: s.source_rate(),
                rate: s.stream_rate(),
                video: s.source_video().is_some(),
                uhd: s.source_is_4k(),
                transcode: s.is_transcoding().then(|| Transcode {
                    video: s.transcodes_video(),
                    for_bitrate: s.transcode_for_bitrate(),
                    behind: s.transcode_behind(),
                }),
            }),
        }
    }
}

/// `Session.NowPlayingItem`: the item a session plays.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NowPlayingItem {
    /// The item's id.
    pub id: Option<String>,
    /// Its title.
    pub name: Option<String>,
    /// "Movie", "Episode", …
    #[serde(rename = "Type")]
    pub item_type: Option<String>,
    /// Its video, audio and subtitle streams.
    pub media_streams: Vec<MediaStream>,
}

/// One stream of an item.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MediaStream {
    /// "Video", "Audio", "Subtitle", …
    #[serde(rename = "Type")]
    pub stream_type: Option<String>,
    /// Its bitrate as stored in the library, bits/s.
    pub bit_rate: Option<i64>,
    /// The stream's index in the file, as `PlayState.AudioStreamIndex` refers to it.
    pub index: Option<i32>,
    /// The item's default track of its type.
    pub is_default: bool,
    /// A video stream's width, pixels.
    pub width: Option<i32>,
    /// A video stream's height, pixels.
    pub height: Option<i32>,
    /// A video stream's frames per second.
    pub real_frame_rate: Option<f32>,
}

/// `Session.PlayState`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlayState {
    /// Playback is paused.
    pub is_paused: bool,
    /// "DirectPlay", "DirectStream" or "Transcode".
    pub play_method: Option<String>,
    /// The audio track the client selected (an index into the item's media streams).
    pub audio_stream_index: Option<i32>,
}

/// `Session.TranscodingInfo`: present while Jellyfin transcodes (or remuxes). Every field is
/// in the specs of 10.9 to 12.0 (`tests/fixtures/openapi/`); `HardwareAccelerationType`
/// reads `VAAPI` in 10.9 and `vaapi` (or `none`) from 10.10 on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TranscodingInfo {
    /// The transcode's target bitrate, bits/s.
    pub bitrate: Option<i64>,
    /// The video codec transcoded to.
    pub video_codec: Option<String>,
    /// The video is copied, not encoded (a remux or an audio-only transcode).
    pub is_video_direct: Option<bool>,
    /// Why Jellyfin transcodes (`ContainerBitrateExceedsLimit`, `VideoCodecNotSupported`, …).
    pub transcode_reasons: Vec<String>,
    /// The output's width, pixels.
    pub width: Option<i32>,
    /// The output's height, pixels.
    pub height: Option<i32>,
    /// The encoder's hardware acceleration (`vaapi`, `qsv`, `nvenc`, …; `none` or absent:
    /// software).
    pub hardware_acceleration_type: Option<String>,
    /// The frames per second the transcode runs at now.
    pub framerate: Option<f32>,
}

impl TranscodingInfo {
    /// The video is encoded (not copied): the expensive kind of transcode. Jellyfin that
    /// omits `IsVideoDirect` is taken at its word that it transcodes.
    pub fn encodes_video(&self) -> bool {
        self.is_video_direct != Some(true)
    }

    /// Among the reasons, a bitrate over a limit: the kind jellydemon's limits cause.
    pub fn for_bitrate(&self) -> bool {
        self.transcode_reasons.iter().any(|r| {
            matches!(
                r.as_str(),
                "ContainerBitrateExceedsLimit" | "VideoBitrateNotSupported"
            )
        })
    }

    /// Hardware acceleration in use, lower-cased; `None` for software.
    pub fn hardware(&self) -> Option<String> {
        hardware_name(self.hardware_acceleration_type.as_deref())
    }
}
