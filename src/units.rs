//! Bit rates for people: the one way every module shows bits/s as Mbps.

/// Format bits/s as Mbps for humans ("22.5 Mbps", "0.82 Mbps").
pub fn fmt_mbps(bps: u64) -> String {
    let m = bps as f64 / 1e6;
    let s = format!("{m:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} Mbps")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_show_as_mbps_without_trailing_zeros() {
        assert_eq!(super::fmt_mbps(22_500_000), "22.5 Mbps");
        assert_eq!(super::fmt_mbps(820_000), "0.82 Mbps");
        assert_eq!(super::fmt_mbps(10_000_000), "10 Mbps");
    }
}
