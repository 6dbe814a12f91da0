//! `[bandwidth.meter]` and `[[bandwidth.schedule]]`, parsed: where the WAN's upload byte
//! counter is read and how the budget follows it (the rules are in `src/adapters/budget/estimate.rs`),
//! and the times of the week with another total or reserve (`src/adapters/budget/schedule.rs`).

use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use serde::Deserialize;

use jiff::civil::{Time, Weekday};

use super::{ConfigError, Secret, invalid, mbps_to_bps, resolve};

/// Which meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterKind {
    /// SNMP v2c `ifHCOutOctets` of the interface named `interface` (`ifName`).
    Snmp,
    /// OpenWrt's rpcd over HTTP (`/ubus`): `network.interface.<interface>` status, then the
    /// device's `statistics.tx_bytes`.
    Openwrt,
    /// `/sys/class/net/<interface>/statistics/tx_bytes`, when jellydemon runs on the gateway.
    Interface,
}

impl MeterKind {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            MeterKind::Snmp => "snmp",
            MeterKind::Openwrt => "openwrt",
            MeterKind::Interface => "interface",
        }
    }
}

/// `[bandwidth.meter]`, parsed: where the counter is read, with what that kind needs, and
/// how the budget follows it.
#[derive(Debug)]
pub struct MeterSettings {
    /// The kind, with its address and login.
    pub source: MeterSource,
    /// The WAN interface: its `ifName` (snmp), the logical interface such as `wan` (openwrt),
    /// or the network device such as `eth0` or `pppoe-wan` (interface).
    pub interface: String,
    /// How often the counter is read.
    pub interval: Duration,
    /// Upper bound for one read (snmp, openwrt).
    pub timeout: Duration,
    /// The budget never goes below this, in Mbps (default: a quarter of the static budget).
    pub min_budget_mbps: Option<f64>,
    /// The budget changes only by at least this much, in Mbps.
    pub step_mbps: f64,
    /// How fast a rise of the other traffic is followed.
    pub rise: Duration,
    /// How slowly a fall is followed.
    pub fall: Duration,
    /// The window over which the high quantile of the other traffic is taken.
    pub window: Duration,
    /// The quantile, in percent.
    pub quantile_percent: f64,
    /// Failed reads in a row before the static budget applies again.
    pub fail_after: u32,
    /// openwrt, with `total_upload_mbps = "sqm"`: how often the SQM queue's upload rate is
    /// read again.
    pub sqm_interval: Duration,
}

/// Where a meter reads the counter, with what each kind needs.
#[derive(Debug)]
pub enum MeterSource {
    /// SNMP v2c.
    Snmp {
        /// The agent, `host` or `host:port` (port 161 by default).
        host: String,
        /// The v2c community.
        community: Secret,
    },
    /// OpenWrt's rpcd.
    Openwrt {
        /// rpcd's endpoint, e.g. `http://192.168.1.1/ubus` (an http(s) URL).
        url: String,
        /// The rpcd login.
        username: String,
        /// Its password.
        password: Secret,
    },
    /// This machine's network device.
    Interface,
}

impl MeterSettings {
    /// Which kind.
    pub fn kind(&self) -> MeterKind {
        match self.source {
            MeterSource::Snmp { .. } => MeterKind::Snmp,
            MeterSource::Openwrt { .. } => MeterKind::Openwrt,
            MeterSource::Interface => MeterKind::Interface,
        }
    }
}

