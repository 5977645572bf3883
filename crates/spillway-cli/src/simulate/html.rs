//! The `--html` report: one self-contained page (inline CSS and inline SVG, nothing to fetch)
//! with the settings, the results table and six line charts of the 100 ms series (memory, in
//! flight, completions, shed, p99 and the pool's concurrency limit), all modes overlaid on
//! shared axes.
//!
//! The charts are drawn by `plotters`' SVG backend. Without its `ttf` feature plotters measures
//! text with a rough estimate only, but the SVG backend writes text as SVG `<text>` elements
//! (escaped) that the browser lays out with its own fonts, so captions, axis tick labels, axis
//! titles and legends need no font file and no system library.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{ModeReport, Sample, SimReport, human_bytes};
use super::scenario::describe_phases;

/// One colour per mode, in run order (cycled if there are more modes).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Size of each chart, in SVG pixels (scaled to the page width).
const CHART_SIZE: (u32, u32) = (1040, 360);

/// Width of the legend column at the right of each chart.
const LEGEND_WIDTH: u32 = 210;

const MIB: f64 = (1u64 << 20) as f64;

/// One chart: a quantity of the series plotted for every mode that has it.
struct Metric {
    title: &'static str,
    y_desc: &'static str,
    value: fn(&Sample) -> Option<f64>,
}

/// A count of the sample as a rate per second.
fn per_s(n: u64, s: &Sample) -> Option<f64> {
    Some(n as f64 / s.span_s.max(1e-3))
}

