//! Any bytes at `/hook`: the parser returns an event or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jellydemon::adapters::webhook::parse(data);
});
