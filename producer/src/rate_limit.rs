//! The optional rate limit of write requests: one token bucket per client,
//! so that one busy client is slowed without capping the instance for
//! everyone (a single bucket over all clients answered `429` to load the
//! service could carry).
//!
//! A client is its connection's address (IPv6 by its /64, what one host
//! usually holds), or, behind proxies, an entry of a header they append to
//! (`RATE_LIMIT_CLIENT_HEADER`, e.g. `X-Forwarded-For`). Its entries are
//! read across every occurrence of the header (a proxy may add a line of
//! its own rather than extend the client's) and counted from the right:
//! with `RATE_LIMIT_TRUSTED_PROXIES` = n, the n-th from the end is the
//! address the outermost trusted proxy saw connect, the first a client
//! cannot forge; everything left of it is the client's to write. An entry
//! is an address with or without a port (`1.2.3.4:5678`, `[2001:db8::1]:80`,
//! `[2001:db8::1]`), read as its host. The buckets of clients idle for a
//! while are dropped every few seconds; past `max_clients` known clients,
//! new ones share one bucket until then (so a flood of addresses cannot
//! grow memory without bound), while known clients keep their own.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};
use platform::http::host_of;

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
    /// `RATE_LIMIT_TRUSTED_PROXIES` (default 1): proxies in front of the
    /// service that each append to `client_header`.
    pub trusted_proxies: usize,
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
    /// The clients with a bucket of their own, and when each was last seen:
    /// a known client keeps its bucket when the table is full.
    known: Mutex<HashMap<u64, Instant>>,
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
            known: Mutex::new(HashMap::new()),
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

    /// Drops idle clients' buckets now: those whose bucket is full again.
    pub fn clean_up(&self) {
        let refill = Duration::from_secs_f64(
            f64::from(self.config.burst.get()) / f64::from(self.config.per_second.get()),
        );
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, seen| seen.elapsed() <= refill);
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }

    /// How many buckets are kept now.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }

    /// Who sent a request from `peer` with `headers`.
    fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Client {
        let named = self
            .config
            .client_header
            .as_ref()
            .and_then(|name| forwarded_for(headers, name, self.config.trusted_proxies));
        let hash = match (named, peer) {
            (Some(named), _) => match parse_address(named) {
                Some(ip) => self.hasher.hash_one(host_of(ip)),
                None => self.hasher.hash_one(named),
            },
            (None, Some(peer)) => self.hasher.hash_one(host_of(peer.ip())),
            // No address known (not served over TCP): one bucket for all.
            (None, None) => return Client::Overflow,
        };
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let full = known.len() >= self.config.max_clients;
        match known.get_mut(&hash) {
            Some(seen) => *seen = Instant::now(),
            None if full => return Client::Overflow,
            None => {
                known.insert(hash, Instant::now());
            }
        }
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

/// The entry of header `name` that names the client behind `trusted`
/// proxies: entries are read across every occurrence of the header, in
/// order, and counted from the right; the `trusted`-th from the end,
/// trimmed and cut to [`MAX_IDENTITY_BYTES`]. `None` when there are fewer
/// entries (the request did not come through every proxy) or it is empty.
fn forwarded_for<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    trusted: usize,
) -> Option<&'a [u8]> {
    let occurrences: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
    let entry = occurrences
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','))
        .nth(trusted.max(1) - 1)?
        .trim_ascii();
    (!entry.is_empty()).then(|| &entry[..entry.len().min(MAX_IDENTITY_BYTES)])
}

