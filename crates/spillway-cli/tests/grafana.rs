//! The Grafana dashboard in `dashboards/` asks only for series that `spillway serve` exports:
//! every metric a PromQL query (panel or variable) names is in a real server's `/metrics`, with
//! the labels the query selects on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::Running;

/// Labels Prometheus adds to every series it scrapes.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

#[tokio::test]
async fn every_query_of_the_grafana_dashboard_names_an_exported_series() {
    let exported = exported_series().await;
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for query in &queries {
        let selected = selectors(query);
        assert!(!selected.is_empty(), "no spillway series in {query:?}");
        for (metric, labels) in selected {
            let known = exported
                .get(&metric)
                .unwrap_or_else(|| panic!("{metric} (in {query:?}) is not in /metrics"));
            for label in labels {
                assert!(
                    known.contains(&label) || SCRAPE_LABELS.contains(&label.as_str()),
                    "{metric} has no label {label:?} (in {query:?}); it has {known:?}"
                );
            }
        }
    }
}

#[test]
fn the_selector_reader_finds_names_and_label_names() {
    let found = selectors(
        r#"histogram_quantile(0.99, sum by (le) (rate(spillway_x_bucket{a="1", b=~"$v"}[1m]))) / process_y"#,
    );
    assert_eq!(
        found,
        vec![
            (
                "spillway_x_bucket".to_string(),
                vec!["a".into(), "b".into()]
            ),
            ("process_y".to_string(), vec![]),
        ]
    );
}

/// The dashboard JSON.
fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboards/spillway-serve.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard is in dashboards/");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL expression: the panels' targets and the variables' queries.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("an expr").to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        queries.push(
            variable["query"]["query"]
                .as_str()
                .expect("a query")
                .to_string(),
        );
    }
    queries
}

/// The series a query names (those of spillway and the process), each with the label names
/// its selector uses.
fn selectors(query: &str) -> Vec<(String, Vec<String>)> {
    let bytes = query.as_bytes();
    let is_start = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let is_part = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            // A label value or a legend: skip to the closing quote.
            i += 1 + query[i + 1..].find('"').map_or(query.len(), |end| end + 1);
            continue;
        }
        if !is_start(bytes[i]) || (i > 0 && is_part(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_part(bytes[i]) {
            i += 1;
        }
        let name = &query[start..i];
        if !(name.starts_with("spillway_") || name.starts_with("process_")) {
            continue;
        }
        let mut labels = Vec::new();
        if bytes.get(i) == Some(&b'{') {
            let end = i + query[i..].find('}').expect("a closed selector");
            labels = label_names(&query[i + 1..end]);
            i = end + 1;
        }
        found.push((name.to_string(), labels));
    }
    found
}

/// The label names of a selector's matchers (`a="1", b=~"x"`).
fn label_names(matchers: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = matchers;
    while let Some(op) = rest.find(['=', '!']) {
        names.push(rest[..op].trim().trim_start_matches(',').trim().to_string());
        let value_start = op + rest[op..].find('"').expect("a quoted value") + 1;
        let value_end = value_start + rest[value_start..].find('"').expect("a closed value");
        rest = &rest[value_end + 1..];
    }
    names
}

/// A pool-mode server's `/metrics` after a few `/work` requests: each series name with the
/// label names its samples carry.
async fn exported_series() -> BTreeMap<String, BTreeSet<String>> {
    let server = Running::start(&["--wait-ms", "1"]).await;
    for _ in 0..3 {
        assert_eq!(server.get("/work").await.status, 200);
    }
    // The live view's ticker reads the memory five times a second.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = server.get("/metrics").await;
    server.drain().await;
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics.body.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let end = name_end + line[name_end..].find('}').expect("closed labels");
            labels.extend(label_names(&line[name_end + 1..end]));
        }
    }
    series
}
