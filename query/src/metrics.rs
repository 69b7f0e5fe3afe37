//! The read side's own metrics, beside the HTTP ones every service has.

use platform::metrics::{register, LATENCY_BUCKETS};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// `query_lookups_total`, `query_database_errors_total`,
/// `query_lookup_duration_seconds`, `query_in_flight`.
#[derive(Clone)]
pub struct QueryMetrics {
    lookups: IntCounterVec,
    database_errors: IntCounterVec,
    duration: HistogramVec,
    /// Lookups being answered now.
    pub in_flight: IntGauge,
}

impl QueryMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            lookups: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "query_lookups_total",
                        "Status lookups answered, by resource (order, user) and status \
                         (persisted, rejected, pending, not_found)",
                    ),
                    &["resource", "status"],
                )?,
            )?,
            database_errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "query_database_errors_total",
                        "Lookups that failed in the database (timeout, connection, contention, schema, other)",
                    ),
                    &["kind"],
                )?,
            )?,
            duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "query_lookup_duration_seconds",
                        "Time the database took to answer a lookup",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["resource"],
                )?,
            )?,
            in_flight: register(
                registry,
                IntGauge::new("query_in_flight", "Lookups being answered now")?,
            )?,
        })
    }

    /// A lookup of `resource` answered `status`.
    pub fn lookup(&self, resource: &str, status: &str) {
        self.lookups.with_label_values(&[resource, status]).inc();
    }

    /// A lookup failed in the database.
    pub fn database_error(&self, kind: &str) {
        self.database_errors.with_label_values(&[kind]).inc();
    }

    /// The database answered a lookup of `resource` in `seconds`.
    pub fn duration(&self, resource: &str, seconds: f64) {
        self.duration
            .with_label_values(&[resource])
            .observe(seconds);
    }
}
