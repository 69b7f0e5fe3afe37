//! Telemetry for tests that run services in process: installed once per
//! test binary, so spans carry W3C trace ids as in production.

use std::sync::OnceLock;

/// Installs the global subscriber (text logs at `level`) once; it lives as
/// long as the test process.
pub fn install(level: &str) {
    static TELEMETRY: OnceLock<platform::telemetry::Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let config = platform::telemetry::TelemetryConfig::from_env(
            &platform::Env::from_pairs([("LOG_LEVEL", level), ("LOG_FORMAT", "text")]),
            "test",
        )
        .expect("telemetry config");
        platform::telemetry::init(&config).expect("telemetry")
    });
}
