//! What the pure core knows of a media server: its users ([`Account`]) and its sessions
//! ([`Playback`]), in the core's own terms. The adapters map into these: a Jellyfin or Emby
//! answer (`src/adapters/jellyfin/dto.rs`, each field derived once where it is read), a webhook's
//! start or stop (`Playback::start`, `Playback::stop`). The planner (`src/core/plan.rs`), the
//! history's plays and the engine's model read nothing else, so none of them decodes a
//! server's objects again.

use std::sync::Arc;

use crate::ids::{DeviceId, DeviceName, SessionId, UserId, UserName, normalize_guid};

/// The command that makes a client re-negotiate its stream under the user's current limit.
pub const PUSH_COMMAND: &str = "SetMaxStreamingBitrate";

/// What a user with no name is shown as.
pub const UNNAMED: &str = "(unnamed)";

/// Where a stream's rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSource {
    /// The transcode's output bitrate, bits/s.
    Transcode(u64),
    /// The item's own streams (direct play or stream), bits/s.
    MediaStreams(u64),
}

impl RateSource {
    /// The rate, bits/s.
    pub fn bps(self) -> u64 {
        match self {
            RateSource::Transcode(b) | RateSource::MediaStreams(b) => b,
        }
    }
}

/// A bitrate a server or a webhook reports, at most what Jellyfin's `int32` fields can hold: a
/// rate from a forged webhook or a broken server cannot overflow the sums of a plan.
pub fn bounded(bps: i64) -> u64 {
    bps.clamp(0, i64::from(i32::MAX)) as u64
}

/// A bitrate a server or a webhook reports, when above 0 ([`bounded`]); else unknown.
pub fn reported(bps: Option<i64>) -> Option<u64> {
    bps.filter(|b| *b > 0).map(bounded)
}

/// What an item streams at its source: its video's and its audio's bitrates together,
/// `None` when neither is known.
pub fn source_rate(video: Option<u64>, audio: Option<u64>) -> Option<u64> {
    match (video, audio) {
        (None, None) => None,
        (v, a) => Some(v.unwrap_or(0).saturating_add(a.unwrap_or(0))),
    }
}

/// "client on device name", what the admin sees of a device.
pub fn device_label(client: Option<&str>, device_name: Option<&str>) -> DeviceName {
    let client = client.unwrap_or("?");
    DeviceName::new(match device_name {
        Some(d) => format!("{client} on {d}"),
        None => client.to_string(),
    })
}

/// A user of a managed server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Normalized.
    pub id: UserId,
    /// The user's name.
    pub name: Option<UserName>,
    /// `Policy.RemoteClientBitrateLimit`, bits/s; 0 is "the server's default".
    pub limit: i64,
    /// `Policy.IsAdministrator`.
    pub admin: bool,
    /// `Policy.IsDisabled`.
    pub disabled: bool,
    /// `Policy.EnableRemoteAccess`: may stream from outside the LAN.
    pub remote_access: bool,
    /// The server-wide limit of the server this user is on when that is not the `[jellyfin]`
    /// one (`src/adapters/jellyfin/fleet.rs`); `None`: the `[jellyfin]` server's.
    pub server_limit: Option<i64>,
    /// The `[jellyfin]` server's user this one is the same person as
    /// (`[[server]] match_users_by_name`): one claimant whose limit is written on both.
    pub same_as: Option<UserId>,
}

impl Account {
    /// The user's name, or "(unnamed)".
    pub fn display_name(&self) -> UserName {
        self.name.clone().unwrap_or_else(|| UserName::new(UNNAMED))
    }
    /// [`Account::display_name`] without a copy, for comparisons; never to show (no alias).
    pub fn name_str(&self) -> &str {
        self.name.as_ref().map_or(UNNAMED, |n| n.as_str())
    }
}

/// A session of a managed server.
#[derive(Debug, Clone, PartialEq)]
pub struct Playback {
    /// Normalized.
    pub id: SessionId,
    /// Its user; `None` for a session without one (Jellyfin's all-zero id).
    pub user_id: Option<UserId>,
    /// The user's name.
    pub user_name: Option<UserName>,
    /// Raw: classified by `crate::network::classify`.
    pub endpoint: Option<String>,
    /// "client on device".
    pub device: DeviceName,
    /// The device's id.
    pub device_id: Option<DeviceId>,
    /// The client accepts `SetMaxStreamingBitrate` (it can be pushed).
    pub supports_push: bool,
    /// Playback is paused (kept when the item stops, as the server does).
    pub paused: bool,
    /// What it plays; `None` when it plays nothing.
    pub playing: Option<Playing>,
}

