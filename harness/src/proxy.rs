//! A TCP proxy to PostgreSQL that a test can cut and restore, to make the
//! database unreachable for the consumer while it runs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards 127.0.0.1:<port> to a target until cut.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Starts forwarding to `target` on a new local port.
    pub fn start(target: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (up, rx) = watch::channel(true);
        let rx = Arc::new(rx);
        runtime.spawn(serve(addr, target, rx));
        Self {
            addr,
            up,
            runtime: Some(runtime),
        }
    }

    /// Refuses new connections and resets open ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve(addr: SocketAddr, target: SocketAddr, up: Arc<watch::Receiver<bool>>) {
    loop {
        let mut state = (*up).clone();
        if !*state.borrow_and_update() {
            // Down: nothing listens on the port, so connects are refused.
            let _ = state.wait_for(|up| *up).await;
            continue;
        }
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = state.wait_for(|up| !*up) => break,
                accepted = listener.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    let mut conn_state = (*up).clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else { return };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = conn_state.wait_for(|up| !*up) => {}
                        }
                    });
                }
            }
        }
    }
}
