//! HTTP load generators. Open loop: requests leave on a fixed schedule and
//! latency is measured from the scheduled time, so a slow answer cannot
//! hide the requests it delayed (no coordinated omission). Closed loop: a
//! fixed number of clients send back to back, to find the saturation rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

/// Where and what to post, or which URLs to read.
#[derive(Clone)]
pub struct Target {
    client: reqwest::Client,
    url: Arc<str>,
    body: Bytes,
    correlation_id: Option<Arc<str>>,
    accepted_status: u16,
    /// When set, requests are `GET`s of these, in turn.
    reads: Option<(Arc<[String]>, Arc<AtomicUsize>)>,
}

impl Target {
    /// Posts `body` to `url` over a client pooling up to `connections`.
    pub fn new(url: &str, body: Bytes, connections: usize) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            client,
            url: url.into(),
            body,
            correlation_id: None,
            accepted_status: 202,
            reads: None,
        })
    }

    /// `GET`s each of `urls` in turn (answered `200`: accepted) over a
    /// client pooling up to `connections`.
    pub fn reading(urls: Vec<String>, connections: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "nothing to read");
        let mut target = Self::new(&urls[0], Bytes::new(), connections)?.accepted_with(200);
        target.reads = Some((urls.into(), Arc::new(AtomicUsize::new(0))));
        Ok(target)
    }

    /// Counts answers with `status` as accepted instead of `202` (a batch
    /// answers `200`).
    pub fn accepted_with(mut self, status: u16) -> Self {
        self.accepted_status = status;
        self
    }

    /// Sends `X-Correlation-ID: id` with every request.
    pub fn correlated(mut self, id: &str) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// One request; true when it was answered as accepted.
    pub async fn send(&self) -> bool {
        if let Some((urls, next)) = &self.reads {
            let url = &urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()];
            return match self.client.get(url).send().await {
                Ok(r) => r.status().as_u16() == self.accepted_status && r.bytes().await.is_ok(),
                Err(_) => false,
            };
        }
        let mut request = self
            .client
            .post(&*self.url)
            .header("content-type", "application/json")
            .body(self.body.clone());
        if let Some(id) = &self.correlation_id {
            request = request.header("x-correlation-id", &**id);
        }
        match request.send().await {
            // Read the answer so the connection goes back to the pool.
            Ok(r) => r.status().as_u16() == self.accepted_status && r.bytes().await.is_ok(),
            Err(_) => false,
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Requests answered `202`.
    pub accepted: usize,
    /// Requests answered otherwise, or not at all.
    pub failed: usize,
    /// Wall time of the run, until the last answer.
    pub elapsed: Duration,
    /// Latency of each accepted request, seconds, sorted.
    pub latencies: Vec<f64>,
}

impl Run {
    /// Accepted requests per second.
    pub fn throughput(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }
}

/// `rate` requests per second for `duration`, on schedule, each latency
/// measured from the moment the request was due.
pub async fn open_loop(target: &Target, rate: f64, duration: Duration) -> Run {
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let start = tokio::time::Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut run = Run::default();
    let record = |(ok, latency): (bool, f64), run: &mut Run| {
        if ok {
            run.accepted += 1;
            run.latencies.push(latency);
        } else {
            run.failed += 1;
        }
    };
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        // Collect what finished while waiting for the next slot.
        loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    record(done_or_failed(done), &mut run);
                }
                () = tokio::time::sleep_until(due) => break,
            }
        }
        let target = target.clone();
        in_flight.push(tokio::spawn(async move {
            let ok = target.send().await;
            (ok, due.elapsed().as_secs_f64())
        }));
    }
    while let Some(done) = in_flight.next().await {
        record(done_or_failed(done), &mut run);
    }
    run.elapsed = start.elapsed();
    run.latencies.sort_by(f64::total_cmp);
    run
}

fn done_or_failed(done: Result<(bool, f64), tokio::task::JoinError>) -> (bool, f64) {
    done.unwrap_or((false, 0.0))
}

/// `clients` clients posting back to back for `duration`.
pub async fn closed_loop(target: &Target, clients: usize, duration: Duration) -> Run {
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), 0usize);
                while start.elapsed() < duration {
                    let sent = Instant::now();
                    if target.send().await {
                        latencies.push(sent.elapsed().as_secs_f64());
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut run = Run::default();
    for worker in workers {
        match worker.await {
            Ok((latencies, failed)) => {
                run.accepted += latencies.len();
                run.latencies.extend(latencies);
                run.failed += failed;
            }
            Err(_) => run.failed += 1,
        }
    }
    run.elapsed = start.elapsed();
    run.latencies.sort_by(f64::total_cmp);
    run
}
