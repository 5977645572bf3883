//! Each flag's value parser (sizes, durations, rates, fractions, address ranges, URLs): the
//! first byte picks the parser, the rest is its text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&which, rest)) = data.split_first() {
        if let Ok(text) = std::str::from_utf8(rest) {
            spillway_cli::fuzzing::flag_value(which, text);
        }
    }
});
