//! `[[bandwidth.schedule]]`: days and a local time range that override `total_upload_mbps`
//! and/or `reserved_mbps` (working hours with video calls, a nightly backup). Pure: an instant
//! in, the entry in force and the next instant something changes out.
//!
//! Times are civil times in the configured zone (`bandwidth.timezone`, else the system's),
//! read with the time-zone database, so a daylight-saving change is handled as the clock on
//! the wall shows it: a range from 08:00 to 18:00 lasts ten hours of wall time on the day the
//! clocks change too. A time that does not exist that day (in the spring gap) starts when the
//! clock reaches it after the jump; one that happens twice (in the autumn fold) starts at its
//! first occurrence. A range whose end is not after its start runs past midnight (22:00 to
//! 06:00), and belongs to the day it starts on. The first entry in force wins.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

pub use crate::config::{Window, parse_days, parse_time};

/// The schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    windows: Vec<Window>,
    tz: TimeZone,
}

impl Schedule {
    /// `windows` in `tz`.
    pub fn new(windows: Vec<Window>, tz: TimeZone) -> Schedule {
        Schedule { windows, tz }
    }

    /// The time zone its times are in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The entry in force at `at`, if any (the first that matches).
    pub fn active(&self, at: Timestamp) -> Option<&Window> {
        let dt = self.tz.to_datetime(at);
        let (day, time) = (dt.date(), dt.time());
        let yesterday = day.yesterday().ok();
        self.windows.iter().find(|w| {
            if w.wraps() {
                (w.on(day.weekday()) && time >= w.from)
                    || (yesterday.is_some_and(|y| w.on(y.weekday())) && time < w.to)
            } else {
                w.on(day.weekday()) && w.from <= time && time < w.to
            }
        })
    }

    /// `(total_upload_mbps, reserved_mbps)` at `at`: the entry's where it sets them, else
    /// the configuration's.
    pub fn base(&self, at: Timestamp, total: f64, reserved: f64) -> (f64, f64, Option<&str>) {
        match self.active(at) {
            Some(w) => (
                w.total_upload_mbps.unwrap_or(total),
                w.reserved_mbps.unwrap_or(reserved),
                Some(w.name.as_str()),
            ),
            None => (total, reserved, None),
        }
    }

    /// The first start or end of an entry strictly after `at` (within the next eight days).
    pub fn next_change(&self, at: Timestamp) -> Option<Timestamp> {
        let today = self.tz.to_datetime(at).date();
        let mut best: Option<Timestamp> = None;
        for offset in -1..=8i64 {
            let Some(day) = add_days(today, offset) else {
                continue;
            };
            for w in self.windows.iter().filter(|w| w.on(day.weekday())) {
                let end_day = if w.wraps() {
                    add_days(day, 1)
                } else {
                    Some(day)
                };
                let edges = [
                    Some(day.to_datetime(w.from)),
                    end_day.map(|d| d.to_datetime(w.to)),
                ];
                for edge in edges.into_iter().flatten() {
                    if let Some(ts) = self.instant(edge)
                        && ts > at
                        && best.is_none_or(|b| ts < b)
                    {
                        best = Some(ts);
                    }
                }
            }
        }
        best
    }

    /// The instant a wall-clock time happens: in a gap, when the clock reaches it after the
    /// jump; in a fold, its first occurrence.
    fn instant(&self, dt: DateTime) -> Option<Timestamp> {
        self.tz.to_timestamp(dt).ok()
    }
}

/// The schedule of `settings`, or `None` without `[[bandwidth.schedule]]`.
pub fn from_settings(settings: &crate::config::Settings) -> Option<Schedule> {
    settings
        .schedule_windows()
        .map(|(windows, tz)| Schedule::new(windows, tz))
}

