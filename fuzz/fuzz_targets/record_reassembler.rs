#![no_main]
// Filled in by the crate's issue; until then it only checks the harness builds.
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
