//! The short scenario 1 of `scripts/cluster.py`: two `serve` instances, each in its own
//! network namespace, behind HAProxy, loaded from a client namespace for a few seconds.
//!
//! It needs root, iproute2's `ip netns` and Debian's haproxy (scripts/test.sh installs it when
//! missing); where the machine cannot make namespaces, the script says why and the test is
//! skipped with that message.

use std::path::Path;
use std::process::Command;

/// What `cluster.py` exits with when the machine cannot run it (no root, namespaces or
/// packages); it says why on stderr.
const CANNOT_RUN: i32 = 2;

#[test]
fn two_instances_behind_haproxy_share_the_load_and_account_for_every_request() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cluster.json");
    let out = Command::new("python3")
        .arg(root.join("scripts/cluster.py"))
        .args([
            "--quick",
            "--binary",
            env!("CARGO_BIN_EXE_spillway"),
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(CANNOT_RUN) {
        eprintln!("skipped: the cluster test cannot run on this machine: {stderr}");
        return;
    }
    assert!(out.status.success(), "cluster.py failed: {stderr}");
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &runs[0];
    assert_eq!(run["scenario"], 1, "{run}");
    // The configuration measured is deploy/haproxy.cfg as it is in the repository.
    assert_eq!(run["variant"], "shipped", "{run}");
    // Every request the client scheduled ended in one counted outcome.
    assert_eq!(run["unaccounted"], 0, "{run}");
    // Both instances did work, and the balancer passes their names through.
    for name in ["s1", "s2"] {
        let ok = run["per_instance"][name]["2xx"].as_u64().unwrap_or(0);
        assert!(ok > 0, "{name} completed nothing: {run}");
    }
    let seen = run["instance_seen_through_balancer"].as_str().unwrap_or("");
    assert!(["s1", "s2"].contains(&seen), "{run}");
    // Every success the client saw came from an instance, and retries stay bounded (one).
    assert!(run["ok"].as_u64() <= run["instance_ok"].as_u64(), "{run}");
    assert!(run["retries_per_request"].as_f64().unwrap() <= 1.0, "{run}");
}
