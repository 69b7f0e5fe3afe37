//! A real headless browser for the console's test: Debian's Chromium
//! driven by `harness/browser/console.mjs` (playwright-core, pinned by
//! `harness/browser/package-lock.json`), one page per [`Page`], one step at
//! a time so the test can act between two steps. Both are installed by
//! `scripts/install-browser.sh` (which `scripts/test.sh` runs); when either
//! is missing, [`Browser::find`] fails with that command, it never skips.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The command that installs the browser and the driver's packages.
pub const INSTALL: &str = "scripts/install-browser.sh";

/// How much longer than a step's own timeout the harness waits for its
/// answer before it calls the driver hung.
const GRACE: Duration = Duration::from_secs(30);
/// The driver's timeout for steps that name none.
const STEP_TIMEOUT_MS: u64 = 15_000;

/// Why the browser could not be used, or a step failed.
#[derive(Debug)]
pub enum BrowserError {
    /// Node.js, Chromium or playwright-core is not installed.
    Missing {
        /// What is missing, and where it was looked for.
        what: String,
    },
    /// Starting or talking to the driver failed.
    Io(std::io::Error),
    /// A step failed: the driver's report (error, URL, the page's text).
    Step {
        /// The step as sent.
        step: Value,
        /// The driver's answer.
        answer: Value,
        /// What the driver printed on stderr.
        stderr: String,
    },
    /// The driver stopped answering, or answered something else.
    Driver {
        /// What went wrong.
        what: String,
        /// What the driver printed on stderr.
        stderr: String,
    },
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrowserError::Missing { what } => write!(
                f,
                "{what}: install the browser test's tools with `{INSTALL}` (scripts/test.sh runs it)"
            ),
            BrowserError::Io(e) => write!(f, "browser driver: {e}"),
            BrowserError::Step { step, answer, .. } => write!(
                f,
                "browser step {step} failed: {}\n  at {}\n  console: {}\n--- page text ---\n{}",
                answer["error"].as_str().unwrap_or("(no error)"),
                answer["url"].as_str().unwrap_or("?"),
                answer["console"],
                answer["page_text"].as_str().unwrap_or("")
            ),
            BrowserError::Driver { what, stderr } => {
                write!(f, "browser driver: {what}\n--- its stderr ---\n{stderr}")
            }
        }
    }
}

impl std::error::Error for BrowserError {}

impl From<std::io::Error> for BrowserError {
    fn from(e: std::io::Error) -> Self {
        BrowserError::Io(e)
    }
}

/// One step of the driver (see `harness/browser/console.mjs`).
#[derive(Debug, Clone)]
pub struct Step(Value);

impl Step {
    /// Opens `path` of the base URL.
    pub fn goto(path: &str) -> Self {
        Step(json!({"action": "goto", "path": path}))
    }
    /// Signs in on `/login` with the session's token.
    pub fn login() -> Self {
        Step(json!({"action": "login"}))
    }
    /// Waits until `text` shows on the page.
    pub fn expect_text(text: &str) -> Self {
        Step(json!({"action": "expect-text", "text": text}))
    }
    /// Waits until an element matching `selector` shows containing `text`
    /// (any text when `None`), for up to `timeout`.
    pub fn wait_for(selector: &str, text: Option<&str>, timeout: Duration) -> Self {
        Step(json!({"action": "wait-for", "selector": selector, "text": text})).timeout(timeout)
    }
    /// Clicks the element of `role` (`link`, `button`) named `name` exactly.
    pub fn click(role: &str, name: &str) -> Self {
        Step(json!({"action": "click", "role": role, "name": name}))
    }
    /// As [`Step::click`], within the first element matching `within`.
    pub fn click_within(within: &str, role: &str, name: &str) -> Self {
        Step(json!({"action": "click", "role": role, "name": name, "within": within}))
    }
    /// Types `value` into the field labelled `label`.
    pub fn fill(label: &str, value: &str) -> Self {
        Step(json!({"action": "fill", "label": label, "value": value}))
    }
    /// Saves a full-page PNG screenshot at `path`.
    pub fn screenshot(path: &Path) -> Self {
        Step(json!({"action": "screenshot", "path": path}))
    }

