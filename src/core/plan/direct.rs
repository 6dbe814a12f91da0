//! The transcode step (`[transcoding] capacity`): which active users get their whole demand
//! so that their streams play direct, and the server's transcodes the plan leaves.

use crate::core::HashSet;
use crate::core::allocate::Claimant;
use crate::core::media::Playback;
use crate::ids::SessionId;

use super::{Active, Context, TranscodeLoad, rule, transcode};

/// What the transcode step decided, for the reasons and warnings.
pub(super) struct Transcodes {
    pub(super) load: TranscodeLoad,
    /// Per active user: given its whole demand to play direct.
    pub(super) promoted: Vec<bool>,
    pub(super) videos: Vec<Vec<Option<transcode::Video>>>,
}

impl Transcodes {
    /// Stream `s` of active user `i` transcodes because its user's limit `target` is below
    /// its source.
    pub(super) fn forced(&self, i: usize, s: usize, target: u64) -> bool {
        forces_transcode(std::slice::from_ref(&self.videos[i][s]), target)
    }
}

/// Step 3b, with `[transcoding] capacity`: when the shares would leave more video transcodes
/// than the server runs, keep the streams with the smallest demand direct
/// ([`transcode::keep_direct`]). Returns the shares to plan with (`fair` and `share` as
/// they are without a capacity).
pub(super) fn keep_direct(
    cx: &Context,
    active: &[Active],
    claimants: &[Claimant],
    available: u64,
    fair: rule::FairShares,
    share: Vec<u64>,
) -> (rule::FairShares, Vec<u64>, Option<Transcodes>) {
    let learned = cx.memory.learned_capacity();
    let Some(capacity) = cx.settings.transcoding.capacity(learned) else {
        return (fair, share, None);
    };
    let push = cx.settings.daemon.push;
    // Per active user: the video of each stream, and what its streams hold whatever its
    // share (the floor of those a push lowers, the rate of the others).
    let (videos, kept): (Vec<Vec<Option<transcode::Video>>>, Vec<u64>) = active
        .iter()
        .map(|a| {
            let mut kept = 0;
            let videos = a
                .streams
                .iter()
                .zip(&a.watched)
                .map(|(s, w)| {
                    let obeys = w.uncontrolled.is_none();
                    kept += if push.down() && s.supports_push && obeys {
                        a.bounds.floor
                    } else {
                        w.rate
                    };
                    let rises = obeys && s.supports_push && push.up();
                    // The capacity is the `[jellyfin]` server's: another server's streams
                    // take none of it.
                    let here = !crate::ids::is_member_id(s.session_id.as_str());
                    Some(transcode::Video {
                        source: s.source.filter(|_| s.video && here)?,
                        uhd: s.uhd,
                        stuck: s.transcoding && !(rises && s.for_bitrate),
                        obeys,
                    })
                })
                .collect();
            (videos, kept)
        })
        .unzip();
    let ours: HashSet<&SessionId> = active
        .iter()
        .flat_map(|a| a.streams.iter().map(|s| &s.session_id))
        .collect();
    let mut fixed = transcode::Count::default();
    for s in running_transcodes(cx.snapshot.sessions).filter(|s| !ours.contains(&s.id)) {
        fixed.add(s.playing.as_ref().is_some_and(|p| p.uhd));
    }
    let demands: Vec<Vec<u64>> = active.iter().map(|a| a.demands.to_vec()).collect();
    let floors: Vec<u64> = active.iter().map(|a| a.bounds.floor).collect();
    let input = transcode::Input {
        algorithm: cx.settings.bandwidth.algorithm,
        claimants,
        demands: &demands,
        videos: &videos,
        floors: &floors,
        kept: &kept,
        available,
        fixed,
        capacity,
    };
    let out = transcode::keep_direct(&input, fair);
    (
        out.fair,
        out.share,
        Some(Transcodes {
            load: TranscodeLoad {
                capacity,
                count: out.count,
                beyond: out.beyond,
                kept_direct: out.promoted.iter().filter(|p| **p).count(),
            },
            promoted: out.promoted,
            videos,
        }),
    )
}

/// The sessions whose video the `[jellyfin]` server transcodes now (playing, not paused):
/// what takes its capacity (another `[[server]]`'s transcodes run on that server).
pub(super) fn running_transcodes(sessions: &[Playback]) -> impl Iterator<Item = &Playback> {
    sessions.iter().filter(|s| {
        s.is_playing()
            && !s.paused
            && s.transcodes_video()
            && !crate::ids::is_member_id(s.id.as_str())
    })
}

/// The video transcodes running now, whether one runs slower than its source, and whether
/// Jellyfin reported the frame rates of all.
pub(super) fn server_transcodes(sessions: &[Playback]) -> transcode::Sample {
    let running: Vec<Option<bool>> = running_transcodes(sessions)
        .map(|s| s.playing.as_ref()?.transcode?.behind)
        .collect();
    transcode::Sample {
        running: running.len() as u32,
        behind: running.contains(&Some(true)),
        measured: running.iter().all(Option::is_some),
    }
}

/// A limit of `target` makes one of these videos transcode (its client obeys, and it does not
/// transcode anyway).
pub(super) fn forces_transcode(videos: &[Option<transcode::Video>], target: u64) -> bool {
    videos
        .iter()
        .flatten()
        .any(|v| v.obeys && !v.stuck && target < v.source)
}
