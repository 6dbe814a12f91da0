//! `[bandwidth]`: the link's upload, how it is shared (the algorithm and its settings), the
//! per-user floor and ceiling, and the [`Budget`] they make in bits/s.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ids::UserId;

use super::{
    BPS_PER_MBPS, ConfigError, DownloadersPolicy, MAX_JELLYFIN_LIMIT_BPS, MeterFile, MeterKind,
    MeterSettings, ScheduleEntry, Window, invalid, non_negative_finite, positive_finite,
};

/// Where `total_upload_mbps` comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sqm {
    /// The number in the file.
    #[default]
    Off,
    /// `"sqm"`, not read yet: nothing may plan with the stand-in number.
    Unread,
    /// `"sqm"`, read from the router.
    Read {
        /// What was read ("queue eth1 on pppoe-wan").
        queue: String,
    },
}

/// The stand-in `total_upload_mbps` while SQM's rate is not read.
pub(super) const SQM_UNREAD_MBPS: f64 = 1e6;

/// The allocation algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Max-min fair split among remote users.
    #[default]
    Equal,
    /// Weighted max-min split, weights from `[bandwidth.priority]`.
    Priority,
    /// Each user gets what their streams really use when it fits; the rest is split fairly.
    Demand,
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Equal => "equal",
            Algorithm::Priority => "priority",
            Algorithm::Demand => "demand",
        })
    }
}

/// `[bandwidth]`: the link and how it is shared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSettings {
    /// The upload capacity of the link, in Mbps (`"sqm"` in the file: read from the router's
    /// SQM queue, see [`BandwidthSettings::sqm`]).
    pub total_upload_mbps: f64,
    /// Whether the capacity comes from the router's SQM queue, and whether it was read.
    #[serde(skip)]
    pub sqm: Sqm,
    /// Kept free for everything else in the house (backups, calls), in Mbps.
    #[serde(default)]
    pub reserved_mbps: f64,
    /// `equal` (default), `priority` or `demand`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The lowest limit jellydemon writes for a user, in Mbps. Below ~1 Mbps video is unwatchable.
    #[serde(default = "default_min_per_user")]
    pub min_per_user_mbps: f64,
    /// The highest limit jellydemon writes for a user, in Mbps. Absent: no cap beyond the
    /// user's own original limit and the server-wide limit.
    #[serde(default)]
    pub max_per_user_mbps: Option<f64>,
    /// Whether a paused remote stream still claims a share.
    #[serde(default)]
    pub count_paused: bool,
    /// Limits are rounded down to a multiple of this step (Mbps), so that tiny changes in the
    /// inputs do not produce a new value to write.
    #[serde(default = "default_step")]
    pub step_mbps: f64,
    /// A new limit within this percentage of the current one is not written.
    #[serde(default = "default_hysteresis")]
    pub hysteresis_percent: f64,
    /// `[bandwidth.priority]`: weights for `algorithm = "priority"`.
    #[serde(default)]
    pub priority: PrioritySettings,
    /// `[bandwidth.demand]`: how demand is estimated.
    #[serde(default)]
    pub demand: DemandSettings,
    /// `[bandwidth.meter]` as written, until the load parses it into `meter`.
    #[serde(default, rename = "meter")]
    pub(super) meter_file: Option<MeterFile>,
    /// `[bandwidth.meter]`: the budget follows the link's measured upload. Absent: static.
    #[serde(skip)]
    pub meter: Option<MeterSettings>,
    /// `[[bandwidth.schedule]]` as written: times of the week with another total or reserve.
    #[serde(default)]
    pub schedule: Vec<ScheduleEntry>,
    /// `[[bandwidth.schedule]]` parsed at load, in the file's order.
    #[serde(skip)]
    pub windows: Vec<Window>,
    /// `[bandwidth.downloaders]`: how the `[[downloader]]` clients share the link.
    #[serde(default)]
    pub downloaders: DownloadersPolicy,
    /// The time zone of the schedule (`"Europe/Berlin"`); absent: the system's.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `timezone` found at load.
    #[serde(skip)]
    pub(super) zone: Option<jiff::tz::TimeZone>,
}

