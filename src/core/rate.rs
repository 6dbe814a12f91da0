//! Bit rates for people: the one way every module shows bits/s as Mbps.

/// Bits/s shown as Mbps for humans ("22.5 Mbps", "0.82 Mbps"), written straight into the
/// text it is formatted into (`format!("{}", Mbps(bps))` allocates nothing of its own).
///
/// Integer arithmetic, rounded to the nearest hundredth (halves up): a plan formats a few of
/// these per user, and float formatting to two places was most of a plan's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mbps(pub u64);

impl std::fmt::Display for Mbps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bps = self.0;
        let hundredths = bps / 10_000 + u64::from(bps % 10_000 >= 5_000);
        let (whole, frac) = (hundredths / 100, hundredths % 100);
        match (frac / 10, frac % 10) {
            (0, 0) => write!(f, "{whole} Mbps"),
            (tenths, 0) => write!(f, "{whole}.{tenths} Mbps"),
            _ => write!(f, "{whole}.{frac:02} Mbps"),
        }
    }
}

/// Format bits/s as Mbps for humans ([`Mbps`] as a `String`).
pub fn fmt_mbps(bps: u64) -> String {
    Mbps(bps).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_show_as_mbps_without_trailing_zeros() {
        assert_eq!(super::fmt_mbps(22_500_000), "22.5 Mbps");
        assert_eq!(super::fmt_mbps(820_000), "0.82 Mbps");
        assert_eq!(super::fmt_mbps(10_000_000), "10 Mbps");
        assert_eq!(super::fmt_mbps(0), "0 Mbps");
        assert_eq!(super::fmt_mbps(1_050_000), "1.05 Mbps");
        assert_eq!(super::fmt_mbps(18_333_333), "18.33 Mbps");
        assert_eq!(super::fmt_mbps(18_336_000), "18.34 Mbps");
        assert_eq!(super::fmt_mbps(9_999_999), "10 Mbps");
    }

    proptest::proptest! {
        /// The same text as formatting the float to two places, but where the float's own
        /// rounding of an exact half differs.
        #[test]
        fn as_the_float_formatting_gave(bps in 0u64..100_000_000_000) {
            let m = bps as f64 / 1e6;
            let s = format!("{m:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            if bps % 10_000 != 5_000 {
                proptest::prop_assert_eq!(super::fmt_mbps(bps), format!("{s} Mbps"));
            }
        }
    }
}
