//! `[transcoding]`: how many video transcodes the Jellyfin server runs at once in real time, so
//! the planner never forces one beyond that (`src/core/plan/transcode.rs`).

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[transcoding]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TranscodingSettings {
    /// How many video transcodes the server sustains at once in real time (a 1080p source),
    /// or `"auto"`: learned from the transcodes that fall behind. Unset: nobody knows, and
    /// limits are set without regard to transcoding. 0: the server cannot transcode video in
    /// real time at all.
    #[serde(default)]
    pub capacity: Option<CapacitySetting>,
    /// How many transcodes of a 4K source it sustains at once (at most `capacity`): one costs
    /// `capacity / capacity_4k` of the server. Unset: a 4K transcode costs what a 1080p one
    /// does.
    #[serde(default)]
    pub capacity_4k: Option<u32>,
}

/// `capacity`: a number, or learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawCapacity")]
pub enum CapacitySetting {
    /// This many at once.
    Streams(u32),
    /// Learned (`"auto"`).
    Auto,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCapacity {
    Number(u32),
    Word(String),
}

impl TryFrom<RawCapacity> for CapacitySetting {
    type Error = String;
    fn try_from(raw: RawCapacity) -> Result<Self, String> {
        match raw {
            RawCapacity::Number(n) => Ok(CapacitySetting::Streams(n)),
            RawCapacity::Word(w) if w.eq_ignore_ascii_case("auto") => Ok(CapacitySetting::Auto),
            RawCapacity::Word(w) => Err(format!(
                "{w:?} is neither a number of transcodes nor \"auto\""
            )),
        }
    }
}

impl TranscodingSettings {
    /// The capacity in force, `None` when none is configured or `"auto"` has learned none
    /// yet (`learned`).
    pub fn capacity(&self, learned: Option<u32>) -> Option<Capacity> {
        let hd = match self.capacity? {
            CapacitySetting::Streams(n) => n,
            CapacitySetting::Auto => learned?,
        };
        Some(Capacity {
            hd,
            uhd: self.capacity_4k.unwrap_or(hd),
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let hd = match self.capacity {
            Some(CapacitySetting::Streams(n)) => Some(n),
            _ => None,
        };
        match (self.capacity, hd, self.capacity_4k) {
            (None, _, Some(_)) => Err(invalid(
                "transcoding.capacity_4k",
                "needs transcoding.capacity, the number of 1080p transcodes the server runs at \
                 once",
            )),
            (Some(CapacitySetting::Auto), _, Some(_)) => Err(invalid(
                "transcoding.capacity_4k",
                "needs a number as transcoding.capacity: with capacity = \"auto\" every video \
                 transcode counts alike",
            )),
            (_, Some(hd), Some(uhd)) if uhd > hd => Err(invalid(
                "transcoding.capacity_4k",
                format!(
                    "{uhd} is more than capacity = {hd}: a 4K transcode costs at least what a \
                     1080p one does"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// What the server transcodes at once in real time: `hd` transcodes of 1080p (or smaller)
/// sources, or `uhd` of 4K sources, or a mix in proportion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// 1080p transcodes at once.
    pub hd: u32,
    /// 4K transcodes at once (at most `hd`).
    pub uhd: u32,
}

impl Capacity {
    /// The part of the server that `hd` 1080p and `uhd` 4K transcodes take: at most 1.0 runs
    /// in real time. A transcode the server cannot run at all counts as the whole server.
    pub fn load(&self, hd: u32, uhd: u32) -> f64 {
        let part = |n: u32, of: u32| match (n, of) {
            (0, _) => 0.0,
            (n, 0) => f64::from(n),
            (n, of) => f64::from(n) / f64::from(of),
        };
        part(hd, self.hd) + part(uhd, self.uhd)
    }

    /// `hd` 1080p and `uhd` 4K transcodes run in real time together.
    pub fn fits(&self, hd: u32, uhd: u32) -> bool {
        let (hd_ok, uhd_ok) = (hd == 0 || self.hd > 0, uhd == 0 || self.uhd > 0);
        hd_ok && uhd_ok && self.load(hd, uhd) <= 1.0 + 1e-9
    }

    /// "1 stream at most", "2 streams at most (1 of 4K)", "no video transcode".
    pub fn describe(&self) -> String {
        if self.hd == 0 {
            return "no video transcode".into();
        }
        let s = if self.hd == 1 { "" } else { "s" };
        if self.uhd == self.hd {
            format!("{} stream{s} at most", self.hd)
        } else {
            format!("{} stream{s} at most ({} of 4K)", self.hd, self.uhd)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_4k_transcode_costs_its_part_of_the_server() {
        let c = Capacity { hd: 2, uhd: 1 };
        assert!(c.fits(2, 0));
        assert!(c.fits(0, 1));
        assert!(!c.fits(1, 1));
        assert!(!c.fits(3, 0));
        assert_eq!(c.load(1, 0), 0.5);
        let none = Capacity { hd: 0, uhd: 0 };
        assert!(none.fits(0, 0));
        assert!(!none.fits(1, 0));
        assert!(none.load(2, 0) > none.load(1, 0));
        let no_4k = Capacity { hd: 3, uhd: 0 };
        assert!(no_4k.fits(3, 0));
        assert!(!no_4k.fits(0, 1));
        assert_eq!(c.describe(), "2 streams at most (1 of 4K)");
        assert_eq!(Capacity { hd: 1, uhd: 1 }.describe(), "1 stream at most");
    }
}
