//! The HTTP server every service runs, bounded in what a client can hold:
//! a request head must arrive within `HTTP_HEADER_TIMEOUT_MS` of its first
//! byte (and a new connection must start one within it), a keep-alive
//! connection may wait `HTTP_IDLE_TIMEOUT_MS` for its next request, a
//! response write may stall `HTTP_BODY_TIMEOUT_MS` (the body read has the
//! same bound, applied where bodies are read), and at most
//! `HTTP_MAX_CONNECTIONS` connections are open, at most
//! `HTTP_MAX_CONNECTIONS_PER_CLIENT` from one host (so one client cannot
//! take every connection, the probes' and the scraper's included): past
//! either, new ones are closed at once. HTTP/1.1 only.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, Env};
use crate::metrics::register;

/// What one HTTP server lets a client hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `HTTP_HEADER_TIMEOUT_MS`: longest from a request's first byte (or
    /// from connecting) to the end of its head.
    pub header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_MS`: longest to read a whole request body, and
    /// longest a response write may stall.
    pub body_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS`: longest a keep-alive connection may wait for
    /// its next request (keep it above a load balancer's idle timeout).
    pub idle_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: most connections open at once.
    pub max_connections: usize,
    /// `HTTP_MAX_CONNECTIONS_PER_CLIENT` (default: half of
    /// `HTTP_MAX_CONNECTIONS`): most connections open at once from one
    /// host (IPv4 address, IPv6 /64).
    pub max_connections_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 4096,
            max_connections_per_client: 2048,
        }
    }
}

impl HttpLimits {
    /// Reads the `HTTP_*` limits.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let max_connections =
            env.number("HTTP_MAX_CONNECTIONS", d.max_connections, 1..=1_000_000)?;
        Ok(Self {
            header_timeout: env.millis(
                "HTTP_HEADER_TIMEOUT_MS",
                millis(d.header_timeout),
                100..=600_000,
            )?,
            body_timeout: env.millis(
                "HTTP_BODY_TIMEOUT_MS",
                millis(d.body_timeout),
                100..=600_000,
            )?,
            idle_timeout: env.millis(
                "HTTP_IDLE_TIMEOUT_MS",
                millis(d.idle_timeout),
                100..=3_600_000,
            )?,
            max_connections,
            max_connections_per_client: env.number(
                "HTTP_MAX_CONNECTIONS_PER_CLIENT",
                (max_connections / 2).max(1),
                1..=max_connections,
            )?,
        })
    }
}

/// Connection metrics of one server.
#[derive(Clone)]
pub struct ConnectionMetrics {
    open: IntGauge,
    refused: IntCounter,
    timed_out: IntCounterVec,
}

impl ConnectionMetrics {
    /// Registers `http_connections_open`, `http_connections_refused_total`
    /// and `http_connections_timed_out_total` in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            open: register(
                registry,
                IntGauge::new("http_connections_open", "HTTP connections open now")?,
            )?,
            refused: register(
                registry,
                IntCounter::new(
                    "http_connections_refused_total",
                    "HTTP connections closed at once because HTTP_MAX_CONNECTIONS were open",
                )?,
            )?,
            timed_out: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "http_connections_timed_out_total",
                        "HTTP connections closed for holding the server too long, by phase (head, idle, write)",
                    ),
                    &["phase"],
                )?,
            )?,
        })
    }
}

