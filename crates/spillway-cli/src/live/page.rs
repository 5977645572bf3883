//! The dashboard page and its routes: `/` (the page), `/assets/*` (uPlot and the page's own
//! script and style, embedded in the binary), `/events` (Server-Sent Events of JSON frames)
//! and `/snapshot` (the latest frame).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Hub;

/// The page; `{{TITLE}}` and `{{SUMMARY}}` are filled in per producer.
const PAGE: &str = include_str!("../../assets/dashboard.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");
/// uPlot 1.6.32 from the npm registry, unchanged (MIT; `assets/uplot/LICENSE`).
const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../assets/uplot/LICENSE");

/// The routes of the live view over `hub`. `summary_html` is the page's header line (trusted
/// HTML, made by the producer); the frames' `summary` replaces it once they arrive.
pub(crate) fn routes<S>(hub: Arc<Hub>, title: &str, summary_html: &str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let page = PAGE
        .replace("{{TITLE}}", &escape(title))
        .replace("{{SUMMARY}}", summary_html);
    let events_hub = Arc::clone(&hub);
    Router::new()
        .route("/", get(move || async move { html(page) }))
        .route("/events", get(move || async move { events(&events_hub) }))
        .route("/snapshot", get(move || async move { snapshot(&hub) }))
        .route(
            "/assets/uPlot.min.js",
            get(|| async { asset(UPLOT_JS, JS) }),
        )
        .route(
            "/assets/uPlot.min.css",
            get(|| async { asset(UPLOT_CSS, CSS) }),
        )
        .route(
            "/assets/uPlot.LICENSE",
            get(|| async { asset(UPLOT_LICENSE, TEXT) }),
        )
        .route("/assets/dashboard.js", get(|| async { asset(SCRIPT, JS) }))
        .route("/assets/dashboard.css", get(|| async { asset(STYLE, CSS) }))
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

fn html(page: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// `/events`: the hub's frames as Server-Sent Events.
fn events(hub: &Arc<Hub>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(hub.subscribe()),
    )
        .into_response()
}

/// `/snapshot`: the latest frame, or 503 before the first tick.
fn snapshot(hub: &Hub) -> Response {
    match hub.latest() {
        Some(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            json,
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet; retry\n").into_response(),
    }
}

/// `text` with the characters HTML gives a meaning to escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_scripts() {
        for src in ["/assets/uPlot.min.js", "/assets/dashboard.js"] {
            assert!(PAGE.contains(&format!("src=\"{src}\"")), "{src}");
        }
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "no network"
        );
        assert!(UPLOT_LICENSE.contains("MIT License"));
        assert!(UPLOT_JS.contains("uPlot"));
    }

    #[test]
    fn titles_are_escaped() {
        assert_eq!(escape("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
