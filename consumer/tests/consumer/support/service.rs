//! The consumer service run in its own runtime, so a test can crash it.

use std::future::ready;
use std::net::SocketAddr;
use std::time::Duration;

use consumer::{Application, ConsumerConfig};
use harness::wait::eventually;
use platform::Env;
use tokio_util::sync::CancellationToken;

use super::context::WAIT;

/// The consumer service, running in a runtime of its own.
pub struct RunningConsumer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningConsumer {
    pub fn start(bootstrap: &str, database_url: &str, group: &str, extra: &[(&str, &str)]) -> Self {
        harness::telemetry::install("warn,consumer=info");
        let mut vars: Vec<(String, String)> = vec![
            ("CONSUMER_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.into()),
            ("DATABASE_URL".into(), database_url.into()),
            ("KAFKA_CONSUMER_GROUP".into(), group.into()),
            ("RETRY_BACKOFF_MS".into(), "100".into()),
            ("CIRCUIT_PROBE_MS".into(), "200".into()),
            ("SHUTDOWN_TIMEOUT_SECS".into(), "10".into()),
            ("KAFKA_STATISTICS_INTERVAL_MS".into(), "500".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = ConsumerConfig::from_env(&Env::from_pairs(vars)).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let stop = CancellationToken::new();
        let (addr, handle) = std::thread::scope(|s| {
            s.spawn(|| {
                runtime.block_on(async {
                    let app = Application::build(config, prometheus::Registry::new())
                        .await
                        .expect("consumer starts");
                    let addr = app.local_addr().expect("bound");
                    (addr, tokio::spawn(app.run(stop.clone())))
                })
            })
            .join()
            .expect("start thread")
        });
        Self {
            addr,
            stop,
            runtime: Some(runtime),
            handle: Some(handle),
        }
    }

    /// Graceful stop: finish the batch, commit, leave the group.
    pub fn stop(mut self) {
        self.stop.cancel();
        let runtime = self.runtime.take().expect("running");
        let handle = self.handle.take().expect("running");
        std::thread::spawn(move || {
            runtime.block_on(handle).expect("join").expect("clean stop");
            runtime.shutdown_timeout(Duration::from_secs(5));
        })
        .join()
        .expect("stop thread");
    }

    /// A crash: every task dropped where it stands, no final commit.
    pub fn crash(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// The status of `/readyz`, and its body.
    pub fn readiness(&self) -> (u16, String) {
        let url = format!("http://{}/readyz", self.addr);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let answer = reqwest::get(url).await.unwrap();
                (answer.status().as_u16(), answer.text().await.unwrap())
            })
        })
        .join()
        .unwrap()
    }

    /// The exposition of `/metrics`.
    pub fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
        })
        .join()
        .unwrap()
    }
}

impl RunningConsumer {
    /// Scrapes `/metrics` until `holds` accepts the exposition, within
    /// [`WAIT`], and returns that exposition; fails with `what` and the
    /// last exposition scraped.
    pub async fn wait_for_metrics(&self, what: &str, holds: impl Fn(&str) -> bool) -> String {
        eventually(WAIT, what, || {
            let metrics = self.metrics();
            ready(if holds(&metrics) {
                Ok(metrics)
            } else {
                Err(metrics)
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for RunningConsumer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            self.stop.cancel();
            runtime.shutdown_background();
        }
    }
}
