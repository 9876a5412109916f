//! A real browser for the portal's tests: Debian's Chromium, headless,
//! driven over WebDriver by chromedriver (`scripts/test` installs both with
//! apt). Every page the test looks at is saved as a screenshot under
//! `target/screenshots/`, and the browser's console is read after each step:
//! an error there fails the test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver and one headless Chromium session, stopped when dropped.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    driver_url: String,
    base: String,
    shots: PathBuf,
    taken: usize,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Where screenshots go: `target/screenshots/<test>/` (CARGO_TARGET_DIR when set).
fn screenshot_dir(test: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots").join(test)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose pages are under
    /// `base` (the gateway's address).
    pub async fn start(base: &str, test: &str) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: ./scripts/test installs Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let driver_url = format!("http://127.0.0.1:{port}");
        let ready = async {
            loop {
                if reqwest::get(format!("{driver_url}/status")).await.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), ready).await.expect("chromedriver answers within 30 s");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-US"],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("a Chromium session");
        let shots = screenshot_dir(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Browser { client, driver, driver_url, base: base.trim_end_matches('/').to_owned(), shots, taken: 0 }
    }

    pub async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.client.find(Locator::Css("body")).await.expect("body").text().await.expect("text")
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("field {css}: {e}"));
        field.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field.send_keys(value).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn choose(&self, css: &str, value: &str) {
        let select = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("select {css}: {e}"));
        select.select_by_value(value).await.unwrap_or_else(|e| panic!("choose {value} in {css}: {e}"));
    }

    /// Clicks the first element `css` matches and waits for the next page.
    pub async fn click(&self, css: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        self.navigating(element.click(), css).await;
    }

    /// Clicks the link whose text is exactly `text` and waits for its page.
    pub async fn follow(&self, text: &str) {
        let link = self.client.find(Locator::LinkText(text)).await.unwrap_or_else(|e| panic!("link {text:?}: {e}"));
        self.navigating(link.click(), text).await;
    }

    /// Does `act`, then waits until the page it leads to has replaced this
    /// one and has loaded: the old document's root goes stale first.
    async fn navigating(&self, act: impl Future<Output = Result<(), fantoccini::error::CmdError>>, what: &str) {
        let old = self.client.find(Locator::Css("html")).await.expect("the page's root");
        act.await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let replaced = async {
            while old.tag_name().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            loop {
                let state = self.client.execute("return document.readyState;", vec![]).await;
                if state.is_ok_and(|s| s == "complete") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), replaced)
            .await
            .unwrap_or_else(|_| panic!("{what} led to no new page within 15 s"));
    }

    /// Types `keys` into `element` (focus may move on, as Tab does) and
    /// waits for the page they lead to.
    pub async fn keys(&self, element: &fantoccini::elements::Element, keys: &str) {
        self.navigating(element.send_keys(keys), "keys").await;
    }

    /// Saves the page as `NN-name.png`.
    pub async fn screenshot(&mut self, name: &str) {
        self.taken += 1;
        let png = self.client.screenshot().await.expect("screenshot");
        let file = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&file, png).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }

    /// Fetches `path` from within the page (with its session cookie), as a
    /// download link does; answers (status, body).
    pub async fn fetch(&self, path: &str) -> (u64, String) {
        let script = "const done = arguments[arguments.length - 1];\
                      fetch(arguments[0]).then(r => r.text().then(t => done([r.status, t])))\
                      .catch(e => done([0, String(e)]));";
        let answer = self.client.execute_async(script, vec![json!(path)]).await.expect("fetch in the page");
        (answer[0].as_u64().unwrap_or(0), answer[1].as_str().unwrap_or_default().to_owned())
    }

    /// Whether the page is wider than the window (a sideways scroll).
    pub async fn scrolls_sideways(&self) -> bool {
        let wider = self
            .client
            .execute("return document.documentElement.scrollWidth > window.innerWidth;", vec![])
            .await
            .expect("measure the page");
        wider.as_bool().unwrap_or(true)
    }

    /// The console's entries since the last call, as (level, message).
    pub async fn console(&self) -> Vec<(String, String)> {
        let session = self.client.session_id().await.expect("session id").expect("a session");
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .expect("chromedriver's log")
            .json()
            .await
            .expect("log as JSON");
        answer["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails on any console error since the last check, except those that
    /// contain one of `expected` (a refusal the test provokes on purpose).
    pub async fn assert_no_console_errors(&self, step: &str, expected: &[&str]) {
        let errors: Vec<String> = self
            .console()
            .await
            .into_iter()
            .filter(|(level, message)| level == "SEVERE" && !expected.iter().any(|e| message.contains(e)))
            .map(|(_, message)| message)
            .collect();
        assert!(errors.is_empty(), "console errors after {step}: {errors:#?}");
    }

    pub async fn close(self) {
        let Browser { client, mut driver, .. } = self;
        let _ = client.close().await;
        let _ = driver.kill().await;
    }
}
