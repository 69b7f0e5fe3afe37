//! A TCP proxy that a test puts between a service and a server it calls
//! (PostgreSQL, the broker) to play a bad network: cut the path (refuse
//! and reset), or black-hole it (stop forwarding, close nothing), then heal.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the path does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Forwards both ways.
    Up,
    /// Nothing listens (connects are refused) and open connections are reset.
    Cut,
    /// Connections are accepted and bytes are taken, but nothing is
    /// forwarded and nothing is closed: a dead NAT entry, a firewall that
    /// drops, a hung pooler. A connection caught in it stays dead after the
    /// path heals, as it would behind a NAT that lost its state.
    BlackHole,
}

/// Forwards 127.0.0.1:<port> to a target until told otherwise.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    path: watch::Sender<Path>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Starts forwarding to `target` on a new local port.
    pub fn start(target: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        drop(listener);
        Self::start_on(addr, target)
    }

    /// Starts forwarding `addr` to `target` (for a server that must be told
    /// the proxy's address before it starts, such as a broker advertising it).
    pub fn start_on(addr: SocketAddr, target: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let (path, rx) = watch::channel(Path::Up);
        runtime.spawn(serve(addr, target, rx));
        Self {
            addr,
            path,
            runtime: Some(runtime),
        }
    }

    /// Refuses new connections and resets open ones.
    pub fn cut(&self) {
        self.path.send_replace(Path::Cut);
    }

    /// Stops forwarding without closing anything: open connections hang,
    /// new ones are accepted and hang.
    pub fn black_hole(&self) {
        self.path.send_replace(Path::BlackHole);
    }

    /// Forwards new connections again (black-holed ones stay dead).
    pub fn restore(&self) {
        self.path.send_replace(Path::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve(addr: SocketAddr, target: SocketAddr, mut path: watch::Receiver<Path>) {
    loop {
        if *path.borrow_and_update() == Path::Cut {
            // Nothing listens on the port, so connects are refused.
            let _ = path.wait_for(|p| *p != Path::Cut).await;
            continue;
        }
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut cut = path.clone();
        loop {
            tokio::select! {
                _ = cut.wait_for(|p| *p == Path::Cut) => break,
                accepted = listener.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    tokio::spawn(connection(client, target, path.clone()));
                }
            }
        }
    }
}

/// Holds both ends open and forwards nothing, for as long as the proxy lives.
async fn hang(ends: (TcpStream, Option<TcpStream>)) {
    let _ends = ends;
    std::future::pending::<()>().await;
}

async fn connection(mut client: TcpStream, target: SocketAddr, mut path: watch::Receiver<Path>) {
    if *path.borrow_and_update() == Path::BlackHole {
        return hang((client, None)).await;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let changed = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        changed = path.wait_for(|p| *p != Path::Up) => changed.map(|p| *p),
    };
    if let Ok(Path::BlackHole) = changed {
        hang((client, Some(server))).await;
    }
    // Cut: both ends are dropped here, which closes them.
}
