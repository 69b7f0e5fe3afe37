//! Local ports for servers started on this machine (the private
//! PostgreSQL of `dev`, the test clusters).
//!
//! The kernel's pick for port 0 comes from the ephemeral range, the same
//! range it draws the source port of every outgoing connection from. A
//! port picked that way and handed to a server seconds later can meanwhile
//! be the source port of any client's connection, and the server then
//! fails with "address already in use" (a Kafka node of a test cluster did
//! exactly that). Ports here come from below the ephemeral range, which
//! the kernel never hands out by itself, and one process never hands out
//! the same port twice.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const LOWEST: u16 = 10_000;

/// Where the kernel's ephemeral range starts when it cannot be read.
const EPHEMERAL_START: u16 = 32_768;

/// Candidates tried so far by this process; the next starts after them.
static TRIED: AtomicU32 = AtomicU32::new(0);

/// A port on 127.0.0.1 that nobody listens on now, below the ephemeral
/// range, never handed out before by this process. Bind it soon: another
/// process may still take it, only the kernel will not.
pub fn unused_local_port() -> std::io::Result<u16> {
    let high = ephemeral_start().max(LOWEST + 1_000);
    let span = u32::from(high - LOWEST);
    // Processes started together start far apart.
    let origin = std::process::id().wrapping_mul(7_919) % span;
    let candidates = (0..span).map(|_| {
        let tried = TRIED.fetch_add(1, Ordering::Relaxed);
        LOWEST + ((origin + tried) % span) as u16
    });
    match first_bindable(candidates) {
        Some(port) => Ok(port),
        // Every port below the ephemeral range is taken: the kernel's pick.
        None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()
            .map(|addr| addr.port()),
    }
}

/// The first of `candidates` that 127.0.0.1 can bind now.
fn first_bindable(mut candidates: impl Iterator<Item = u16>) -> Option<u16> {
    candidates.find(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
}

/// The first port of the kernel's ephemeral range (Linux says it in
/// /proc; elsewhere the IANA start).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let high = ephemeral_start().max(LOWEST + 1_000);
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let port = unused_local_port().expect("a port");
            assert!(
                (LOWEST..high).contains(&port),
                "{port} outside {LOWEST}..{high}"
            );
            assert!(seen.insert(port), "{port} handed out twice");
        }
    }

    #[test]
    fn a_port_someone_listens_on_is_skipped() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let taken = held.local_addr().expect("address").port();
        let free = unused_local_port().expect("a port");
        assert_eq!(first_bindable([taken, free].into_iter()), Some(free));
        assert_eq!(first_bindable([taken].into_iter()), None);
    }
}
