//! Keeping a failing dependency from flooding the logs. While a broker is
//! down, librdkafka reports the same error many times a second, and a loop
//! that retries would log each try. [`LogThrottle`] lets one line per kind
//! through per window and says how many were held back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most kinds remembered; past it the memory starts over (a kind is a
/// facility or an error code, so this is never reached in practice).
const MAX_KINDS: usize = 256;

/// At most one line per kind per window.
#[derive(Debug)]
pub struct LogThrottle {
    window: Duration,
    kinds: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogThrottle {
    /// One line per kind per `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line of `kind` may be written at `now`: `Some(n)` with the
    /// number of lines of that kind held back since the last one written,
    /// or `None` to hold this one back too.
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let Ok(mut kinds) = self.kinds.lock() else {
            return Some(0);
        };
        if let Some((last, held)) = kinds.get_mut(kind) {
            if now.saturating_duration_since(*last) < self.window {
                *held += 1;
                return None;
            }
            let suppressed = *held;
            *last = now;
            *held = 0;
            return Some(suppressed);
        }
        if kinds.len() >= MAX_KINDS {
            kinds.clear();
        }
        kinds.insert(kind.to_owned(), (now, 0));
        Some(0)
    }
}

impl Default for LogThrottle {
    /// One line per kind every ten seconds.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_window_with_the_count_held_back() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.admit("down", start), Some(0));
        for n in 1..=40 {
            assert_eq!(
                t.admit("down", start + Duration::from_millis(100 * n)),
                None
            );
        }
        assert_eq!(t.admit("other", start), Some(0), "kinds are apart");
        assert_eq!(t.admit("down", start + Duration::from_secs(10)), Some(40));
        assert_eq!(t.admit("down", start + Duration::from_secs(11)), None);
    }
}
