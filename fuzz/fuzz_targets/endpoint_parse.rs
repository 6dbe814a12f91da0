//! Any `RemoteEndPoint` text: parsing and classification never panic, and every form of an
//! address that parses classifies like its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let ranges = jellydemon::network::jellyfin_default_ranges();
    if let Ok(ip) = jellydemon::network::parse_endpoint(data) {
        let canonical = ip.to_string();
        assert_eq!(
            jellydemon::network::classify(Some(data), &ranges),
            jellydemon::network::classify(Some(&canonical), &ranges)
        );
    } else {
        let _ = jellydemon::network::classify(Some(data), &ranges);
    }
});