/// The address of an entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`, optionally in double quotes.
fn parse_address(bytes: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes).ok()?.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
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
            trusted_proxies: 1,
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
    fn past_the_most_clients_new_ones_share_one_bucket_and_known_ones_keep_theirs() {
        let limit = limit(1, 1, None, 3);
        let none = HeaderMap::new();
        for n in 0..3 {
            assert!(limit.check(&none, peer(&format!("10.0.0.{n}"))).admitted);
        }
        assert_eq!(limit.clients(), 3);
        assert!(limit.check(&none, peer("10.0.1.1")).admitted, "overflow");
        assert!(!limit.check(&none, peer("10.0.1.2")).admitted, "shared");
        assert_eq!(limit.clients(), 4, "three clients and the shared bucket");
        // A known client is not pushed into the shared bucket: its own is
        // empty (refused), not the shared one's state.
        assert!(!limit.check(&none, peer("10.0.0.0")).admitted);
        let roomy = self::limit(1, 2, None, 2);
        assert!(roomy.check(&none, peer("10.0.0.1")).admitted);
        assert!(roomy.check(&none, peer("10.0.0.2")).admitted);
        for n in 0..40 {
            roomy.check(&none, peer(&format!("10.1.0.{n}")));
        }
        assert!(
            roomy.check(&none, peer("10.0.0.1")).admitted,
            "a flood of new addresses does not spend a known client's bucket"
        );
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        h
    }

    #[test]
    fn a_proxy_that_adds_its_own_header_line_is_read_not_the_clients_line() {
        let limit = limit(1, 1, Some("x-forwarded-for"), 100);
        let proxy = peer("10.9.9.9");
        // The client sends its own line; the proxy adds the real address
        // as a second line (HAProxy's option forwardfor does).
        assert!(
            limit
                .check(&forwarded(&["6.6.6.1", "1.1.1.1"]), proxy)
                .admitted
        );
        assert!(
            !limit
                .check(&forwarded(&["6.6.6.2", "1.1.1.1"]), proxy)
                .admitted
        );
        assert!(
            !limit
                .check(&forwarded(&["6.6.6.3, 7.7.7.7", "1.1.1.1"]), proxy)
                .admitted
        );
    }

    #[test]
    fn ports_and_brackets_name_the_same_host() {
        let limit = limit(1, 1, Some("x-forwarded-for"), 100);
        let proxy = peer("10.9.9.9");
        assert!(limit.check(&forwarded(&["1.1.1.1:1000"]), proxy).admitted);
        assert!(!limit.check(&forwarded(&["1.1.1.1:2000"]), proxy).admitted);
        assert!(!limit.check(&forwarded(&["\"1.1.1.1\""]), proxy).admitted);
        assert!(
            limit
                .check(&forwarded(&["[2001:db8:1:2::1]:443"]), proxy)
                .admitted
        );
        assert!(
            !limit
                .check(&forwarded(&["[2001:db8:1:2::99]"]), proxy)
                .admitted
        );
        assert!(
            !limit
                .check(&forwarded(&["2001:db8:1:2:ffff::1"]), proxy)
                .admitted,
            "same /64"
        );
    }

    #[test]
    fn behind_two_proxies_the_second_entry_from_the_right_is_the_client() {
        let mut limit = limit(1, 1, Some("x-forwarded-for"), 100);
        limit.config.trusted_proxies = 2;
        let inner = peer("10.9.9.9");
        // client → edge proxy (appends the client) → inner proxy (appends
        // the edge) → service.
        assert!(
            limit
                .check(&forwarded(&["1.1.1.1, 10.0.0.1"]), inner)
                .admitted
        );
        assert!(
            !limit
                .check(&forwarded(&["5.5.5.5, 1.1.1.1, 10.0.0.1"]), inner)
                .admitted
        );
        assert!(
            limit
                .check(&forwarded(&["5.5.5.5", "2.2.2.2, 10.0.0.1"]), inner)
                .admitted
        );
        // Fewer entries than proxies: not through every proxy, so the
        // connection's address.
        assert!(limit.check(&forwarded(&["10.0.0.1"]), inner).admitted);
        assert!(!limit.check(&forwarded(&["10.0.0.7"]), inner).admitted);
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
        fn the_identity_is_a_trimmed_entry_a_client_cannot_choose(
            forged in proptest::collection::vec("[ -~]{0,80}", 0..4),
            real in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            trusted in 1usize..4,
            lines in 1usize..3,
        ) {
            // Whatever the client writes before, the proxies' entries
            // (the client's real address, then trusted - 1 more) decide.
            let mut entries: Vec<String> = forged.clone();
            entries.push(real.clone());
            entries.extend((1..trusted).map(|n| format!("10.0.0.{n}")));
            let mut headers = HeaderMap::new();
            let split = entries.len().saturating_sub(trusted).min(lines);
            let (client_part, proxy_part) = entries.split_at(split);
            for part in [client_part, proxy_part] {
                if !part.is_empty() {
                    if let Ok(v) = HeaderValue::from_str(&part.join(", ")) {
                        headers.append("x-forwarded-for", v);
                    }
                }
            }
            let name = HeaderName::from_static("x-forwarded-for");
            let id = forwarded_for(&headers, &name, trusted);
            prop_assert!(id.is_some(), "{headers:?}");
            let id = id.unwrap_or_default();
            prop_assert!(!id.is_empty() && id.len() <= MAX_IDENTITY_BYTES);
            prop_assert!(!id.contains(&b','));
            if forged.iter().all(|f| !f.contains(',')) {
                prop_assert_eq!(id, real.as_bytes());
            }
        }
    }
}
