//! Helpers the CLI's integration tests share: a `serve` running in this process, raw HTTP/1.1
//! requests and replies, a child process that cannot outlive its test, and the accounting check
//! of a `simulate` report.

#![allow(dead_code, unused_imports)] // each test binary uses its own part

mod child;
mod http;
mod server;

pub(crate) use child::{Announced, Reaper, serve_on_a_free_port};
pub(crate) use http::{
    Reply, get_at, get_raw, get_request, get_with, open_get, read_reply, send_to, spawn_send,
};
pub(crate) use server::{ONE_SLOT_POOL, Running, serve_args};

/// Longest a helper here waits for one step before failing instead of hanging.
pub(crate) const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Asserts that one mode of a `simulate` report (a `ModeReport`, or its row of the JSON report)
/// accounts for every offered job:
/// `offered == completed + failed + shed + expired + displaced + in_flight_at_end`, each counted on its
/// own.
pub(crate) fn assert_every_job_accounted(mode: &impl serde::Serialize) {
    let mode = serde_json::to_value(mode).expect("a mode's report is JSON");
    let count = |field: &str| {
        mode[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {field} in {mode}"))
    };
    let parts: u64 = [
        "completed",
        "failed",
        "shed",
        "expired",
        "displaced",
        "in_flight_at_end",
    ]
    .into_iter()
    .map(count)
    .sum();
    assert_eq!(
        count("offered"),
        parts,
        "{}: offered must split into completed, failed, shed, expired, displaced and in flight",
        mode["mode"]
    );
}