/// `[bandwidth.meter]` as the file gives it: one flat table whose keys depend on `kind`,
/// parsed by [`MeterFile::parse`] at load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MeterFile {
    kind: MeterKind,
    interface: String,
    #[serde(default = "default_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    community: Option<Secret>,
    #[serde(default)]
    community_file: Option<RelativePathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<RelativePathBuf>,
    #[serde(default)]
    min_budget_mbps: Option<f64>,
    #[serde(default = "default_step")]
    step_mbps: f64,
    #[serde(default = "default_rise", with = "humantime_serde")]
    rise: Duration,
    #[serde(default = "default_fall", with = "humantime_serde")]
    fall: Duration,
    #[serde(default = "default_window", with = "humantime_serde")]
    window: Duration,
    #[serde(default = "default_quantile")]
    quantile_percent: f64,
    #[serde(default = "default_fail_after")]
    fail_after: u32,
    #[serde(default = "default_sqm_interval", with = "humantime_serde")]
    sqm_interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_step() -> f64 {
    2.0
}
fn default_rise() -> Duration {
    Duration::from_secs(5)
}
fn default_fall() -> Duration {
    Duration::from_secs(60)
}
fn default_window() -> Duration {
    Duration::from_secs(60)
}
fn default_quantile() -> f64 {
    90.0
}
fn default_fail_after() -> u32 {
    3
}
fn default_sqm_interval() -> Duration {
    Duration::from_secs(600)
}

impl MeterFile {
    /// The meter: each kind has what it needs and nothing of another kind's, its secret read
    /// (once, here), every figure in range.
    pub(super) fn parse(mut self) -> Result<MeterSettings, ConfigError> {
        self.check_keys()?;
        let source = self.source()?;
        self.check_figures()?;
        Ok(MeterSettings {
            source,
            interface: self.interface,
            interval: self.interval,
            timeout: self.timeout,
            min_budget_mbps: self.min_budget_mbps,
            step_mbps: self.step_mbps,
            rise: self.rise,
            fall: self.fall,
            window: self.window,
            quantile_percent: self.quantile_percent,
            fail_after: self.fail_after,
            sqm_interval: self.sqm_interval,
        })
    }

