//! The optional rate limit of write requests: one token bucket per client,
//! so that one busy client is slowed without capping the instance for
//! everyone (a single bucket over all clients answered `429` to load the
//! service could carry).
//!
//! A client is its connection's address (IPv6 by its /64, what one host
//! usually holds), or, behind a proxy, the last entry of a header the proxy
//! sets (`RATE_LIMIT_CLIENT_HEADER`, e.g. `X-Forwarded-For`: the last entry
//! is the one the nearest proxy appended, the only one a client cannot
//! forge). The buckets of clients idle for a while are dropped every few
//! seconds; past `max_clients` buckets all requests share one until then,
//! so a flood of addresses cannot grow memory without bound.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};

/// How often idle clients' buckets are dropped.
const CLEANUP_EVERY: Duration = Duration::from_secs(10);

/// Longest identity read from the client header; longer values are cut.
const MAX_IDENTITY_BYTES: usize = 256;

/// The rate limit settings (`RATE_LIMIT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_RPS`: requests per second per client.
    pub per_second: NonZeroU32,
    /// `RATE_LIMIT_BURST`: requests a client may send at once.
    pub burst: NonZeroU32,
    /// `RATE_LIMIT_CLIENT_HEADER`: the header naming the client, set by a
    /// trusted proxy; the connection's address when unset or absent.
    pub client_header: Option<HeaderName>,
    /// `RATE_LIMIT_MAX_CLIENTS`: most buckets kept at once.
    pub max_clients: usize,
}

/// Whom a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    /// A client, by a keyed hash of its identity.
    Known(u64),
    /// Everybody, while there are too many buckets.
    Overflow,
}

/// What the limiter said of one request, for its `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The bucket's size (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests the client may still send at once (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Seconds until the bucket is full again, or until the next request is
    /// let through when refused (`RateLimit-Reset`).
    pub reset_seconds: u64,
    /// Whether the request may go on.
    pub admitted: bool,
}

impl Decision {
    /// Writes the `RateLimit-*` headers.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", self.reset_seconds),
        ] {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

/// The per-client token buckets.
pub struct RateLimit {
    buckets: DefaultKeyedRateLimiter<Client, StateInformationMiddleware>,
    config: RateLimitConfig,
    hasher: RandomState,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("config", &self.config)
            .field("clients", &self.buckets.len())
            .finish()
    }
}

impl RateLimit {
    /// Buckets for `config`, none yet.
    pub fn new(config: RateLimitConfig) -> Self {
        let quota = Quota::per_second(config.per_second).allow_burst(config.burst);
        Self {
            buckets: DefaultKeyedRateLimiter::keyed(quota)
                .with_middleware::<StateInformationMiddleware>(),
            config,
            hasher: RandomState::new(),
            clock: DefaultClock::default(),
        }
    }

    /// Drops the buckets of clients idle for long enough to have a full
    /// bucket again, every few seconds, for as long as `limit` is in use.
    pub fn clean_up_while_used(limit: &Arc<Self>) {
        let weak = Arc::downgrade(limit);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLEANUP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(limit) = weak.upgrade() else { break };
                limit.clean_up();
            }
        });
    }

    /// Drops idle clients' buckets now.
    pub fn clean_up(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }

    /// How many buckets are kept now.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }

    /// Who sent a request from `peer` with `headers`.
    fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Client {
        if self.buckets.len() >= self.config.max_clients {
            return Client::Overflow;
        }
        let named = self
            .config
            .client_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|value| identity(value.as_bytes()));
        let hash = match (named, peer) {
            (Some(named), _) => match parse_ip(named) {
                Some(ip) => self.hasher.hash_one(host_of(ip)),
                None => self.hasher.hash_one(named),
            },
            (None, Some(peer)) => self.hasher.hash_one(host_of(peer.ip())),
            // No address known (not served over TCP): one bucket for all.
            (None, None) => return Client::Overflow,
        };
        Client::Known(hash)
    }

    /// Takes one request of the client from `peer` with `headers`.
    pub fn check(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Decision {
        let client = self.client(headers, peer);
        let limit = self.config.burst.get();
        match self.buckets.check_key(&client) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let interval = state.quota().replenish_interval();
                let empty = limit.saturating_sub(remaining);
                Decision {
                    limit,
                    remaining,
                    reset_seconds: whole_seconds(interval * empty),
                    admitted: true,
                }
            }
            Err(not_until) => Decision {
                limit,
                remaining: 0,
                reset_seconds: whole_seconds(not_until.wait_time_from(self.clock.now())).max(1),
                admitted: false,
            },
        }
    }
}

