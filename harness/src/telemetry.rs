//! Telemetry for tests that run services in process: installed once per
//! test binary, so spans carry W3C trace ids as in production.

use std::sync::Once;

/// Installs the global subscriber (text logs at `level`) once.
pub fn install(level: &str) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let config = platform::telemetry::TelemetryConfig::from_env(
            &platform::Env::from_pairs([("LOG_LEVEL", level), ("LOG_FORMAT", "text")]),
            "test",
        )
        .expect("telemetry config");
        // The guard must live as long as the test process.
        std::mem::forget(platform::telemetry::init(&config).expect("telemetry"));
    });
}