const METRICS: [Metric; 7] = [
    Metric {
        title: "Resident memory",
        y_desc: "RSS (MiB)",
        value: |s| Some(s.rss_bytes as f64 / MIB),
    },
    Metric {
        title: "Jobs in flight",
        y_desc: "in flight (jobs)",
        value: |s| Some(s.in_flight as f64),
    },
    Metric {
        title: "Completions per second",
        y_desc: "completed (jobs/s)",
        value: |s| per_s(s.completed, s),
    },
    Metric {
        title: "Shed per second",
        y_desc: "shed (jobs/s)",
        value: |s| per_s(s.shed, s),
    },
    Metric {
        title: "p99 latency per 100 ms",
        y_desc: "p99 latency (ms)",
        value: |s| Some(s.p99_ms),
    },
    Metric {
        title: "Concurrency limit (pool modes)",
        y_desc: "limit (jobs at once)",
        value: |s| s.limit.map(|l| l as f64),
    },
    Metric {
        title: "Kernel CPU (system calls, first touches of memory)",
        y_desc: "kernel time (cores)",
        value: |s| s.cpu_system_s.map(|cpu| cpu / s.span_s.max(1e-3)),
    },
];

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;\
margin:2em auto;max-width:1250px;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em}\
table{border-collapse:collapse;font-size:.8em}.wrap{overflow-x:auto;margin:1em 0}td.m{white-space:nowrap}\
th,td{border:1px solid #ccc;padding:.25em .4em;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
tr.oom td{background:#fdecea}.sw{display:inline-block;width:.8em;height:.8em;margin-right:.4em;\
border-radius:2px}.chart{margin:1.2em 0}.chart svg{width:100%;height:auto;display:block}";

/// Renders the whole report as one self-contained HTML page.
pub(crate) fn render(report: &SimReport) -> Result<String> {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>spillway simulate report</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<h1>spillway simulate: overload report</h1>\n");
    settings_paragraph(&mut out, report)?;
    out.push_str("<h2>Results</h2>\n");
    results_table(&mut out, report)?;
    out.push_str("<h2>Series, every 100 ms</h2>\n");
    out.push_str(
        "<p>x: seconds since each mode started; counts are shown per second. A mode stopped \
         for passing the memory cap ends there, marked with a cross.</p>\n",
    );
    for metric in &METRICS {
        out.push_str("<div class=\"chart\">\n");
        out.push_str(&chart(report, metric).with_context(|| format!("drawing {}", metric.title))?);
        out.push_str("\n</div>\n");
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

fn settings_paragraph(out: &mut String, report: &SimReport) -> Result<()> {
    let s = &report.settings;
    write!(
        out,
        "<p>Each mode is offered <b>{} jobs/s</b> for <b>{} s</b>. One job = {} ms wait + \
         {} KiB allocated and touched + {} ms CPU. Deadline {} ms; memory cap {}; seed {}.",
        rate(s.rate),
        trim(s.duration_s),
        trim(s.wait_ms),
        s.alloc_kib,
        trim(s.cpu_ms),
        trim(s.deadline_ms),
        human_bytes(s.memory_cap_bytes),
        s.seed,
    )?;
    if s.scenario != "step" {
        write!(
            out,
            " Scenario <b>{}</b>: {}.",
            escape(&s.scenario),
            escape(&describe_phases(&s.phases))
        )?;
    }
    if let Some(mix) = &s.priority_mix {
        write!(
            out,
            " Priorities offered: <b>{}</b> (one row per priority under each mode).",
            escape(mix)
        )?;
    }
    if let Some(cap) = report.capacity_per_s {
        write!(out, " Measured capacity: <b>{} jobs/s</b>.", rate(cap))?;
    }
    if let Some(f) = report.overload_factor {
        write!(out, " Overload factor: <b>{f:.2}&times;</b>.")?;
    }
    out.push_str("</p>\n");
    Ok(())
}

fn results_table(out: &mut String, report: &SimReport) -> Result<()> {
    out.push_str(
        "<div class=\"wrap\"><table>\n<thead><tr><th>mode</th><th>description</th><th>offered</th>\
         <th>offered/s</th><th>completed</th><th>goodput/s</th><th>shed</th>\
         <th>expired</th><th>displaced</th><th>peak RSS</th><th>peak in flight</th><th>p50 (ms)</th>\
         <th>p99 (ms)</th><th>p99.9 (ms)</th><th>max (ms)</th><th>job-body mean (ms)</th>\
         <th>outcome</th></tr></thead>\n<tbody>\n",
    );
    for (i, m) in report.modes.iter().enumerate() {
        let c = colour(i);
        let l = &m.latency_ms;
        write!(
            out,
            "<tr{}><td class=\"m\"><span class=\"sw\" style=\"background:rgb({},{},{})\"></span>{}</td>\
             <td>{}</td>",
            if m.oom { " class=\"oom\"" } else { "" },
            c.0,
            c.1,
            c.2,
            escape(&m.mode),
            escape(&m.description),
        )?;
        let cells = [
            count(m.offered),
            rate(m.offered_per_s),
            count(m.completed),
            rate(m.goodput_per_s),
            count(m.shed),
            count(m.expired),
            count(m.displaced),
            human_bytes(m.peak_rss_bytes),
            count(m.peak_in_flight),
            ms(l.p50),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            ms(m.job_body_mean_ms),
        ];
        for cell in cells {
            write!(out, "<td class=\"n\">{}</td>", escape(&cell))?;
        }
        writeln!(out, "<td>{}</td></tr>", escape(&m.outcome()))?;
        if report.settings.priority_mix.is_some() {
            priority_rows(out, m)?;
        }
    }
    out.push_str("</tbody>\n</table></div>\n");
    Ok(())
}

/// One row per priority under a mode's row, in the columns they share with it.
fn priority_rows(out: &mut String, m: &ModeReport) -> Result<()> {
    for (name, p) in m.priorities() {
        let l = &p.latency_ms;
        write!(
            out,
            "<tr class=\"prio\"><td class=\"m\">&nbsp;&nbsp;{}</td><td>{} work of {}</td>",
            escape(name),
            escape(name),
            escape(&m.mode)
        )?;
        let cells = [
            count(p.offered),
            rate(p.offered_per_s),
            count(p.completed),
            rate(p.goodput_per_s),
            count(p.shed),
            count(p.expired),
            count(p.displaced),
            String::new(),
            String::new(),
            ms(l.p50),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            String::new(),
        ];
        for cell in cells {
            write!(out, "<td class=\"n\">{}</td>", escape(&cell))?;
        }
        writeln!(out, "<td></td></tr>")?;
    }
    Ok(())
}

/// Draws one metric for all modes as an SVG string.
fn chart(report: &SimReport, metric: &Metric) -> Result<String> {
    let points = series_points(report, metric);
    let bounds = Bounds::of(report, &points);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot_area, legend_area) = root.split_horizontally(CHART_SIZE.0 - LEGEND_WIDTH);
        let mut chart = axes(&plot_area, metric, &bounds)?;
        for (i, (mode, pts)) in report.modes.iter().zip(&points).enumerate() {
            draw_line(&mut chart, mode, pts, colour(i))?;
            draw_legend_entry(&legend_area, mode, i)?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Each mode's (seconds, value) points of `metric`.
fn series_points(report: &SimReport, metric: &Metric) -> Vec<Vec<(f64, f64)>> {
    report
        .modes
        .iter()
        .map(|m| {
            m.series
                .iter()
                .filter_map(|s| Some((s.t_s, (metric.value)(s)?)))
                .collect()
        })
        .collect()
}

/// The axes' ranges: at least the run's duration across, 8% of headroom up.
struct Bounds {
    x_max: f64,
    y_max: f64,
}

impl Bounds {
    fn of(report: &SimReport, points: &[Vec<(f64, f64)>]) -> Self {
        let x_max = points
            .iter()
            .flatten()
            .map(|p| p.0)
            .fold(1.0, f64::max)
            .max(report.settings.duration_s.ceil());
        let y_max = points
            .iter()
            .flatten()
            .map(|p| p.1)
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
        Bounds { x_max, y_max }
    }
}

type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The caption, the axes, their ticks and the light grid.
fn axes<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    metric: &Metric,
    bounds: &Bounds,
) -> Result<Plot<'a, 'b>> {
    // One scale for every tick of an axis, so "9000" and "10k" never sit side by side.
    let (y_div, y_suffix) = axis_scale(bounds.y_max);
    let y_label = move |y: &f64| match trim(y / y_div) {
        zero if zero == "0" => zero,
        v => format!("{v}{y_suffix}"),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(metric.title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(54)
        .y_label_area_size(84)
        .build_cartesian_2d(0.0..bounds.x_max, 0.0..bounds.y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the mode started")
        .y_desc(metric.y_desc)
        .x_label_formatter(&|x| trim(*x))
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 19))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    Ok(chart)
}

/// One mode's line, with a cross and "OOM" at its last point if it ran out of memory.
fn draw_line(
    chart: &mut Plot<'_, '_>,
    mode: &ModeReport,
    pts: &[(f64, f64)],
    c: RGBColor,
) -> Result<()> {
    chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?;
    if let (true, Some(&last)) = (mode.oom, pts.last()) {
        let label_font = ("sans-serif", 19).into_font();
        chart.draw_series(std::iter::once(
            EmptyElement::at(last)
                + Cross::new((0, 0), 7, c.stroke_width(3))
                + Text::new("OOM", (9, -22), label_font.color(&c)),
        ))?;
    }
    Ok(())
}

/// The legend entry of mode `i`, beside the plot so it never hides a line.
fn draw_legend_entry(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    mode: &ModeReport,
    i: usize,
) -> Result<()> {
    let c = colour(i);
    let y = 60 + 28 * i as i32;
    area.draw(&PathElement::new(vec![(4, y), (30, y)], c.stroke_width(3)))?;
    area.draw(&Text::new(
        legend_label(mode),
        (36, y),
        ("sans-serif", 19)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    Ok(())
}

fn legend_label(mode: &ModeReport) -> String {
    if mode.series.is_empty() {
        format!("{} (no data)", mode.mode)
    } else {
        mode.mode.clone()
    }
}

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An integer count with thin thousands separators: "1 234 567".
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(ch);
    }
    out
}

/// A rate: grouped digits from 1000 up ("20\u{202f}000"), else as [`trim`].
fn rate(v: f64) -> String {
    if (1000.0..1e18).contains(&v) {
        count(v.round() as u64)
    } else {
        trim(v)
    }
}

/// Milliseconds: two decimals below 10 ms, one below 1000 ms, none above.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The divisor and suffix for an axis whose largest value is `max`.
fn axis_scale(max: f64) -> (f64, &'static str) {
    if max >= 1e6 {
        (1e6, "M")
    } else if max >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// A tick value with at most two decimals and no trailing zeros: "2.5", "150", "0".
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::report::{LatencyMs, Settings};
    use super::*;

    fn second(t: u32, in_flight: u64, rss_mib: u64) -> Sample {
        Sample {
            t,
            t_s: f64::from(t) * 0.1,
            span_s: 0.1,
            limit: (t > 1).then_some(100 * t as usize),
            offered: 1000,
            completed: 900,
            goodput: 800,
            shed: 50,
            expired: 10,
            in_flight,
            rss_bytes: rss_mib << 20,
            p99_ms: 12.5 * f64::from(t),
            cpu_user_s: Some(0.08),
            cpu_system_s: Some(0.01 * f64::from(t)),
        }
    }

    fn mode(name: &str, description: &str, oom: bool, series: Vec<Sample>) -> ModeReport {
        ModeReport {
            mode: name.to_owned(),
            description: description.to_owned(),
            offered: 3000,
            offered_per_s: 1000.0,
            completed: 2700,
            goodput_per_s: 800.0,
            shed: 150,
            failed: 0,
            expired: 30,
            displaced: 0,
            in_flight_at_end: 120,
            peak_rss_bytes: if oom { 9 << 30 } else { 412 << 20 },
            peak_in_flight: 5000,
            latency_ms: LatencyMs {
                p50: 10.2,
                p99: 120.0,
                p999: 450.5,
                max: 1200.0,
                mean: 20.0,
            },
            job_body_mean_ms: 10.1,
            oom,
            oom_at_s: oom.then_some(2.5),
            elapsed_s: if oom { 2.5 } else { 3.0 },
            series,
            by_priority: BTreeMap::new(),
        }
    }

    fn report() -> SimReport {
        SimReport {
            settings: Settings {
                rate: 1000.0,
                duration_s: 3.0,
                wait_ms: 10.0,
                alloc_kib: 64,
                cpu_ms: 0.5,
                deadline_ms: 100.0,
                memory_cap_bytes: 8 << 30,
                seed: 7,
                scenario: "step".into(),
                phases: Vec::new(),
                priority_mix: None,
            },
            capacity_per_s: Some(850.5),
            overload_factor: Some(1.18),
            modes: vec![
                mode(
                    "naive",
                    "tokio::spawn per job",
                    true,
                    vec![second(1, 900, 800), second(2, 5000, 9000)],
                ),
                mode(
                    "pool",
                    "16 workers <script>alert(1)</script> & queue",
                    false,
                    (1..=3).map(|t| second(t, 100, 300)).collect(),
                ),
                mode("semaphore", "no series", false, Vec::new()),
            ],
        }
    }

    #[test]
    fn html_is_one_document_with_a_chart_per_metric() {
        let html = render(&report()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<html").count(), 1);
        assert_eq!(html.matches("</html>").count(), 1);
        assert_eq!(html.matches("<svg").count(), METRICS.len());
        assert_eq!(html.matches("</svg>").count(), METRICS.len());
        assert!(html.contains("Measured capacity"));
        assert!(html.contains("OOM at 2.5 s"));
    }

    #[test]
    fn html_names_every_mode_in_table_and_legends() {
        let html = render(&report()).unwrap();
        for (name, legend) in [
            ("naive", "naive"),
            ("pool", "pool"),
            ("semaphore", "semaphore (no data)"),
        ] {
            assert!(
                html.contains(&format!("</span>{name}</td>")),
                "{name} not in the table"
            );
            let in_legend = format!(">\n{legend}\n</text>");
            assert_eq!(
                html.matches(&in_legend).count(),
                METRICS.len(),
                "{legend} not in every legend"
            );
        }
        // The OOM mode's last point is marked in every chart.
        assert_eq!(html.matches(">\nOOM\n</text>").count(), METRICS.len());
    }

    #[test]
    fn html_fetches_nothing() {
        let html = render(&report())
            .unwrap()
            .replace("http://www.w3.org/2000/svg", "");
        assert!(!html.contains("http://"));
        assert!(!html.contains("https://"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("<link"));
        assert!(!html.contains("<img"));
    }

    #[test]
    fn html_escapes_user_text() {
        let html = render(&report()).unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; queue"));
    }

    #[test]
    fn html_handles_empty_series_and_no_modes() {
        let mut r = report();
        for m in &mut r.modes {
            m.series.clear();
        }
        assert_eq!(render(&r).unwrap().matches("<svg").count(), METRICS.len());
        r.modes.clear();
        r.capacity_per_s = None;
        r.overload_factor = None;
        assert_eq!(render(&r).unwrap().matches("<svg").count(), METRICS.len());
    }

    #[test]
    fn units_are_human() {
        assert_eq!(count(1_234_567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(123), "123");
        assert_eq!(axis_scale(15_000.0), (1e3, "k"));
        assert_eq!(axis_scale(9_000.0), (1.0, ""));
        assert_eq!(trim(2.50), "2.5");
        assert_eq!(trim(150.0), "150");
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