/// Seconds, rounded up.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The last comma-separated entry of a header value, trimmed and cut to
/// [`MAX_IDENTITY_BYTES`]; `None` when empty.
fn identity(value: &[u8]) -> Option<&[u8]> {
    let last = value.rsplit(|b| *b == b',').next()?;
    let last = last.trim_ascii();
    (!last.is_empty()).then(|| &last[..last.len().min(MAX_IDENTITY_BYTES)])
}

fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The part of an address that names a host: all of IPv4, the /64 prefix
/// of IPv6 (one host is usually given a whole /64).
fn host_of(ip: IpAddr) -> [u8; 8] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            [4, 0, 0, 0, a, b, c, d]
        }
        IpAddr::V6(v6) => {
            let mut prefix = [0; 8];
            prefix.copy_from_slice(&v6.octets()[..8]);
            prefix
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit(per_second: u32, burst: u32, header: Option<&str>, max_clients: usize) -> RateLimit {
        RateLimit::new(RateLimitConfig {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            client_header: header.map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap()),
            max_clients,
        })
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40_000))
    }

    #[test]
    fn each_client_has_its_own_bucket() {
        let limit = limit(1, 2, None, 100);
        let none = HeaderMap::new();
        let a = [0, 1, 2].map(|_| limit.check(&none, peer("10.0.0.1")));
        assert_eq!(a.map(|d| d.admitted), [true, true, false]);
        assert_eq!(a.map(|d| d.remaining), [1, 0, 0]);
        assert!(a[2].reset_seconds >= 1);
        assert!(
            limit.check(&none, peer("10.0.0.2")).admitted,
            "another client"
        );
        // Another port of the same host, and another address of the same
        // IPv6 /64, are the same client.
        let mut same_host = peer("10.0.0.1").unwrap();
        same_host.set_port(1);
        assert!(!limit.check(&none, Some(same_host)).admitted);
        assert!(limit.check(&none, peer("2001:db8:1:2::1")).admitted);
        assert!(limit.check(&none, peer("2001:db8:1:2::ffff")).admitted);
        assert!(!limit.check(&none, peer("2001:db8:1:2:aaaa::1")).admitted);
        assert!(limit.check(&none, peer("2001:db8:1:3::1")).admitted);
    }

    #[test]
    fn behind_a_proxy_the_last_entry_of_its_header_names_the_client() {
        let limit = limit(1, 1, Some("x-forwarded-for"), 100);
        let forwarded = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            h
        };
        let proxy = peer("10.9.9.9");
        assert!(limit.check(&forwarded("1.1.1.1"), proxy).admitted);
        // A client writing its own first entry is still the address the
        // proxy appended.
        assert!(!limit.check(&forwarded("6.6.6.6, 1.1.1.1"), proxy).admitted);
        assert!(limit.check(&forwarded("1.1.1.1, 2.2.2.2"), proxy).admitted);
        // Without the header: the connection's address.
        assert!(limit.check(&HeaderMap::new(), proxy).admitted);
        assert!(!limit.check(&HeaderMap::new(), proxy).admitted);
    }

    #[test]
    fn past_the_most_clients_everybody_shares_one_bucket_until_idle_ones_go() {
        let limit = limit(1, 1, None, 3);
        let none = HeaderMap::new();
        for n in 0..3 {
            assert!(limit.check(&none, peer(&format!("10.0.0.{n}"))).admitted);
        }
        assert_eq!(limit.clients(), 3);
        assert!(limit.check(&none, peer("10.0.1.1")).admitted, "overflow");
        assert!(!limit.check(&none, peer("10.0.1.2")).admitted, "shared");
        assert_eq!(limit.clients(), 4, "three clients and the shared bucket");
    }

    proptest! {
        /// Whatever a client header holds (any bytes, any length, any
        /// number of entries), the limiter answers and keeps at most
        /// `max_clients` buckets and the shared one.
        #[test]
        fn any_client_header_is_answered_within_the_bucket_bound(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..200),
        ) {
            let limit = limit(1000, 1000, Some("x-client"), 50);
            for value in values {
                let mut headers = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_bytes(&value) {
                    headers.insert("x-client", v);
                }
                let d = limit.check(&headers, peer("127.0.0.1"));
                prop_assert_eq!(d.limit, 1000);
                prop_assert!(limit.clients() <= 51);
            }
        }

        #[test]
        fn the_identity_is_the_trimmed_last_entry_and_bounded(value in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Some(id) = identity(&value) {
                prop_assert!(!id.is_empty() && id.len() <= MAX_IDENTITY_BYTES);
                prop_assert!(!id.contains(&b','));
            }
        }
    }
}
