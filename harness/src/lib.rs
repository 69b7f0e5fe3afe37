//! What the integration tests, the end-to-end suite and the benchmarks need
//! to run the real thing: a fresh PostgreSQL database per test, a Tansu
//! broker process, an Apache Kafka cluster, the service binaries as
//! processes, a TCP proxy that can cut a connection, and plain Kafka
//! clients to write and read topics.
//! Nothing here imitates a broker or a database.

pub mod broker;
pub mod browser;
pub mod cluster;
pub mod database;
pub mod events;
pub mod kafka;
pub mod lifecycle;
pub mod load;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod stack;
pub mod telemetry;
pub mod wait;

/// The workspace root (where `Cargo.toml` and `.tools/` are).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon), never
/// one the kernel could meanwhile give a client: see [`platform::port`].
pub fn free_port() -> u16 {
    platform::port::unused_local_port().expect("a free local port")
}
