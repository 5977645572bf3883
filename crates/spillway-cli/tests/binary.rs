//! The built `spillway` binary, run as a user would.

use std::process::Command;

fn spillway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(args)
        .output()
        .expect("the spillway binary runs")
}

#[test]
fn version_names_the_package_version() {
    let out = spillway(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("spillway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_describes_the_tool() {
    let out = spillway(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage: spillway"), "{text}");
}

#[test]
fn an_unknown_flag_is_a_clear_error() {
    let out = spillway(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("unexpected argument '--no-such-flag'"),
        "{text}"
    );
}
