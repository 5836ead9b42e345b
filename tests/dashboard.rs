//! The operations-centre page in a real browser: headless Chromium driven through WebDriver
//! (Debian's `chromium` and `chromium-driver`; tests/run.sh installs them) against a real
//! `socai serve`, a projection worker and nats-server, each on a port of its own.
//!
//! Screenshots of the national view, a province and the wall mode are written to
//! `target/dashboard/` on every run (the README shows them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use socai_client::publisher::Outgoing;
use socai_e2e::nats::{Serve, publisher, start_nats, wait_until};
use socai_e2e::witness::WitnessProcess;
use socai_e2e::{Ledger, workload};
use socai_model::Event;

const PATIENCE: Duration = Duration::from_secs(90);

/// `socai.toml` of these tests: checkpoints every second, a short stale warning.
const CONFIG: &str = "[ingest]\ncheckpoint_interval_s = 1\n\n[dashboard]\nstale_after_secs = 12\nwall_rotate_secs = 3\n";

/// Where the screenshots go: `target/dashboard/` of the workspace.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

fn find_program(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = Path::new(dir).join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "none of {names:?} is on PATH: install Debian's chromium and chromium-driver (tests/run.sh does: apt-get install chromium chromium-driver)"
    );
}

/// chromedriver on a free port and one headless Chromium session; both end on drop.
struct Browser {
    driver: Child,
    client: Option<Client>,
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver = find_program(&["chromedriver"]);
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let port = socai_testkit::free_port().expect("a free port");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Browser {
            driver,
            client: None,
        };
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--lang=vi-VN"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = caps.as_object().unwrap().clone();
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "no WebDriver session with chromedriver on port {port}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        browser.client = Some(client);
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    async fn js(&self, script: &str) -> Value {
        self.c()
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Waits until `script` (a JS expression) is truthy, and returns its value.
    async fn until(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(&format!("return ({script});")).await;
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            if started.elapsed() > PATIENCE {
                let errors = self.js("return window.__socaiErrors || null").await;
                let status = self.attr("view", "data-status").await;
                panic!(
                    "waited {PATIENCE:?} for {what} ({script}); view status {status:?}, page errors {errors}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn attr(&self, testid: &str, name: &str) -> String {
        self.js(&format!(
            "const e = document.querySelector('[data-testid=\"{testid}\"]'); return e ? (e.getAttribute('{name}') || '') : null;"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn text(&self, testid: &str) -> String {
        self.js(&format!(
            "const e = document.querySelector('[data-testid=\"{testid}\"]'); return e ? e.textContent.trim() : '';"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The page's current URL.
    async fn url(&self) -> String {
        self.c()
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// Clicks the element `css` names. A live update may re-render it between the lookup
    /// and the click (a stale element): looked up again then.
    async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            tries += 1;
            let found = self.c().find(Locator::Css(css)).await;
            let clicked = match found {
                Ok(element) => element.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(_) => return,
                Err(e) if tries < 20 => {
                    eprintln!("clicking {css}: {e}; again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    /// Clicks Verify and waits for its verdict: `(data-status, the text shown)`.
    async fn verify(&self) -> (String, String) {
        self.js("document.querySelector('[data-testid=\"verify-result\"]').dataset.status = ''; return true;")
            .await;
        self.click("[data-testid=\"verify\"]").await;
        self.until(
            "Verify's verdict",
            "document.querySelector('[data-testid=\"verify-result\"]').dataset.status",
        )
        .await;
        (
            self.attr("verify-result", "data-status").await,
            self.text("verify-result").await,
        )
    }

    /// Waits until the view shows `scope`, loaded.
    async fn view_of(&self, scope: &str) {
        self.until(
            &format!("the view of {scope}"),
            &format!(
                "(() => {{ const m = document.querySelector('[data-testid=\"view\"]'); return m && m.dataset.status === 'ready' && m.dataset.scope === '{scope}'; }})()"
            ),
        )
        .await;
    }

    /// JavaScript errors the page met (console errors and uncaught exceptions, from Chromium's
    /// log), besides the page's own record.
    async fn errors(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let own = self.js("return window.__socaiErrors || []").await;
        for e in own.as_array().into_iter().flatten() {
            out.push(e.to_string());
        }
        // chromedriver's log endpoint (not W3C, but chromedriver keeps it).
        if let Ok(logs) = self.c().issue_cmd(BrowserLog).await {
            for entry in logs.as_array().into_iter().flatten() {
                if entry["level"] == "SEVERE" {
                    out.push(entry["message"].to_string());
                }
            }
        }
        out
    }

    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the session (and Chromium) if the runtime is still there.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let _ = tokio::task::block_in_place(|| handle.block_on(client.close()));
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `POST /session/{id}/se/log {"type": "browser"}`: Chromium's console log.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// The JSON of a 2xx answer, `None` otherwise (e.g. no checkpoint yet).
async fn try_json(base: &str, path: &str) -> Option<Value> {
    let response = reqwest::get(format!("{base}{path}")).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn get_json(base: &str, path: &str) -> Value {
    let response = reqwest::get(format!("{base}{path}")).await.expect("GET");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}

/// Publishes `events` as the gateway and waits until the ledger's latest checkpoint covers
/// `size` entries and the worker's mark has caught up with it.
async fn publish_and_settle(url: &str, base: &str, events: &[Event], size: u64) {
    let gateway = publisher(url, Some("gateway")).await;
    let outgoing: Vec<Outgoing> = events.iter().map(Outgoing::event).collect();
    assert_eq!(gateway.publish_all(outgoing, 256, |_| {}).await, 0);
    wait_until(PATIENCE, &format!("worker at {size}"), || async {
        // The checkpoint first: the view then counts what the directory lacks of at least it.
        let (Some(latest), Some(view)) = (
            try_json(base, "/v1/checkpoints/latest").await,
            try_json(base, "/v1/dashboard/view?scope=national").await,
        ) else {
            return false;
        };
        // The directory too: a province lists the agencies it has read (CI once asked before
        // the directory had read the last entries).
        latest["size"].as_u64() >= Some(size)
            && view["directory_behind"] == 0
            && view["workers"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w["tree_size"].as_u64() >= Some(size)))
    })
    .await;
}

/// A ledger served on the shipped secured nats-server with one projection worker.
struct World {
    ledger: Ledger,
    _nats: socai_testkit::LocalNats,
    url: String,
    serve: Serve,
    worker: Serve,
    base: String,
}

fn world(env: &[(&str, &str)]) -> World {
    world_on(Ledger::new(), CONFIG, env)
}

/// [`world`] on a ledger of the caller's, configured with `config`.
fn world_on(ledger: Ledger, config: &str, env: &[(&str, &str)]) -> World {
    ledger.configure(config);
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let mut serve = ledger.serve_env(&url, Some("ledger"), env);
    let base = serve.http_url();
    let worker = ledger.spawn(
        &ledger.path("worker"),
        &["project", "--name", "p0"],
        &url,
        Some("projector"),
        "projector resuming",
    );
    World {
        ledger,
        _nats: nats,
        url,
        serve,
        worker,
        base,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_ledgers_figures_live_and_verifies_them() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let mut w = world(&[]);
    let events = workload(3000, 5);
    // Tuyên Quang's justice department (H05) also as Hà Giang's (H02), a province that merged
    // into Tuyên Quang on 2025-07-01: its events count toward H05.
    let merged: Vec<Event> = events[..2000]
        .iter()
        .filter(|e| e.agency == "000.00.12.H05")
        .map(|e| Event {
            id: format!("{}-hg", e.id),
            agency: "000.00.12.H02".into(),
            dossier: format!("{}-hg", e.dossier),
            ..e.clone()
        })
        .collect();
    assert!(
        merged.len() > 20,
        "{} events of 000.00.12.H05",
        merged.len()
    );
    let first: Vec<Event> = events[..2000].iter().chain(&merged).cloned().collect();
    let size = first.len() as u64;
    publish_and_settle(&w.url, &w.base, &first, size).await;
    phase(&format!("{size} events committed and folded"));
    let h05 = get_json(&w.base, "/v1/dashboard/view?scope=province:H05").await;
    assert_eq!(h05["merged"][0]["code"], "H02", "{}", h05["merged"]);
    assert!(
        h05["children"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["scope"] == "agency:000.00.12.H02"),
        "Hà Giang's agency is listed under Tuyên Quang"
    );
    let h02 = get_json(&w.base, "/v1/metrics?scope=province:H02").await;
    assert_eq!(
        h02["values"],
        json!([]),
        "no figures under a province that no longer exists"
    );

    let browser = Browser::start().await;
    browser
        .c()
        .goto(&format!("{}/dashboard", w.base))
        .await
        .expect("open the page");
    browser.view_of("national").await;
    phase("national view loaded");

    // The national figures equal the API's (the METRICS bucket, as /v1/metrics reads it).
    let window = browser.attr("view", "data-window").await;
    assert!(window.starts_with("month."), "{window}");
    let api = get_json(
        &w.base,
        &format!("/v1/metrics?scope=national&window={window}"),
    )
    .await;
    let config = get_json(&w.base, "/v1/dashboard").await;
    let mut compared = 0;
    for tile in config["tiles"].as_array().unwrap() {
        let metric = tile["metric"].as_str().unwrap();
        let shown = browser.attr(&format!("value-{metric}"), "data-value").await;
        let expected = api["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["metric"] == metric)
            .and_then(|v| v["value"].as_f64());
        match expected {
            Some(x) => {
                let got: f64 = shown
                    .parse()
                    .unwrap_or_else(|_| panic!("{metric}: page shows {shown:?}, API {x}"));
                assert!(
                    (got - x).abs() <= 1e-9 * x.abs().max(1.0),
                    "{metric}: page {got}, API {x}"
                );
                compared += 1;
            }
            None => assert_eq!(
                shown, "",
                "{metric}: the API has no value, the page shows one"
            ),
        }
    }
    assert!(compared >= 5, "only {compared} national figures had values");
    // Without witnesses the panel says so (not an empty box).
    browser
        .until(
            "the witnesses panel",
            "document.querySelector('[data-testid=\"witnesses\"]').dataset.status",
        )
        .await;
    assert_eq!(browser.attr("witnesses", "data-status").await, "none");
    let none = browser.text("witnesses-summary").await;
    assert!(
        none.contains("Chưa cấu hình nhân chứng nào"),
        "the panel says there are no witnesses: {none:?}"
    );
    let ranking_rows = browser
        .js("return document.querySelectorAll('[data-testid=\"ranking\"] a[data-scope^=\"province:\"]').length")
        .await;
    assert_eq!(ranking_rows, 34, "the ranking lists today's 34 provinces");
    assert_eq!(
        browser.errors().await,
        Vec::<String>::new(),
        "JavaScript errors"
    );
    browser.screenshot("national").await;

    // New events change the figures without a reload.
    browser
        .js("window.__noReload = 'still here'; return true;")
        .await;
    let size_before = browser.attr("view", "data-tree-size").await;
    let submitted_before = browser
        .attr("value-online_submission_rate", "data-value")
        .await;
    publish_and_settle(&w.url, &w.base, &events[2000..], size + 1000).await;
    browser
        .until(
            "the shown tree size to move on",
            &format!("document.querySelector('[data-testid=\"view\"]').dataset.treeSize !== '{size_before}'"),
        )
        .await;
    assert_eq!(
        browser.js("return window.__noReload || null").await,
        "still here"
    );
    let last = browser.attr("last-updated", "data-time").await;
    assert!(!last.is_empty(), "last updated is shown");
    let window_now = browser.attr("view", "data-window").await;
    let api = get_json(
        &w.base,
        &format!("/v1/metrics?metric=online_submission_rate&scope=national&window={window_now}"),
    )
    .await;
    let x = api["values"][0]["value"].as_f64().expect("a value");
    browser
        .until(
            "the online submission tile to show the API's new value",
            &format!("Math.abs(Number(document.querySelector('[data-testid=\"value-online_submission_rate\"]').getAttribute('data-value')) - {x}) < 1e-9"),
        )
        .await;
    phase(&format!(
        "live: online submission {submitted_before} -> {x} without a reload"
    ));

    // A province with a merged unit says so.
    browser
        .click("[data-testid=\"ranking\"] a[data-scope=\"province:H05\"]")
        .await;
    browser.view_of("province:H05").await;
    let note = browser.text("merged").await;
    assert!(
        note.contains("Hà Giang"),
        "the page names the merged unit: {note:?}"
    );
    browser.click("[data-testid=\"crumb-0\"]").await;
    browser.view_of("national").await;

    // Drill down: a province, one of its communes; reload keeps the view; back by breadcrumb.
    browser
        .click("[data-testid=\"ranking\"] a[data-scope=\"province:H01\"]")
        .await;
    browser.view_of("province:H01").await;
    assert!(browser.url().await.contains("province"));
    assert!(browser.text("view-title").await.contains("Hà Nội"));
    browser.screenshot("province").await;
    let commune = browser
        .js("const a = document.querySelector('[data-testid=\"ranking\"] a[data-scope^=\"agency:000.01.\"]'); return a ? a.dataset.scope : null;")
        .await;
    let commune = commune
        .as_str()
        .expect("a commune among Hà Nội's agencies")
        .to_owned();
    browser
        .click(&format!(
            "[data-testid=\"ranking\"] a[data-scope=\"{commune}\"]"
        ))
        .await;
    browser.view_of(&commune).await;
    let title = browser.text("view-title").await;
    let units = socai_metrics::units();
    let (name, _) = units
        .name_of_scope(&socai_metrics::Scope::parse(&commune).unwrap())
        .expect("a commune of the units file");
    assert!(
        title.contains(&name),
        "title {title:?} names the commune {name:?}"
    );
    browser.c().refresh().await.expect("reload");
    browser.view_of(&commune).await;
    assert_eq!(
        browser.text("view-title").await,
        title,
        "a reload keeps the view"
    );
    browser.click("[data-testid=\"crumb-1\"]").await;
    browser.view_of("province:H01").await;
    browser.click("[data-testid=\"crumb-0\"]").await;
    browser.view_of("national").await;
    browser.c().back().await.expect("history back");
    browser.view_of("province:H01").await;
    phase("drill-down, reload, breadcrumb and history");

    // The English switch.
    let vi = browser.text("tile-fully_online_rate").await;
    browser.click("[data-testid=\"lang-toggle\"]").await;
    browser
        .until("English", "document.documentElement.lang === 'en'")
        .await;
    let en = browser.text("tile-fully_online_rate").await;
    assert!(en.contains("Fully online"), "{en}");
    assert_ne!(vi, en);
    assert!(browser.url().await.contains("lang=en"));

    // Verify: green on an honest ledger, and again once the log grew (a consistency proof).
    let (status, text) = browser.verify().await;
    assert_eq!(status, "ok", "{text}");
    assert_eq!(browser.attr("verify-result", "data-witnesses").await, "0");
    assert!(text.contains("no witnesses configured"), "{text}");
    let first = browser
        .js("return Object.keys(localStorage).filter(k => k.startsWith('socai.lastCheckpoint')).length")
        .await;
    assert_eq!(first, 1, "the verified checkpoint is remembered");
    let more = workload(3200, 5);
    publish_and_settle(&w.url, &w.base, &more[3000..], size + 1200).await;
    let (status, text) = browser.verify().await;
    assert_eq!(status, "ok", "{text}");
    assert_eq!(
        browser.attr("verify-result", "data-reason").await,
        "prove",
        "the second check proved the log extends the first: {text}"
    );
    phase("verify green twice");

    // Wall mode: no controls, rotating provinces.
    browser
        .c()
        .goto(&format!("{}/dashboard?wall=1", w.base))
        .await
        .unwrap();
    browser
        .until("wall mode", "document.body.classList.contains('wall')")
        .await;
    let first_scope = browser
        .until("a province on the wall", "(() => { const m = document.querySelector('[data-testid=\"view\"]'); return m.dataset.status === 'ready' && m.dataset.scope.startsWith('province:') && m.dataset.scope; })()")
        .await;
    let controls = browser
        .js("return [...document.querySelectorAll('button')].filter(b => b.offsetParent !== null).length")
        .await;
    assert_eq!(controls, 0, "no visible controls in wall mode");
    browser.screenshot("wall").await;
    browser
        .until(
            "the wall to rotate",
            &format!(
                "document.querySelector('[data-testid=\"view\"]').dataset.scope !== {first_scope}"
            ),
        )
        .await;
    assert_eq!(
        browser.errors().await,
        Vec::<String>::new(),
        "JavaScript errors"
    );

    // The stale warning once the worker stops.
    browser
        .c()
        .goto(&format!("{}/dashboard", w.base))
        .await
        .unwrap();
    browser.view_of("national").await;
    browser
        .until(
            "a live heartbeat",
            "document.querySelector('[data-testid=\"last-updated\"]').dataset.time",
        )
        .await;
    // While the worker runs (an idle ledger: only its heartbeats arrive), no warning: watched
    // for longer than stale_after_secs (12 s), i.e. across at least two heartbeats.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(14) {
        let hidden = browser
            .js("return document.querySelector('[data-testid=\"stale\"]').hidden")
            .await;
        assert_eq!(
            hidden,
            true,
            "stale warning while the worker runs, after {:?}",
            watched.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    w.worker.kill();
    browser
        .until(
            "the stale warning",
            "!document.querySelector('[data-testid=\"stale\"]').hidden",
        )
        .await;
    assert!(!browser.text("stale").await.is_empty());
    // Not before stale_after_secs (12 s) since the page last heard anything, on its own clock
    // (the kill's moment says little: the last heartbeat came up to a beat before it).
    let silent_ms = browser
        .js("return Date.now() - Date.parse(document.querySelector('[data-testid=\"last-updated\"]').dataset.time);")
        .await
        .as_f64()
        .expect("a time since the last update");
    assert!(
        silent_ms >= 12_000.0,
        "the warning came {silent_ms} ms after the page last heard from the ledger, before stale_after_secs (12 s)"
    );
    phase("stale warning after the worker stopped");
    drop(browser);
    w.serve.stop();
    drop(w.ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_turns_red_on_a_forged_proof_or_a_foreign_key() {
    let mut w = world(&[("SOCAI_TEST_FAULT", "forged-consistency")]);
    let events = workload(1200, 9);
    publish_and_settle(&w.url, &w.base, &events[..800], 800).await;
    let browser = Browser::start().await;
    browser
        .c()
        .goto(&format!("{}/dashboard", w.base))
        .await
        .unwrap();
    browser.view_of("national").await;
    // The first check has no earlier checkpoint to extend; it fails only if the figures shown
    // were computed before the checkpoint (their proof is forged too).
    let (status, text) = browser.verify().await;
    assert!(
        status == "ok" || text.contains("nhất quán"),
        "{status}: {text}"
    );
    publish_and_settle(&w.url, &w.base, &events[800..], 1200).await;
    let (status, reason) = browser.verify().await;
    assert_eq!(status, "fail", "{reason}");
    assert!(
        reason.contains("nhất quán"),
        "the reason names the consistency proof: {reason}"
    );
    // The forged answer is not remembered: nothing at or beyond 1200 is stored.
    let stored = browser
        .js("const k = Object.keys(localStorage).find(k => k.startsWith('socai.lastCheckpoint')); return k ? JSON.parse(localStorage.getItem(k)).size : 0;")
        .await;
    assert!(stored.as_u64() < Some(1200), "stored {stored}");

    // The same ledger served with a checkpoint signed by another key.
    w.serve.stop();
    let mut serve = w.ledger.serve_env(
        &w.url,
        Some("ledger"),
        &[("SOCAI_TEST_FAULT", "foreign-key")],
    );
    let base = serve.http_url();
    browser
        .c()
        .goto(&format!("{base}/dashboard?lang=en"))
        .await
        .unwrap();
    browser.view_of("national").await;
    let (status, reason) = browser.verify().await;
    assert_eq!(status, "fail", "{reason}");
    assert!(
        reason.contains("signature"),
        "the reason names the signature: {reason}"
    );
    drop(browser);
    serve.stop();
    w.worker.kill();
}

/// Installs a `fetch` in the page that hands `path`'s JSON to `edit` (a JS function body of
/// `j`, returning the JSON to give the page): a server that lies, for Verify to catch.
/// `restore_fetch` undoes it.
async fn tamper(browser: &Browser, path: &str, edit: &str) {
    browser
        .js(&format!(
            r#"const real = window.__realFetch || window.fetch;
            window.__realFetch = real;
            window.fetch = async (url, opts) => {{
              const res = await real(url, opts);
              if (!String(url).startsWith('{path}')) return res;
              const j = await res.json();
              const edited = ((j) => {{ {edit} }})(j);
              return new Response(JSON.stringify(edited), {{ status: res.status, headers: {{ 'Content-Type': 'application/json' }} }});
            }};
            return true;"#
        ))
        .await;
}

async fn restore_fetch(browser: &Browser) {
    browser
        .js("if (window.__realFetch) window.fetch = window.__realFetch; return true;")
        .await;
}

/// The page waits until witness `i` of the panel has `status` at `size` (`data-cosigned-size`).
async fn witness_shown(browser: &Browser, i: usize, status: &str, size: Option<u64>) {
    let size = size.map_or(String::new(), |s| s.to_string());
    browser
        .until(
            &format!("witness {i} {status} at {size:?} on the panel"),
            &format!(
                "(() => {{ const e = document.querySelector('[data-testid=\"witness-{i}\"]'); return e && e.dataset.status === '{status}' && ('{size}' === '' || e.dataset.cosignedSize === '{size}'); }})()"
            ),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_witnesses_and_verifies_their_cosignatures() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let ledger = Ledger::new();
    let log_vkey = ledger.dir().join("checkpoint.vkey");
    let (n1, n2) = ("w1.test/witness", "w2.test/witness");
    let v1 = WitnessProcess::init(&ledger.path("w1"), n1);
    let v2 = WitnessProcess::init(&ledger.path("w2"), n2);
    // Another key under w1's name: what a server swapping a witness's key would list.
    let impostor = WitnessProcess::init(&ledger.path("w1-impostor"), n1);
    let w1 = WitnessProcess::start(&ledger.path("w1"), &log_vkey, "127.0.0.1:0");
    let mut w2 = WitnessProcess::start(&ledger.path("w2"), &log_vkey, "127.0.0.1:0");
    let config = format!(
        "{CONFIG}\n[[witnesses]]\nurl = \"{}\"\nvkey = \"{v1}\"\n\n[[witnesses]]\nurl = \"{}\"\nvkey = \"{v2}\"\n",
        w1.url(),
        w2.url()
    );
    let w = world_on(ledger, &config, &[]);
    let events = workload(500, 11);
    publish_and_settle(&w.url, &w.base, &events[..300], 300).await;
    wait_until(
        PATIENCE,
        "the latest checkpoint cosigned by both witnesses",
        || async {
            try_json(&w.base, "/v1/checkpoints/latest")
                .await
                .is_some_and(|c| c["cosignatures"].as_array().is_some_and(|l| l.len() == 2))
        },
    )
    .await;
    let size = get_json(&w.base, "/v1/checkpoints/latest").await["size"]
        .as_u64()
        .unwrap();
    phase(&format!("checkpoint {size} cosigned by both witnesses"));

    let browser = Browser::start().await;
    browser
        .c()
        .goto(&format!("{}/dashboard", w.base))
        .await
        .unwrap();
    browser.view_of("national").await;
    // The panel: both witnesses cosigned the latest checkpoint, each named with its time.
    witness_shown(&browser, 0, "ok", Some(size)).await;
    witness_shown(&browser, 1, "ok", Some(size)).await;
    assert_eq!(browser.attr("witnesses", "data-status").await, "ok");
    for (i, name) in [n1, n2].iter().enumerate() {
        assert_eq!(
            browser.attr(&format!("witness-{i}"), "data-name").await,
            *name
        );
        let detail = browser.text(&format!("witness-{i}-detail")).await;
        assert!(
            detail.contains("đã đồng ký checkpoint mới nhất") && detail.contains(" lúc "),
            "witness {i}: {detail:?}"
        );
        assert!(
            !browser
                .attr(&format!("witness-{i}"), "data-cosigned-at")
                .await
                .is_empty(),
            "witness {i} shows its cosignature's time"
        );
    }
    let summary = browser.text("witnesses-summary").await;
    assert!(summary.starts_with("2/2 nhân chứng"), "{summary:?}");

    // Verify checks both cosignatures in the browser.
    let (status, text) = browser.verify().await;
    assert_eq!(status, "ok", "{text}");
    assert_eq!(
        (
            browser.attr("verify-result", "data-cosigned").await,
            browser.attr("verify-result", "data-witnesses").await
        ),
        ("2".to_owned(), "2".to_owned()),
        "{text}"
    );
    assert!(text.contains("2/2 nhân chứng đồng ký"), "{text}");
    phase("panel and Verify: 2 of 2");

    // A server that changes one byte of w2's cosignature: Verify turns red and names it.
    tamper(
        &browser,
        "/v1/checkpoints/latest",
        &format!(
            r#"j.cosignatures = j.cosignatures.map((line) => {{
                 if (!line.startsWith('— {n2} ')) return line;
                 const b = socaiVerify.base64ToBytes(line.split(' ').pop());
                 b[40] ^= 1;
                 return '— {n2} ' + socaiVerify.bytesToBase64(b);
               }});
               return j;"#
        ),
    )
    .await;
    let (status, text) = browser.verify().await;
    assert_eq!(status, "fail", "{text}");
    assert_eq!(
        browser.attr("verify-result", "data-reason").await,
        "cosignature"
    );
    assert!(text.contains(n2), "the failure names the witness: {text}");
    // A server that lists another key for w1 than the one pinned at the first Verify.
    tamper(
        &browser,
        "/v1/witnesses",
        &format!(
            "j.witnesses = j.witnesses.map((w) => w.name === '{n1}' ? Object.assign(w, {{ vkey: '{impostor}' }}) : w); return j;"
        ),
    )
    .await;
    let (status, text) = browser.verify().await;
    assert_eq!(status, "fail", "{text}");
    assert_eq!(
        browser.attr("verify-result", "data-reason").await,
        "witness_key_changed",
        "{text}"
    );
    // A server that stops listing w2 and drops its cosignature: w2 stays pinned, so Verify says
    // 1 of 2, not 1 of 1.
    tamper(
        &browser,
        "/v1/",
        &format!(
            r#"if (Array.isArray(j.witnesses)) j.witnesses = j.witnesses.filter((w) => w.name !== '{n2}');
               if (Array.isArray(j.cosignatures)) j.cosignatures = j.cosignatures.filter((l) => !l.startsWith('— {n2} '));
               return j;"#
        ),
    )
    .await;
    let (status, text) = browser.verify().await;
    assert_eq!(status, "ok", "{text}");
    assert_eq!(
        (
            browser.attr("verify-result", "data-cosigned").await,
            browser.attr("verify-result", "data-witnesses").await
        ),
        ("1".to_owned(), "2".to_owned()),
        "{text}"
    );
    restore_fetch(&browser).await;
    let (status, text) = browser.verify().await;
    assert_eq!(status, "ok", "the honest answers verify again: {text}");
    phase("a forged cosignature and a swapped witness key turn Verify red");

    // w2 stops: the next checkpoint is cosigned by w1 alone, and the panel shows w2's error.
    w2.kill();
    publish_and_settle(&w.url, &w.base, &events[300..], 500).await;
    let size = get_json(&w.base, "/v1/checkpoints/latest").await["size"]
        .as_u64()
        .unwrap();
    assert!(size >= 500, "{size}");
    witness_shown(&browser, 0, "ok", Some(size)).await;
    witness_shown(&browser, 1, "error", None).await;
    let reported = get_json(&w.base, "/v1/witnesses").await["witnesses"][1]["error"]
        .as_str()
        .expect("the API reports w2's error")
        .to_owned();
    let detail = browser.text("witness-1-detail").await;
    assert!(
        detail.contains(&format!("lỗi: {reported}")) && reported.contains(&w2.addr),
        "the panel shows the error of the witness that stopped ({reported:?}): {detail:?}"
    );
    assert_eq!(browser.attr("witnesses", "data-status").await, "error");
    browser
        .js("document.querySelector('[data-testid=\"witnesses\"]').scrollIntoView({block: 'end'}); return true;")
        .await;
    browser.screenshot("witnesses").await;
    let (status, text) = browser.verify().await;
    assert_eq!(status, "ok", "{text}");
    assert_eq!(
        browser.attr("verify-result", "data-cosigned").await,
        "1",
        "{text}"
    );
    assert!(text.contains("1/2 nhân chứng đồng ký"), "{text}");
    assert_eq!(
        browser.errors().await,
        Vec::<String>::new(),
        "JavaScript errors"
    );
    phase("a stopped witness: its error on the panel, Verify 1 of 2");
    drop(browser);
    let mut w = w;
    w.serve.stop();
    w.worker.kill();
    drop(w1);
}
