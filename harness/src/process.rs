//! The service binaries as processes: started with an environment, probed
//! over HTTP, stopped with SIGTERM or killed with SIGKILL, restarted with
//! the same settings. Their output goes to a log file the test can read.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`producer`, `consumer`, `pubsubkafka`): in
/// `PUBSUBKAFKA_BIN_DIR`, or beside the running test's target directory.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("PUBSUBKAFKA_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/<profile>/deps/<test> -> target/<profile>
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from("target/debug"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "no {name} binary at {}: build the services first with `cargo build --bins` \
         (scripts/test.sh does) or set PUBSUBKAFKA_BIN_DIR",
        path.display()
    );
    path
}

/// Sends `signal` (such as `libc::SIGINT`) to `child`.
pub fn signal(child: &Child, signal: i32) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we spawned and still own.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// SIGTERM to `child`, then waits up to `timeout` for its exit; `None` if
/// it did not exit in time (then it is killed).
pub fn terminate(child: Child, timeout: Duration) -> Option<ExitStatus> {
    stop(child, libc::SIGTERM, timeout)
}

/// Sends `signal` (SIGINT: a Ctrl-C) to `child`, then waits up to `timeout`
/// for its exit; `None` if it did not exit in time (then it is killed).
pub fn stop(mut child: Child, signal_number: i32, timeout: Duration) -> Option<ExitStatus> {
    signal(&child, signal_number);
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A service process.
pub struct Service {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where its HTTP server listens.
    pub http: String,
    log: PathBuf,
    child: Option<Child>,
}

/// Where this test process keeps the logs of what it starts.
pub fn log_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pubsubkafka-e2e-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// The last `lines` lines of the log at `path` (none when it cannot be read).
pub fn tail(path: &std::path::Path, lines: usize) -> String {
    let all = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = all.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// `path` opened for appending (created if missing).
pub fn log_file(path: &std::path::Path) -> std::fs::File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

impl Service {
    /// Starts binary `name` with `env`, its HTTP server on a free port named
    /// by `http_var` (`PRODUCER_HTTP_ADDR` or `CONSUMER_HTTP_ADDR`).
    pub fn start(name: &str, http_var: &str, env: &[(&str, String)]) -> Self {
        let http = format!("127.0.0.1:{}", crate::free_port());
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        env.push((http_var.to_owned(), http.clone()));
        let log = log_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let mut service = Self {
            name: name.to_owned(),
            args: Vec::new(),
            env,
            http,
            log,
            child: None,
        };
        service.spawn();
        service
    }

    /// Starts binary `name` with arguments, serving HTTP on `http` (which
    /// the arguments must name).
    pub fn start_command(name: &str, args: &[&str], env: &[(&str, String)], http: &str) -> Self {
        let log = log_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let mut service = Self {
            name: name.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            http: http.to_owned(),
            log,
            child: None,
        };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let out = log_file(&self.log);
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary(&self.name))
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
    }

    /// The value of `name` in its environment, if set.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Waits until `path` answers 200, or fails with the log's tail.
    pub async fn wait_ready(&mut self, path: &str, timeout: Duration) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client
                .get(self.url(path))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            assert!(
                started.elapsed() < timeout,
                "{} not ready at {path} after {timeout:?}:\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no drain, no commit, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit; `None` if it did
    /// not exit in time (then it is killed).
    pub fn sigterm(&mut self, timeout: Duration) -> Option<ExitStatus> {
        terminate(self.child.take()?, timeout)
    }

    /// Waits for the process to exit by itself (for start-up failures).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if started.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the process again with the same settings and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Everything the process printed, in every life.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of output above debug level, each librdkafka
    /// complaint only when first seen (not its throttled repeats).
    pub fn notable_lines(&self, lines: usize) -> String {
        let all = self.logs();
        let notable: Vec<&str> = all
            .lines()
            .filter(|l| {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                    return true;
                };
                let level = v["level"].as_str().unwrap_or("");
                let repeat = v["fields"]["suppressed"].as_u64().is_some_and(|n| n > 0);
                level != "DEBUG" && level != "TRACE" && !repeat
            })
            .collect();
        notable[notable.len().saturating_sub(lines)..].join("\n")
    }

    /// The last `lines` lines of output.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.log_tail(60));
        }
    }
}
