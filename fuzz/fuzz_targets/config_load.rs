//! Any configuration text: the loader returns settings or an error naming the problem, never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Err(e) = jellydemon::config::Settings::from_toml_str(data) {
        assert!(!e.to_string().is_empty());
    }
});