    /// The same step with its own timeout (the driver's default is 15 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0["timeout"] = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .into();
        self
    }

    fn answer_deadline(&self) -> Duration {
        Duration::from_millis(self.0["timeout"].as_u64().unwrap_or(STEP_TIMEOUT_MS)) + GRACE
    }
}

/// A step that succeeded.
#[derive(Debug, Clone)]
pub struct Done {
    /// How long the step took.
    pub took: Duration,
    /// The page's URL after it.
    pub url: String,
    /// The matched element's text (`expect-text`, `wait-for`).
    pub text: Option<String>,
    /// Errors the page logged to its console since the step before
    /// (a script error, a resource refused by the CSP, a failed load), each
    /// with the URL it concerns.
    pub console: Vec<String>,
}

/// Where the driver, Node.js, playwright-core and Chromium are.
#[derive(Debug, Clone)]
pub struct Browser {
    node: PathBuf,
    driver: PathBuf,
    modules: PathBuf,
    chromium: PathBuf,
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn present(path: PathBuf, what: &str) -> Result<PathBuf, BrowserError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(BrowserError::Missing {
            what: format!("no {what} at {}", path.display()),
        })
    }
}

impl Browser {
    /// Finds everything; fails with the installing command when something
    /// is missing. `CHROMIUM` and `PLAYWRIGHT_MODULES` override the places.
    pub fn find() -> Result<Self, BrowserError> {
        let root = crate::workspace_root();
        let node = on_path("node").ok_or_else(|| BrowserError::Missing {
            what: "no `node` (Node.js) on PATH".to_owned(),
        })?;
        let chromium = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        let modules = std::env::var_os("PLAYWRIGHT_MODULES")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".tools/browser/node_modules"));
        Ok(Self {
            node,
            driver: present(root.join("harness/browser/console.mjs"), "browser driver")?,
            chromium: present(chromium, "Chromium")?,
            modules: present(modules.join("playwright-core"), "playwright-core")?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or(modules),
        })
    }

    /// Opens a page of a fresh browser (its own empty profile) for the site
    /// at `base`, signing in with `token` when a step asks.
    pub async fn open(&self, base: &str, token: &str) -> Result<Page, BrowserError> {
        let stderr_path = crate::process::log_dir()
            .join(format!("browser-{}.log", uuid::Uuid::new_v4().simple()));
        let stderr = crate::process::log_file(&stderr_path);
        let mut child = Command::new(&self.node)
            .arg(&self.driver)
            .env("PLAYWRIGHT_MODULES", &self.modules)
            .env("CHROMIUM", &self.chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(BrowserError::Io(std::io::Error::other("no pipes")));
        };
        let session = json!({"base": base, "token": token});
        stdin.write_all(format!("{session}\n").as_bytes()).await?;
        Ok(Page {
            child,
            stdin: Some(stdin),
            answers: BufReader::new(stdout).lines(),
            stderr_path,
        })
    }
}

/// One page of a running browser.
pub struct Page {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Lines<BufReader<ChildStdout>>,
    stderr_path: PathBuf,
}

impl Page {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn driver_error(&self, what: String) -> BrowserError {
        BrowserError::Driver {
            what,
            stderr: self.stderr(),
        }
    }