    /// The interface is a name, and no key of another kind is set, nor a secret twice.
    fn check_keys(&self) -> Result<(), ConfigError> {
        let kind = self.kind.as_str();
        if self.interface.trim().is_empty() {
            return Err(invalid("bandwidth.meter.interface", "is empty"));
        }
        if self.kind == MeterKind::Interface
            && (self.interface.contains('/') || self.interface.starts_with('.'))
        {
            return Err(invalid(
                "bandwidth.meter.interface",
                format!("\"{}\" is not a network device name", self.interface),
            ));
        }
        let has = |present: bool, key: &'static str, kinds: &str| {
            if present && !kinds.split(',').any(|k| k == kind) {
                Err(invalid(
                    key,
                    format!("is for kind = {kinds}, not kind = \"{kind}\""),
                ))
            } else {
                Ok(())
            }
        };
        has(self.host.is_some(), "bandwidth.meter.host", "snmp")?;
        has(
            self.community.is_some(),
            "bandwidth.meter.community",
            "snmp",
        )?;
        has(
            self.community_file.is_some(),
            "bandwidth.meter.community_file",
            "snmp",
        )?;
        has(self.url.is_some(), "bandwidth.meter.url", "openwrt")?;
        has(
            self.username.is_some(),
            "bandwidth.meter.username",
            "openwrt",
        )?;
        has(
            self.password.is_some(),
            "bandwidth.meter.password",
            "openwrt",
        )?;
        has(
            self.password_file.is_some(),
            "bandwidth.meter.password_file",
            "openwrt",
        )?;
        let both = |a: bool, b: bool, key: &'static str, what: &str| {
            if a && b {
                Err(invalid(key, format!("set either {what}, not both")))
            } else {
                Ok(())
            }
        };
        both(
            self.community.is_some(),
            self.community_file.is_some(),
            "bandwidth.meter.community",
            "community or community_file",
        )?;
        both(
            self.password.is_some(),
            self.password_file.is_some(),
            "bandwidth.meter.password",
            "password or password_file",
        )?;
        Ok(())
    }

    /// Where the counter is read, with what the kind needs (its secret read here).
    fn source(&mut self) -> Result<MeterSource, ConfigError> {
        Ok(match self.kind {
            MeterKind::Snmp => MeterSource::Snmp {
                host: self
                    .host
                    .take()
                    .filter(|h| !h.trim().is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "bandwidth.meter.host",
                            "missing: the SNMP agent, e.g. \"192.168.1.1\"",
                        )
                    })?,
                community: {
                    resolve(
                        &mut self.community,
                        &self.community_file,
                        "bandwidth.meter.community_file",
                    )?;
                    self.community.take().ok_or_else(|| {
                        invalid(
                            "bandwidth.meter.community",
                            "missing: set community or community_file",
                        )
                    })?
                },
            },
            MeterKind::Openwrt => MeterSource::Openwrt {
                url: self
                    .url
                    .take()
                    .filter(|u| {
                        url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
                    })
                    .ok_or_else(|| {
                        invalid(
                            "bandwidth.meter.url",
                            "missing or not an http(s) URL: rpcd's endpoint, e.g. \
                             \"http://192.168.1.1/ubus\"",
                        )
                    })?,
                username: self
                    .username
                    .take()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| invalid("bandwidth.meter.username", "missing"))?,
                password: {
                    resolve(
                        &mut self.password,
                        &self.password_file,
                        "bandwidth.meter.password_file",
                    )?;
                    self.password.take().ok_or_else(|| {
                        invalid(
                            "bandwidth.meter.password",
                            "missing: set password or password_file",
                        )
                    })?
                },
            },
            MeterKind::Interface => MeterSource::Interface,
        })
    }

    /// Every duration, step, bound and count in range.
    fn check_figures(&self) -> Result<(), ConfigError> {
        for (key, d) in [
            ("bandwidth.meter.interval", self.interval),
            ("bandwidth.meter.timeout", self.timeout),
            ("bandwidth.meter.rise", self.rise),
            ("bandwidth.meter.fall", self.fall),
            ("bandwidth.meter.window", self.window),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.interval < Duration::from_millis(500) {
            return Err(invalid(
                "bandwidth.meter.interval",
                "must be at least 500ms",
            ));
        }
        if !(self.step_mbps.is_finite() && self.step_mbps >= 0.0) {
            return Err(invalid(
                "bandwidth.meter.step_mbps",
                "must be a number >= 0",
            ));
        }
        if let Some(m) = self.min_budget_mbps
            && !(m.is_finite() && m > 0.0)
        {
            return Err(invalid(
                "bandwidth.meter.min_budget_mbps",
                "must be a number > 0",
            ));
        }
        if !(self.quantile_percent > 0.0 && self.quantile_percent <= 100.0) {
            return Err(invalid(
                "bandwidth.meter.quantile_percent",
                "must be above 0 and at most 100",
            ));
        }
        if self.fail_after == 0 {
            return Err(invalid("bandwidth.meter.fail_after", "must be at least 1"));
        }
        Ok(())
    }
}

/// `[[bandwidth.schedule]]`: one entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// For logs and the status page ("working hours").
    #[serde(default)]
    pub name: Option<String>,
    /// `["mon", "tue"]`, `["weekdays"]`, `["weekends"]`; absent: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local start time, `"08:00"`.
    pub from: String,
    /// Local end time, `"18:00"` (at or before `from`: the next day).
    pub to: String,
    /// `total_upload_mbps` while it is in force.
    #[serde(default)]
    pub total_upload_mbps: Option<f64>,
    /// `reserved_mbps` while it is in force.
    #[serde(default)]
    pub reserved_mbps: Option<f64>,
}