/// Serves `router` on `listener` within `limits` until `stop` is
/// cancelled; then stops accepting and lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: ConnectionMetrics,
    stop: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = PerClient::new(limits.max_connections_per_client);
    let connections = TaskTracker::new();
    while let Some((stream, peer)) = accept(&listener, &stop).await {
        let Some(slot) = take_slot(&slots, &per_client, &metrics, peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(TimedIo::new(stream, limits, metrics.timed_out.clone()));
        connections.spawn(serve_connection(
            io,
            router.clone(),
            peer,
            slot,
            metrics.open.clone(),
            stop.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// The next connection, or `None` once `stop` is cancelled.
async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(e) => {
                    // Out of file descriptors, or a connection reset while
                    // queued: wait a moment, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// A connection's place: one of `HTTP_MAX_CONNECTIONS` and one of its
/// host's, both given back when it is dropped.
struct Slot {
    _total: tokio::sync::OwnedSemaphorePermit,
    _host: Held,
}

/// A place for a connection from `peer`, unless its host or the server
/// holds its limit (then the connection is counted as refused).
fn take_slot(
    slots: &Arc<Semaphore>,
    per_client: &PerClient,
    metrics: &ConnectionMetrics,
    peer: std::net::SocketAddr,
) -> Option<Slot> {
    let Some(host) = per_client.take(peer.ip()) else {
        metrics.refused.inc();
        tracing::debug!(
            peer = %peer.ip(),
            "connection closed at once: HTTP_MAX_CONNECTIONS_PER_CLIENT from this host"
        );
        return None;
    };
    let Ok(total) = slots.clone().try_acquire_owned() else {
        metrics.refused.inc();
        return None;
    };
    Some(Slot {
        _total: total,
        _host: host,
    })
}

/// Serves one connection until it ends or, once `stop` is cancelled, until
/// its request in flight is answered; its slot is held until then.
async fn serve_connection(
    io: TokioIo<TimedIo>,
    router: Router,
    peer: std::net::SocketAddr,
    slot: Slot,
    open: IntGauge,
    stop: CancellationToken,
) {
    // Handlers may ask for the client's address (`ConnectInfo`), as
    // with axum's own `serve`.
    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
        router,
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request
        },
    ));
    open.inc();
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    open.dec();
    drop(slot);
}

/// Runs `serving` (a [`serve`] future) until `stop` is cancelled, then
/// gives the requests in flight at most `timeout` to finish, warning that
/// `what` (say, "lookups") was still running if they did not. Returns when
/// the drain began, so that a service can spend what is left of the same
/// shutdown timeout on its own clean-up; `Err` if serving failed before
/// the stop. One home for the shutdown sequence every service runs.
pub async fn run_until_drained<F>(
    serving: F,
    stop: &CancellationToken,
    timeout: Duration,
    what: &str,
) -> io::Result<Instant>
where
    F: Future<Output = io::Result<()>>,
{
    tokio::pin!(serving);
    let finished = tokio::select! {
        served = serving.as_mut() => {
            served?;
            true
        }
        () = stop.cancelled() => false,
    };
    let since = Instant::now();
    if !finished
        && tokio::time::timeout_at(since + timeout, serving)
            .await
            .is_err()
    {
        tracing::warn!("{what} still running at the shutdown deadline");
    }
    Ok(since)
}

/// Connections open per client host, each bounded.
#[derive(Clone)]
struct PerClient {
    limit: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 8], usize>>>,
}

/// One connection of a host, counted until dropped.
struct Held {
    host: [u8; 8],
    open: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 8], usize>>>,
}

impl PerClient {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// Counts a connection from `ip`, unless its host holds the limit.
    fn take(&self, ip: std::net::IpAddr) -> Option<Held> {
        let host = crate::http::host_of(ip);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(host).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Held {
            host,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.host);
            }
        }
    }
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (a new connection, or a
    /// keep-alive one after its response).
    Idle,
    /// Reading a request head.
    Head,
    /// Head read: the body, the handler and the response are under way.
    Busy,
}

/// A TCP stream that fails reads and writes once the client has held the
/// connection longer than its phase allows.
struct TimedIo {
    inner: TcpStream,
    limits: HttpLimits,
    timed_out: IntCounterVec,
    phase: Phase,
    /// The read deadline of the phase (`Idle`, `Head`), if any.
    read_deadline: Pin<Box<Sleep>>,
    /// The write deadline, while a write is stalled.
    write_deadline: Option<Pin<Box<Sleep>>>,
    /// The last bytes of the head so far, to find its end across reads.
    tail: [u8; 3],
}

impl TimedIo {
    fn new(inner: TcpStream, limits: HttpLimits, timed_out: IntCounterVec) -> Self {
        Self {
            inner,
            limits,
            timed_out,
            phase: Phase::Idle,
            // A new connection must start its request promptly.
            read_deadline: Box::pin(tokio::time::sleep(limits.header_timeout)),
            write_deadline: None,
            tail: [0; 3],
        }
    }