    /// Runs one step; its result, or the failure with the page's text.
    pub async fn step(&mut self, step: Step) -> Result<Done, BrowserError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.driver_error("the page is closed".to_owned()));
        };
        stdin.write_all(format!("{}\n", step.0).as_bytes()).await?;
        stdin.flush().await?;
        let line =
            match tokio::time::timeout(step.answer_deadline(), self.answers.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => return Err(self.driver_error(format!("exited at step {}", step.0))),
                Ok(Err(e)) => return Err(BrowserError::Io(e)),
                Err(_) => return Err(self.driver_error(format!("no answer to step {}", step.0))),
            };
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| self.driver_error(format!("answered {line:?}: {e}")))?;
        if answer["ok"] != true {
            return Err(BrowserError::Step {
                step: step.0,
                answer,
                stderr: self.stderr(),
            });
        }
        let console = answer["console"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Done {
            took: Duration::from_millis(answer["ms"].as_u64().unwrap_or_default()),
            url: answer["url"].as_str().unwrap_or_default().to_owned(),
            text: answer["text"].as_str().map(str::to_owned),
            console,
        })
    }

    /// Runs `steps` in order, stopping at the first failure.
    pub async fn run(&mut self, steps: Vec<Step>) -> Result<Vec<Done>, BrowserError> {
        let mut done = Vec::with_capacity(steps.len());
        for step in steps {
            done.push(self.step(step).await?);
        }
        Ok(done)
    }

    /// Closes the browser; fails when the driver did not exit cleanly.
    pub async fn close(mut self) -> Result<(), BrowserError> {
        drop(self.stdin.take());
        match tokio::time::timeout(GRACE, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(self.driver_error(format!("exited with {status}"))),
            Ok(Err(e)) => Err(BrowserError::Io(e)),
            Err(_) => Err(self.driver_error("did not exit".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const LOGIN: &str = r#"<!doctype html><title>Sign in</title>
<form method="get" action="/home"><label for="token">API token</label>
<input id="token" name="token" type="password"><button>Sign in</button></form>"#;
    const HOME: &str = r#"<!doctype html><title>Home</title><h1>Home</h1>
<table id="rows"><tr data-n="1"><td class="state">flowing</td></tr></table>
<label for="q">Order id</label><input id="q"><a href="/login">Back</a>
<script src="/late.js"></script>"#;
    // Changes the row after a while: a step waits for it, no reload.
    const LATE: &str = "setTimeout(() => { document.querySelector('[data-n=\"1\"] .state').textContent = 'held'; }, 400);";

    /// A page server of a few lines: the tiny site above on a free port.
    async fn serve() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]);
                let path = request.split(' ').nth(1).unwrap_or("/");
                let (status, kind, body) = match path.split('?').next() {
                    Some("/login") => ("200 OK", "text/html", LOGIN),
                    Some("/home") => ("200 OK", "text/html", HOME),
                    Some("/late.js") => ("200 OK", "text/javascript", LATE),
                    _ => ("404 Not Found", "text/plain", "no such page"),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn the_driver_signs_in_waits_clicks_fills_and_shoots_in_a_real_browser() {
        let base = serve().await;
        let browser = Browser::find().unwrap_or_else(|e| panic!("{e}"));
        let mut page = browser.open(&base, "secret").await.expect("browser");
        let shot = crate::process::log_dir().join("browser-unit.png");
        let done = page
            .run(vec![
                Step::login(),
                Step::expect_text("Home"),
                Step::wait_for("#rows tr[data-n='1']", Some("held"), Duration::from_secs(5)),
                Step::fill("Order id", "42"),
                Step::screenshot(&shot),
                Step::click("link", "Back"),
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(done[0].url.contains("/home?token=secret"), "{done:?}");
        assert_eq!(done[2].text.as_deref(), Some("held"));
        assert!(done[5].url.ends_with("/login"), "{done:?}");
        let png = std::fs::read(&shot).expect("the screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");

        // A failure says what was looked for and what the page showed.
        let failed = page
            .step(Step::wait_for(
                "h1",
                Some("Nowhere"),
                Duration::from_millis(500),
            ))
            .await
            .expect_err("no such heading");
        let said = failed.to_string();
        assert!(
            said.contains("Nowhere") && said.contains("API token"),
            "{said}"
        );
        assert!(page.close().await.is_err(), "the driver exits non-zero");
    }
}
