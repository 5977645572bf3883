//! Whole command lines: the input split at NUL bytes into arguments, parsed as `spillway`'s.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let argv: Vec<String> = data
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    spillway_cli::fuzzing::command_line(&argv);
});
