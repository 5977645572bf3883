//! The live dashboard as a person sees it: `spillway serve` under load, its `/` open in a real
//! headless Chromium (Debian's `chromium`, driven over WebDriver by `chromedriver` through
//! fantoccini). The charts must draw, their data must grow and change while the load runs, and
//! the page must say "draining" after SIGTERM.
//!
//! Without `chromium` and `chromedriver` on the PATH the test says so and passes, unless
//! `SPILLWAY_REQUIRE_BROWSER=1` (as `scripts/test.sh` sets, after installing them): then it
//! fails. `SPILLWAY_DASHBOARD_SCREENSHOT=path.png` saves a screenshot taken under load.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use support::Reaper;

mod support;

/// How long anything may take on a busy, shared machine.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_the_load_and_shows_the_drain() {
    let Some(browser) = Browser::find() else {
        return;
    };
    // 10 workers of 20 ms: about 500 requests/s; the load offers four times that.
    let serve = Process::serve(&[
        "--mode",
        "pool",
        "--limit",
        "fixed",
        "--max-workers",
        "10",
        "--min-workers",
        "10",
        "--queue",
        "10",
        "--wait-ms",
        "20",
    ]);
    let driver = browser.start_driver();
    let page = driver
        .open(&browser, &format!("http://{}/", serve.addr))
        .await;

    page.wait_until(
        "four charts",
        "return document.querySelectorAll('main canvas').length",
        |v| v.as_u64() >= Some(4),
    )
    .await;
    page.wait_until("frames", "return window.spillway.points()", |v| {
        v.as_u64() >= Some(3)
    })
    .await;
    let idle_points = page.value("return window.spillway.points()").await;
    let idle_pixels = page.value(PAINTED_PIXELS).await;
    assert_eq!(page.text("state").await, "serving");

    let load = Process::load(&serve.addr, 2000, "8s");
    page.wait_until(
        "the offered load on the chart",
        "return Math.max(...window.spillway.series('chart-rates', 'offered/s'))",
        |v| v.as_f64() > Some(500.0),
    )
    .await;
    page.wait_until(
        "shed requests on the chart",
        "return Math.max(...window.spillway.series('chart-rates', 'shed/s'))",
        |v| v.as_f64() > Some(0.0),
    )
    .await;
    page.wait_until(
        "a p99 of admitted requests",
        "return Math.max(...window.spillway.series('chart-latency', 'admitted p99'))",
        |v| v.as_f64() >= Some(20.0),
    )
    .await;
    let loaded_points = page.value("return window.spillway.points()").await;
    assert!(
        loaded_points.as_u64() > idle_points.as_u64(),
        "the charts' data grew: {idle_points} then {loaded_points}"
    );
    let loaded_pixels = page.value(PAINTED_PIXELS).await;
    assert_ne!(
        idle_pixels, loaded_pixels,
        "the rates chart was redrawn with the load"
    );
    assert!(
        page.text("now").await.contains("mode pool"),
        "the header names the mode"
    );
    if let Some(path) = std::env::var_os("SPILLWAY_DASHBOARD_SCREENSHOT") {
        // A few seconds of history on the charts.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let png = page.client.screenshot().await.expect("a screenshot");
        std::fs::write(PathBuf::from(path), png).expect("the screenshot is written");
    }
    load.finish();

    serve.child.signal("TERM");
    page.wait_until(
        "the draining state",
        "return document.getElementById('state').textContent",
        |v| v.as_str() == Some("draining"),
    )
    .await;
    page.close().await;
}

/// A fingerprint of what the rates chart shows: how many of its pixels are painted, and where.
const PAINTED_PIXELS: &str = "
    const c = document.querySelector('#chart-rates canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let painted = 0, weighted = 0;
    for (let i = 3; i < d.length; i += 4) {
        if (d[i] > 0) { painted += 1; weighted = (weighted + i * d[i - 1]) % 1000000007; }
    }
    return [painted, weighted];";

/// Chromium and its WebDriver, where the PATH has them.
struct Browser {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Browser {
    /// Both programs; `None` (after saying why) when one is missing, unless the run requires
    /// a browser.
    fn find() -> Option<Browser> {
        let found = (on_path("chromium"), on_path("chromedriver"));
        if let (Some(chromium), Some(chromedriver)) = found {
            return Some(Browser {
                chromium,
                chromedriver,
            });
        }
        let why = "chromium and chromedriver must be on the PATH (Debian: apt-get install \
                   chromium chromium-driver; scripts/test.sh installs them)";
        assert!(
            std::env::var_os("SPILLWAY_REQUIRE_BROWSER").is_none_or(|v| v != "1"),
            "SPILLWAY_REQUIRE_BROWSER=1 but no browser: {why}"
        );
        eprintln!("skipping the browser test of the dashboard: {why}");
        None
    }

    /// chromedriver on a free loopback port, once it accepts connections.
    fn start_driver(&self) -> Process {
        let port = free_port();
        let child = Command::new(&self.chromedriver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Process {
            child: Reaper(child),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(driver.addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// The capabilities of a headless Chromium with its own fresh profile, offline.
    fn capabilities(&self, profile: &std::path::Path) -> serde_json::Map<String, Value> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--window-size=1400,1000",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
        });
        match caps {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object"),
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().unwrap().port()
}

/// A child process, killed if the test ends before it does, and the address it serves.
struct Process {
    child: Reaper,
    addr: SocketAddr,
}

impl Process {
    /// `spillway serve` on a free port, once it says where it listens.
    fn serve(flags: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the spillway binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Process {
            child: Reaper(child),
            addr,
        }
    }

    /// `spillway load` offering `rate` requests/s to `/work` for `duration`.
    fn load(addr: &SocketAddr, rate: u32, duration: &str) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["load", &format!("http://{addr}/work"), "--quiet"])
            .args(["--rate", &rate.to_string(), "--duration", duration])
            .args(["--connections", "64", "--timeout", "5s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the load generator starts");
        Process {
            child: Reaper(child),
            addr: *addr,
        }
    }

    /// Waits for the process to end by itself.
    fn finish(mut self) {
        self.child.wait_at_most(PATIENCE);
    }
}

/// The dashboard in a browser session.
struct Page {
    client: Client,
    /// The browser's profile, removed at the end.
    _profile: tempfile::TempDir,
}

impl Process {
    /// A new browser session (this process is chromedriver) showing `url`.
    async fn open(&self, browser: &Browser, url: &str) -> Page {
        let profile = tempfile::tempdir().expect("a profile folder");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(browser.capabilities(profile.path()))
            .connect(&format!("http://{}", self.addr))
            .await
            .expect("a Chromium session");
        client.goto(url).await.expect("the dashboard loads");
        Page {
            client,
            _profile: profile,
        }
    }
}

impl Page {
    /// The value `script` returns.
    async fn value(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// The text of the element with this id.
    async fn text(&self, id: &str) -> String {
        let script = format!("return document.getElementById('{id}').textContent");
        self.value(&script).await.as_str().unwrap_or("").to_owned()
    }

    /// Polls `script` until `ready` holds for its value (bounded by [`PATIENCE`]).
    async fn wait_until(&self, what: &str, script: &str, ready: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.value(script).await;
            if ready(&value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still {value} after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session, closing Chromium.
    async fn close(self) {
        self.client.close().await.expect("the session closes");
    }
}