impl BandwidthSettings {
    /// The link's figures: positive, the reserve below the total, the floor under Jellyfin's
    /// maximum and the ceiling, the weights and the demand's overhead; `"sqm"` with a meter that
    /// can read it.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let b = self;
        if b.sqm != Sqm::Off
            && !matches!(
                b.meter.as_ref().map(MeterSettings::kind),
                Some(MeterKind::Openwrt | MeterKind::Interface)
            )
        {
            return Err(invalid(
                "bandwidth.total_upload_mbps",
                "\"sqm\" reads the rate the router shapes to: it needs [bandwidth.meter] kind = \
                 \"openwrt\" (SQM through rpcd) or \"interface\" (the cake qdisc of this \
                 gateway's device) (README.md, \"A budget that follows the link\")",
            ));
        }
        positive_finite("bandwidth.total_upload_mbps", b.total_upload_mbps)?;
        non_negative_finite("bandwidth.reserved_mbps", b.reserved_mbps)?;
        if mbps_to_bps(b.total_upload_mbps) <= mbps_to_bps(b.reserved_mbps) {
            return Err(invalid(
                "bandwidth.reserved_mbps",
                format!(
                    "must be less than total_upload_mbps ({} >= {}): the budget would be 0",
                    b.reserved_mbps, b.total_upload_mbps
                ),
            ));
        }
        positive_finite("bandwidth.min_per_user_mbps", b.min_per_user_mbps)?;
        let max_mbps = MAX_JELLYFIN_LIMIT_BPS as f64 / BPS_PER_MBPS;
        if b.min_per_user_mbps > max_mbps {
            return Err(invalid(
                "bandwidth.min_per_user_mbps",
                format!("Jellyfin cannot store more than {max_mbps} Mbps"),
            ));
        }
        if let Some(max) = b.max_per_user_mbps {
            positive_finite("bandwidth.max_per_user_mbps", max)?;
            if max < b.min_per_user_mbps {
                return Err(invalid(
                    "bandwidth.max_per_user_mbps",
                    format!(
                        "must be at least min_per_user_mbps ({max} < {})",
                        b.min_per_user_mbps
                    ),
                ));
            }
        }
        positive_finite("bandwidth.step_mbps", b.step_mbps)?;
        if mbps_to_bps(b.step_mbps) == 0 {
            return Err(invalid("bandwidth.step_mbps", "must be at least 1 bit/s"));
        }
        non_negative_finite("bandwidth.hysteresis_percent", b.hysteresis_percent)?;
        if b.hysteresis_percent >= 100.0 {
            return Err(invalid(
                "bandwidth.hysteresis_percent",
                "must be below 100 (at 100 no change would ever be written)",
            ));
        }
        positive_finite(
            "bandwidth.priority.default_weight",
            b.priority.default_weight,
        )?;
        positive_finite("bandwidth.priority.admin_weight", b.priority.admin_weight)?;
        for w in b.priority.users.values() {
            positive_finite("bandwidth.priority.users", *w)?;
        }
        positive_finite("bandwidth.demand.default_mbps", b.demand.default_mbps)?;
        if !(b.demand.overhead.is_finite() && b.demand.overhead >= 1.0) {
            return Err(invalid(
                "bandwidth.demand.overhead",
                format!("must be a number >= 1.0, got {}", b.demand.overhead),
            ));
        }
        Ok(())
    }
}

pub(super) fn default_min_per_user() -> f64 {
    2.0
}

pub(super) fn default_step() -> f64 {
    0.5
}

pub(super) fn default_hysteresis() -> f64 {
    5.0
}

/// `[bandwidth.priority]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrioritySettings {
    /// The weight of a user not listed in `users` and not an administrator.
    #[serde(default = "one")]
    pub default_weight: f64,
    /// The weight of an administrator not listed in `users`.
    #[serde(default = "one")]
    pub admin_weight: f64,
    /// Per-user weights by user name (case-insensitive).
    #[serde(default)]
    pub users: BTreeMap<String, f64>,
}

pub(super) fn one() -> f64 {
    1.0
}

impl Default for PrioritySettings {
    fn default() -> Self {
        PrioritySettings {
            default_weight: 1.0,
            admin_weight: 1.0,
            users: BTreeMap::new(),
        }
    }
}

impl PrioritySettings {
    /// The weight of a user, by name first, then by role.
    pub fn weight(&self, name: &str, is_admin: bool) -> f64 {
        self.users
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, w)| *w)
            .unwrap_or(if is_admin {
                self.admin_weight
            } else {
                self.default_weight
            })
    }
}

/// `[bandwidth.demand]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandSettings {
    /// The rate assumed for a stream whose bitrate Jellyfin does not report, in Mbps.
    #[serde(default = "default_demand")]
    pub default_mbps: f64,
    /// Demand = stream rate x overhead (container, audio, bursts).
    #[serde(default = "default_overhead")]
    pub overhead: f64,
}

pub(super) fn default_demand() -> f64 {
    8.0
}

pub(super) fn default_overhead() -> f64 {
    1.1
}

impl Default for DemandSettings {
    fn default() -> Self {
        DemandSettings {
            default_mbps: default_demand(),
            overhead: default_overhead(),
        }
    }
}

/// `[users]`: who is managed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// Users jellydemon never touches, by name (case-insensitive) or id. Everyone else with
    /// remote access enabled and not disabled is managed.
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl UserSettings {
    /// Whether the user is listed in `exclude` (by name, case-insensitive, or by id in any
    /// spelling).
    pub fn is_excluded(&self, id: &UserId, name: &str) -> bool {
        self.exclude
            .iter()
            .any(|e| e.eq_ignore_ascii_case(name) || *id == **e)
    }
}

/// The values the allocation works with, in integer bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `total_upload - reserved`.
    pub budget_bps: u64,
    /// `min_per_user`.
    pub min_per_user_bps: u64,
    /// `None`: no configured maximum.
    pub max_per_user_bps: Option<u64>,
    /// `step`.
    pub step_bps: u64,
}

/// Mbps from the file to integer bits/s, rounding to the nearest bit.
pub fn mbps_to_bps(mbps: f64) -> u64 {
    (mbps * BPS_PER_MBPS).round().max(0.0) as u64
}
