//! The `/work` query parser: any bytes as a query string.
#![no_main]

libfuzzer_sys::fuzz_target!(|query: &str| {
    spillway_cli::fuzzing::work_query(query);
});