    fn expired(&self, phase: &'static str) -> io::Error {
        self.timed_out.with_label_values(&[phase]).inc();
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("client too slow ({phase})"),
        )
    }

    /// Notes `bytes` read: the start of a request, and the end of its head.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.tail = [0; 3];
            let at = Instant::now() + self.limits.header_timeout;
            self.read_deadline.as_mut().reset(at);
        }
        if self.phase == Phase::Head {
            let mut window = self.tail.to_vec();
            window.extend_from_slice(&bytes[..bytes.len().min(4096)]);
            if window.windows(4).any(|w| w == b"\r\n\r\n")
                || window.windows(2).any(|w| w == b"\n\n")
            {
                self.phase = Phase::Busy;
            } else if bytes.len() > 4096 {
                // A head longer than this is refused by the parser anyway.
                self.phase = Phase::Busy;
            }
            let n = window.len();
            self.tail.copy_from_slice(&window[n - 3..]);
        }
    }

    /// A write could not proceed: fails it once it has stalled too long.
    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limits.body_timeout;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(self.expired("write"))
    }

    /// Notes `bytes` written: a response (other than `100 Continue`) ends
    /// the request; the connection is idle until the next one.
    fn wrote(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && !bytes.starts_with(b"HTTP/1.1 100 ") {
            self.phase = Phase::Idle;
            let at = Instant::now() + self.limits.idle_timeout;
            self.read_deadline.as_mut().reset(at);
        }
    }

    /// Registers the idle deadline with the connection's task. After writing
    /// a response hyper need not poll for a read again until something
    /// wakes it, and its last read was polled while busy, with no deadline:
    /// a deadline nobody polls never fires, and the connection would stay
    /// open for as long as the client liked.
    fn arm_idle(&mut self, cx: &mut Context<'_>) {
        if self.phase == Phase::Idle && self.read_deadline.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled()[before..].to_vec();
                this.saw(&filled);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let phase = match this.phase {
                    Phase::Busy => return Poll::Pending,
                    Phase::Idle => "idle",
                    Phase::Head => "head",
                };
                ready!(this.read_deadline.as_mut().poll(cx));
                Poll::Ready(Err(this.expired(phase)))
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, bytes) {
            Poll::Ready(Ok(n)) => {
                this.write_deadline = None;
                this.wrote(&bytes[..n]);
                this.arm_idle(cx);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.write_stalled(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.write_deadline = None;
                let first = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]);
                if n > 0 {
                    this.wrote(first);
                    this.arm_idle(cx);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.write_stalled(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_pair() -> (TimedIo, TcpStream) {
        io_pair_with(HttpLimits::default())
    }

    fn io_pair_with(limits: HttpLimits) -> (TimedIo, TcpStream) {
        let runtime_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = runtime_listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server, _) = runtime_listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        let registry = Registry::new();
        let metrics = ConnectionMetrics::register(&registry).unwrap();
        (
            TimedIo::new(
                TcpStream::from_std(server).unwrap(),
                limits,
                metrics.timed_out,
            ),
            TcpStream::from_std(client).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_phase_follows_the_request_cycle() {
        let (mut io, _client) = io_pair();
        assert_eq!(io.phase, Phase::Idle);
        io.saw(b"POST /orders HTTP/1.1\r\nHost: x\r");
        assert_eq!(io.phase, Phase::Head);
        io.saw(b"\n\r");
        assert_eq!(io.phase, Phase::Head, "the end split across reads");
        io.saw(b"\n{\"body\":");
        assert_eq!(io.phase, Phase::Busy);
        io.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(
            io.phase,
            Phase::Busy,
            "100 Continue does not end the request"
        );
        io.wrote(b"HTTP/1.1 202 Accepted\r\n");
        assert_eq!(io.phase, Phase::Idle);
        io.saw(b"GET /healthz HTTP/1.1\n\n");
        assert_eq!(io.phase, Phase::Busy, "bare line feeds end a head too");
    }

    /// Records whether it was woken.
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_response_arms_the_idle_deadline_without_another_read() {
        let (mut io, _client) = io_pair_with(HttpLimits {
            idle_timeout: Duration::from_millis(50),
            ..HttpLimits::default()
        });
        let flag = std::sync::Arc::new(Flag(false.into()));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 64];
        // Until the reactor has seen the new socket is writable.
        io.inner.writable().await.unwrap();
        // As hyper does: a request read, a read polled while the handler
        // runs (nothing there), then the response written, and no more
        // polling until something wakes the connection.
        io.saw(b"GET /healthz HTTP/1.1\r\n\r\n");
        let mut read = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut read).is_pending());
        let written = Pin::new(&mut io).poll_write(&mut cx, b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(written, Poll::Ready(Ok(_))));
        assert_eq!(io.phase, Phase::Idle);
        flag.0.store(false, std::sync::atomic::Ordering::SeqCst);

        // Polled, within a deadline twenty times the idle limit.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while !flag.0.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the idle deadline wakes the connection"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut io).poll_read(&mut cx, &mut read) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("an idle connection past its limit fails its read: {other:?}"),
        }
    }
}
