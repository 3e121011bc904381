//! A real headless Chromium driven over W3C WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the dashboard's browser tests: a small client over HTTP, the axe-core
//! accessibility check, and screenshots.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The element key of W3C WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver key codes.
pub const TAB: &str = "\u{E004}";
/// Enter.
pub const ENTER: &str = "\u{E007}";

/// Where Debian puts the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// axe-core, vendored for the tests (see `tests/fixtures/axe-core/README.md`).
const AXE: &str = include_str!("../fixtures/axe-core/axe.min.js");

/// One chromedriver process with one headless Chromium session. Dropping it ends both.
pub struct Browser {
    driver: tokio::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// One element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// An axe-core finding.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Rule id (`color-contrast`, `label`, ...).
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    /// What it is about.
    pub help: String,
    /// Up to three offending elements' selectors.
    pub targets: Vec<String>,
}

/// Whether this machine has the browser and its driver (`.ci/run` installs them).
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    /// Start chromedriver and a headless Chromium at a laptop-sized window.
    pub async fn start() -> Self {
        assert!(
            available(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        );
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("browser profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1366,900", "--no-first-run", "--disable-extensions",
                    "--disable-background-networking", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .expect("session answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        let browser = Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        };
        browser
            .cmd(
                "POST",
                "/timeouts",
                Some(json!({"pageLoad": 30_000, "script": 30_000, "implicit": 0})),
            )
            .await;
        browser
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    async fn try_cmd(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let answer: Value = request
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(error) = answer["value"]["error"].as_str() {
            return Err(format!(
                "{error}: {}",
                answer["value"]["message"].as_str().unwrap_or_default()
            ));
        }
        Ok(answer["value"].clone())
    }

    /// Load `url` and wait for it (the load event).
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, waiting up to `patience` for it.
    pub async fn find_within(&self, css: &str, patience: Duration) -> Option<Element> {
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(v) = self
                .try_cmd(
                    "POST",
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await
                && let Some(id) = v[ELEMENT].as_str()
            {
                return Some(Element(id.to_string()));
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css` (waiting a few seconds); panics when there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.find_within(css, Duration::from_secs(5)).await {
            Some(e) => e,
            None => panic!(
                "no element {css:?} on {}: {}",
                self.url().await,
                self.text_of_body().await
            ),
        }
    }

    /// Every element matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_string())))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The rendered text of an element.
    pub async fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The rendered text of an element, or `None` when the page replaced it meanwhile (a live
    /// region refreshed between finding the element and reading it).
    pub async fn try_text(&self, e: &Element) -> Option<String> {
        match self
            .try_cmd("GET", &format!("/element/{}/text", e.0), None)
            .await
        {
            Ok(v) => Some(v.as_str().unwrap_or_default().to_string()),
            Err(error) if error.starts_with("stale element reference") => None,
            Err(error) => panic!("WebDriver GET /element/{}/text: {error}", e.0),
        }
    }

    /// The rendered text of the first element matching `css`, found again when a live refresh
    /// replaced it before it could be read.
    pub async fn text_of(&self, css: &str) -> String {
        for _ in 0..50 {
            let e = self.find(css).await;
            if let Some(t) = self.try_text(&e).await {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} kept being replaced before it could be read");
    }

    /// The rendered text of the page.
    pub async fn text_of_body(&self) -> String {
        match self
            .try_cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": "body"})),
            )
            .await
        {
            Ok(v) => match v[ELEMENT].as_str() {
                Some(id) => self.text(&Element(id.to_string())).await,
                None => String::new(),
            },
            Err(e) => format!("<no body: {e}>"),
        }
    }

    /// Click an element.
    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})))
            .await;
    }

    /// Type into an element.
    pub async fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Clear an input.
    pub async fn clear(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})))
            .await;
    }

    /// Run `script` (a function body; `arguments` are `args`) and return its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Accept the `confirm()` dialog that is open (the dashboard asks before quarantine).
    pub async fn accept_alert(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .try_cmd("POST", "/alert/accept", Some(json!({})))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "no dialog to accept");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Press one key (a WebDriver key code such as [`TAB`] or [`ENTER`]) on whatever has focus.
    pub async fn press(&self, key: &str) {
        self.cmd(
            "POST",
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
            ),
        )
        .await;
        self.cmd("DELETE", "/actions", None).await;
    }

    /// Remove every cookie of the current origin (sign out the hard way).
    pub async fn clear_cookies(&self) {
        self.cmd("DELETE", "/cookie", None).await;
    }

    /// The cookies the browser holds for the current page, as WebDriver reports them.
    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Set the window size (laptop and narrow widths).
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Save a PNG screenshot of the viewport as `dir/name.png`; returns its path.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        std::fs::create_dir_all(dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Run axe-core on the current page: its violations.
    pub async fn axe(&self) -> Vec<Violation> {
        let script = format!(
            "{AXE}\n;var done = arguments[arguments.length - 1];\
             axe.run(document, {{resultTypes: ['violations']}}).then(function (r) {{\
               done(r.violations.map(function (v) {{ return {{id: v.id, impact: v.impact, help: v.help,\
                 targets: v.nodes.slice(0, 3).map(function (n) {{ return String(n.target); }})}}; }}));\
             }}, function (e) {{ done({{error: String(e)}}); }});"
        );
        let v = self
            .cmd(
                "POST",
                "/execute/async",
                Some(json!({"script": script, "args": []})),
            )
            .await;
        assert!(v.get("error").is_none(), "axe-core failed: {v}");
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| Violation {
                        id: x["id"].as_str().unwrap_or_default().to_string(),
                        impact: x["impact"].as_str().unwrap_or_default().to_string(),
                        help: x["help"].as_str().unwrap_or_default().to_string(),
                        targets: x["targets"]
                            .as_array()
                            .map(|t| {
                                t.iter()
                                    .filter_map(|s| s.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The browser's navigation timing of the current page: (response end, load event end)
    /// in ms since navigation start.
    pub async fn load_timing(&self) -> (f64, f64) {
        let v = self
            .execute(
                "var t = performance.getEntriesByType('navigation')[0]; return [t.responseEnd, t.loadEventEnd];",
                json!([]),
            )
            .await;
        (
            v[0].as_f64().unwrap_or(f64::NAN),
            v[1].as_f64().unwrap_or(f64::NAN),
        )
    }

    /// End the session and the driver (what dropping does, awaited).
    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        self.session.clear();
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    /// A test that panics still ends Chromium: the session is deleted with a plain blocking
    /// request (no runtime is usable in `drop`), then the driver is killed by `kill_on_drop`.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Some(addr) = self.base.strip_prefix("http://") else {
            return;
        };
        if self.session.is_empty() {
            return;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
}