impl ScheduleEntry {
    /// The entry parsed, `n` its position (from 1) for its default name and messages.
    pub fn window(&self, n: usize, total: f64, reserved: f64) -> Result<Window, ConfigError> {
        let key = "bandwidth.schedule";
        let at = |what: String| invalid(key, format!("entry {n}: {what}"));
        let w = Window {
            name: self
                .name
                .clone()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| format!("schedule entry {n}")),
            days: parse_days(&self.days).map_err(at)?,
            from: parse_time(&self.from).map_err(|e| at(format!("from: {e}")))?,
            to: parse_time(&self.to).map_err(|e| at(format!("to: {e}")))?,
            total_upload_mbps: self.total_upload_mbps,
            reserved_mbps: self.reserved_mbps,
        };
        if w.total_upload_mbps.is_none() && w.reserved_mbps.is_none() {
            return Err(at(
                "sets neither total_upload_mbps nor reserved_mbps, so it changes nothing".into(),
            ));
        }
        let t = w.total_upload_mbps.unwrap_or(total);
        let r = w.reserved_mbps.unwrap_or(reserved);
        if !(t.is_finite() && t > 0.0) {
            return Err(at(format!(
                "total_upload_mbps must be a number > 0, got {t}"
            )));
        }
        if !(r.is_finite() && r >= 0.0) {
            return Err(at(format!("reserved_mbps must be a number >= 0, got {r}")));
        }
        if mbps_to_bps(t) <= mbps_to_bps(r) {
            return Err(at(format!(
                "while it is in force, reserved_mbps ({r}) leaves nothing of total_upload_mbps \
                 ({t})"
            )));
        }
        Ok(w)
    }
}

/// One entry, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Its name, for logs ("working hours"; else "schedule entry N").
    pub name: String,
    /// Monday first.
    pub days: [bool; 7],
    /// When it starts, local time.
    pub from: Time,
    /// When it ends, local time (at or before `from`: the next day).
    pub to: Time,
    /// `total_upload_mbps` while it is in force.
    pub total_upload_mbps: Option<f64>,
    /// `reserved_mbps` while it is in force.
    pub reserved_mbps: Option<f64>,
}

impl Window {
    /// In force on `day` (the day a range starts).
    pub fn on(&self, day: Weekday) -> bool {
        self.days[day.to_monday_zero_offset() as usize]
    }
    /// Runs past midnight.
    pub fn wraps(&self) -> bool {
        self.to <= self.from
    }
}

/// `"mon"`, `"Monday"`, … and the groups `"weekdays"`, `"weekends"`, `"daily"`.
pub fn parse_days(names: &[String]) -> Result<[bool; 7], String> {
    if names.is_empty() {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for n in names {
        let n = n.trim().to_ascii_lowercase();
        let set: &[usize] = match n.as_str() {
            "daily" | "every day" | "all" => &[0, 1, 2, 3, 4, 5, 6],
            "weekdays" => &[0, 1, 2, 3, 4],
            "weekends" | "weekend" => &[5, 6],
            _ => {
                let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .iter()
                    .position(|d| n.len() >= 3 && n.starts_with(d))
                    .filter(|&i| {
                        let full = [
                            "monday",
                            "tuesday",
                            "wednesday",
                            "thursday",
                            "friday",
                            "saturday",
                            "sunday",
                        ][i];
                        full.starts_with(&n) || n == "tues" || n == "thur" || n == "thurs"
                    })
                    .ok_or_else(|| {
                        format!(
                            "\"{n}\" is not a day: use mon, tue, wed, thu, fri, sat, sun, \
                             weekdays, weekends or daily"
                        )
                    })?;
                days[i] = true;
                continue;
            }
        };
        for &i in set {
            days[i] = true;
        }
    }
    Ok(days)
}

/// `"08:00"`, `"8:30"`, `"23:59"`, `"24:00"` (the end of the day, as 00:00 of the next), or
/// with seconds, `"08:00:30"`.
pub fn parse_time(s: &str) -> Result<Time, String> {
    let bad = || format!("\"{s}\" is not a time of day such as \"08:00\" or \"22:30\"");
    let parts: Vec<&str> = s.trim().split(':').collect();
    let num = |p: &str| -> Result<i8, String> {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (num(h)?, num(m)?, 0),
        [h, m, sec] => (num(h)?, num(m)?, num(sec)?),
        _ => return Err(bad()),
    };
    if (h, m, sec) == (24, 0, 0) {
        return Ok(Time::midnight());
    }
    Time::new(h, m, sec, 0).map_err(|_| bad())
}