/// What a session plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Playing {
    /// The item's id, normalized; "" when the server gives none.
    pub item: Arc<str>,
    /// "Movie", "Episode", … when known.
    pub kind: Option<String>,
    /// The item's bitrate as stored in the library (video plus the selected audio), bits/s:
    /// what the user would stream without a limit. `None` when unknown.
    pub source: Option<u64>,
    /// The rate it streams at now: the transcode's output, else the source. `None` when
    /// unknown (never a guess that looks like data).
    pub rate: Option<RateSource>,
    /// The item has a video stream.
    pub video: bool,
    /// Its video is 4K (wider than 2560 or taller than 1440 pixels).
    pub uhd: bool,
    /// Present while the server transcodes it.
    pub transcode: Option<Transcode>,
}

/// A running transcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcode {
    /// It encodes the item's video (not a remux, not audio only): the kind that costs the
    /// server.
    pub video: bool,
    /// It is for a bitrate over a limit (or the server gives no reason): the source plays
    /// direct again under a limit at least its bitrate.
    pub for_bitrate: bool,
    /// It runs slower than the source plays (by more than 5 %); `None` when unknown.
    pub behind: Option<bool>,
}

impl Playback {
    /// Something plays (paused or not).
    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }
    /// The stream's current rate, `None` when it plays nothing or the rate is unknown.
    pub fn rate(&self) -> Option<RateSource> {
        self.playing.as_ref().and_then(|p| p.rate)
    }
    /// The server encodes its video now.
    pub fn transcodes_video(&self) -> bool {
        self.playing
            .as_ref()
            .and_then(|p| p.transcode)
            .is_some_and(|t| t.video)
    }

    /// A webhook's PlaybackStart, in place of what the session played: `item` (its id as the
    /// webhook gives it), the source's video and audio bitrates, paused or not. The server
    /// has not said yet whether it transcodes: the next read will.
    pub fn start(
        &mut self,
        item: Option<&str>,
        video_bitrate: Option<i64>,
        audio_bitrate: Option<i64>,
        paused: bool,
    ) {
        let source = source_rate(reported(video_bitrate), reported(audio_bitrate));
        self.paused = paused;
        self.playing = Some(Playing {
            item: item.map(normalize_guid).unwrap_or_default().into(),
            kind: None,
            source,
            rate: source.map(RateSource::MediaStreams),
            video: video_bitrate.is_some(),
            uhd: false,
            transcode: None,
        });
    }

    /// A webhook's PlaybackStop: it plays nothing.
    pub fn stop(&mut self) {
        self.playing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Playback {
        Playback {
            id: SessionId::new("s1"),
            user_id: Some(UserId::new("u1")),
            user_name: None,
            endpoint: None,
            device: device_label(Some("Jellyfin Web"), Some("Firefox")),
            device_id: None,
            supports_push: true,
            paused: false,
            playing: None,
        }
    }

    #[test]
    fn a_webhook_start_counts_the_source_it_names() {
        let mut p = idle();
        p.start(Some("AB-CD"), Some(8_000_000), Some(192_000), false);
        let now = p.playing.as_ref().unwrap();
        assert_eq!(&*now.item, "abcd");
        assert_eq!(now.source, Some(8_192_000));
        assert_eq!(p.rate(), Some(RateSource::MediaStreams(8_192_000)));
        assert!(now.video && now.transcode.is_none());
        p.start(None, None, Some(0), true);
        assert_eq!(p.rate(), None, "no bitrate above 0: unknown");
        assert!(!p.playing.as_ref().unwrap().video && p.paused);
        p.start(None, Some(i64::MAX), Some(i64::MAX), false);
        assert_eq!(p.rate().unwrap().bps(), 2 * i32::MAX as u64, "bounded");
        p.stop();
        assert!(!p.is_playing() && p.rate().is_none());
    }

    #[test]
    fn a_device_is_its_client_on_its_name() {
        assert_eq!(
            device_label(Some("Infuse"), Some("TV")).as_str(),
            "Infuse on TV"
        );
        assert_eq!(device_label(Some("Infuse"), None).as_str(), "Infuse");
        assert_eq!(device_label(None, None).as_str(), "?");
    }
}