fn add_days(d: Date, n: i64) -> Option<Date> {
    d.checked_add(jiff::Span::new().days(n)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Time;

    fn window(days: &[&str], from: &str, to: &str) -> Window {
        Window {
            name: "w".into(),
            days: parse_days(&days.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap(),
            from: parse_time(from).unwrap(),
            to: parse_time(to).unwrap(),
            total_upload_mbps: None,
            reserved_mbps: Some(30.0),
        }
    }

    fn berlin(windows: Vec<Window>) -> Schedule {
        Schedule::new(windows, TimeZone::get("Europe/Berlin").unwrap())
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn days_and_times_parse_and_bad_ones_say_why() {
        assert_eq!(parse_days(&[]).unwrap(), [true; 7]);
        assert_eq!(
            parse_days(&["weekdays".into()]).unwrap(),
            [true, true, true, true, true, false, false]
        );
        assert_eq!(
            parse_days(&["Sat".into(), "sunday".into()]).unwrap(),
            [false, false, false, false, false, true, true]
        );
        assert!(
            parse_days(&["funday".into()])
                .unwrap_err()
                .contains("\"funday\" is not a day")
        );
        assert!(parse_days(&["mo".into()]).is_err());
        assert_eq!(parse_time("8:30").unwrap(), Time::new(8, 30, 0, 0).unwrap());
        assert_eq!(parse_time("24:00").unwrap(), Time::midnight());
        assert_eq!(
            parse_time("07:05:09").unwrap(),
            Time::new(7, 5, 9, 0).unwrap()
        );
        for bad in [
            "25:00",
            "8",
            "08:60",
            "noon",
            "-1:00",
            "+1:00",
            "08:00:00:00",
            "008:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn working_hours_on_weekdays_only() {
        let s = berlin(vec![window(&["weekdays"], "08:00", "18:00")]);
        // Thursday 2026-11-26, 09:00 in Berlin (UTC+1).
        assert!(s.active(ts("2026-11-26T08:00:00Z")).is_some());
        assert!(s.active(ts("2026-11-26T06:59:59Z")).is_none());
        assert!(
            s.active(ts("2026-11-26T17:00:00Z")).is_none(),
            "18:00 is the end"
        );
        // Saturday.
        assert!(s.active(ts("2026-11-28T10:00:00Z")).is_none());
        assert_eq!(
            s.base(ts("2026-11-26T08:00:00Z"), 100.0, 10.0),
            (100.0, 30.0, Some("w"))
        );
        assert_eq!(
            s.base(ts("2026-11-28T10:00:00Z"), 100.0, 10.0),
            (100.0, 10.0, None)
        );
        // Friday evening: the next change is Monday 08:00 local.
        assert_eq!(
            s.next_change(ts("2026-11-27T18:00:00Z")),
            Some(ts("2026-11-30T07:00:00Z"))
        );
    }

    #[test]
    fn a_range_past_midnight_belongs_to_the_day_it_starts() {
        let s = berlin(vec![window(&["fri"], "22:00", "06:00")]);
        // Friday 23:00 and Saturday 05:00 local: in force; Saturday 22:00 is not.
        assert!(s.active(ts("2026-11-27T22:00:00Z")).is_some());
        assert!(s.active(ts("2026-11-28T04:00:00Z")).is_some());
        assert!(s.active(ts("2026-11-28T05:00:00Z")).is_none());
        assert!(s.active(ts("2026-11-28T21:00:00Z")).is_none());
        assert_eq!(
            s.next_change(ts("2026-11-27T22:00:00Z")),
            Some(ts("2026-11-28T05:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_changes_follow_the_wall_clock() {
        // Berlin: 2026-03-29 02:00 -> 03:00 (CET -> CEST), 2026-10-25 03:00 -> 02:00.
        let s = berlin(vec![window(&["daily"], "08:00", "18:00")]);
        // Ten wall-clock hours on the spring day: 06:00Z (UTC+2) to 16:00Z.
        assert_eq!(
            s.next_change(ts("2026-03-29T00:00:00Z")),
            Some(ts("2026-03-29T06:00:00Z"))
        );
        assert_eq!(
            s.next_change(ts("2026-03-29T06:00:00Z")),
            Some(ts("2026-03-29T16:00:00Z"))
        );
        // The day before, still CET: 07:00Z.
        assert_eq!(
            s.next_change(ts("2026-03-28T00:00:00Z")),
            Some(ts("2026-03-28T07:00:00Z"))
        );
        // A start in the spring gap (02:30 does not exist): when the clock reaches 03:30.
        let gap = berlin(vec![window(&["sun"], "02:30", "05:00")]);
        assert_eq!(
            gap.next_change(ts("2026-03-29T00:00:00Z")),
            Some(ts("2026-03-29T01:30:00Z"))
        );
        // A start in the autumn fold (02:30 happens twice): the first one, still CEST.
        let fold = berlin(vec![window(&["sun"], "02:30", "05:00")]);
        assert_eq!(
            fold.next_change(ts("2026-10-24T23:00:00Z")),
            Some(ts("2026-10-25T00:30:00Z"))
        );
        assert!(fold.active(ts("2026-10-25T00:45:00Z")).is_some());
        // 05:00 CET is 04:00Z: the entry lasted 3.5 hours that night.
        assert_eq!(
            fold.next_change(ts("2026-10-25T00:45:00Z")),
            Some(ts("2026-10-25T04:00:00Z"))
        );
    }

    #[test]
    fn the_first_entry_in_force_wins_and_no_entry_means_no_change() {
        let mut a = window(&["daily"], "00:00", "24:00");
        a.name = "all day".into();
        let mut b = window(&["daily"], "08:00", "18:00");
        b.name = "work".into();
        let s = berlin(vec![b, a]);
        assert_eq!(s.active(ts("2026-11-26T10:00:00Z")).unwrap().name, "work");
        assert_eq!(
            s.active(ts("2026-11-26T20:00:00Z")).unwrap().name,
            "all day"
        );
        assert_eq!(berlin(vec![]).next_change(ts("2026-11-26T10:00:00Z")), None);
    }
}
