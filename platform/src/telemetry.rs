//! Logs and traces: JSON lines on stdout through `tracing`, OpenTelemetry
//! spans through a `tracing` layer (exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), W3C trace-context propagation.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{ConfigError, Env};

/// The `tracing` target of the producer's debug line per request (the
/// event published, the request refused): a stable name for `LOG_LEVEL`
/// (`info,producer::requests=debug`), whichever module writes the line.
pub const PRODUCER_REQUESTS: &str = "producer::requests";

/// The `tracing` target of the consumer's debug lines per message (stored,
/// already stored): `info,consumer::messages=debug`.
pub const CONSUMER_MESSAGES: &str = "consumer::messages";

/// How a service reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `service.name` of the spans, and the `service` field of log lines.
    pub service_name: String,
    /// A `tracing` filter, from `LOG_LEVEL` or `RUST_LOG` (default `info`).
    pub log_filter: String,
    /// `json` (default) or `text` lines, from `LOG_FORMAT`.
    pub json_logs: bool,
    /// OTLP/HTTP collector base URL, from `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// Log lines go to standard error (a command whose output is its
    /// result) rather than standard output (a service).
    pub to_stderr: bool,
}

impl TelemetryConfig {
    /// Reads `LOG_LEVEL`/`RUST_LOG`, `LOG_FORMAT` (default `json`),
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME` (default
    /// `service`).
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        Self::read(env, service, "json")
    }

    /// As [`Self::from_env`], for a command run at a terminal: text lines
    /// unless `LOG_FORMAT` says otherwise, on standard error, so that what the
    /// command prints on standard output stays its result.
    pub fn for_terminal(env: &Env, service: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            to_stderr: true,
            ..Self::read(env, service, "text")?
        })
    }

    fn read(env: &Env, service: &str, default_format: &str) -> Result<Self, ConfigError> {
        let log_filter = env
            .get("LOG_LEVEL")
            .or_else(|| env.get("RUST_LOG"))
            .unwrap_or("info")
            .to_owned();
        if EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError::new(
                "LOG_LEVEL",
                &log_filter,
                "a level (error, warn, info, debug, trace) or a tracing filter",
            ));
        }
        let json_logs = match env.get("LOG_FORMAT").unwrap_or(default_format) {
            "json" => true,
            "text" => false,
            other => return Err(ConfigError::new("LOG_FORMAT", other, "json or text")),
        };
        let otlp_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(str::to_owned);
        if let Some(url) = &otlp_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    url,
                    "an http:// or https:// URL of an OTLP/HTTP collector",
                ));
            }
        }
        Ok(Self {
            service_name: env.string("OTEL_SERVICE_NAME", service),
            log_filter,
            json_logs,
            otlp_endpoint,
            to_stderr: false,
        })
    }
}

/// Failure to set up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already installed.
    #[error("telemetry is already initialised")]
    AlreadySet(#[source] tracing_subscriber::util::TryInitError),
}

/// Keeps the tracer provider alive; flushes spans when dropped.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

fn provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(TelemetryError::Exporter)?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs the global subscriber and propagator. Spans always get W3C trace
/// ids (so context flows through Kafka headers); they are built as
/// OpenTelemetry spans and leave the process only when an OTLP endpoint is
/// configured.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = provider(config)?;
    let tracer = provider.tracer(config.service_name.clone());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = if config.to_stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    let logs = if config.json_logs {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(crate::span_fields::AppendJsonFields)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(colour(
                config.to_stderr,
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .with_writer(writer)
            .boxed()
    };
    // Spans go through OpenTelemetry's layer only when they are exported;
    // otherwise they keep just their W3C context (see `trace::ContextLayer`).
    let exported = config.otlp_endpoint.is_some();
    tracing_subscriber::registry()
        .with(TelemetryFilter::new(filter, &config.log_filter))
        .with(logs)
        // Busy/idle timings and thread attributes would cost every span
        // work on each enter and exit; no alert or runbook reads them.
        .with(exported.then(|| {
            tracing_opentelemetry::layer()
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_tracer(tracer)
        }))
        .with((!exported).then_some(crate::trace::ContextLayer))
        .try_init()
        .map_err(TelemetryError::AlreadySet)?;
    Ok(Telemetry { provider })
}

/// Whether text log lines are coloured: only when they go to a terminal
/// (standard error for a command, standard output for a service), and
/// `NO_COLOR` is unset or empty (<https://no-color.org>). A pipe, a file or
/// a CI log gets plain text, librdkafka's lines included.
fn colour(to_stderr: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    use std::io::IsTerminal;
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// The one global filter: spans at `INFO` and above are always on, so trace
/// context flows through Kafka whatever the log level; events follow the log
/// filter. (A global filter rather than per-layer ones: per-layer filter state
/// is kept per thread between a callsite's check and its use, and a log line
/// emitted from a librdkafka callback in between was seen to disable spans.)
struct TelemetryFilter {
    logs: EnvFilter,
    /// Whether `logs` has span directives, the only ones that need to know
    /// which spans exist and are entered (each call takes its locks).
    follows_spans: bool,
}

impl TelemetryFilter {
    fn new(logs: EnvFilter, directives: &str) -> Self {
        Self {
            logs,
            // Only a directive naming a span or its fields (`target[span]`)
            // makes the filter follow spans; without one it is told nothing.
            follows_spans: directives.contains('['),
        }
    }
}

fn always_traced(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && *metadata.level() <= tracing::Level::INFO
}

impl<S> Layer<S> for TelemetryFilter
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // The log filter sees every callsite, spans too: it learns there
        // which spans its span directives match.
        let logs = Layer::<S>::register_callsite(&self.logs, metadata);
        if always_traced(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            logs
        }
    }

    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        always_traced(metadata) || Layer::<S>::enabled(&self.logs, metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        let logs = Layer::<S>::max_level_hint(&self.logs)
            .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
        Some(logs.max(tracing_subscriber::filter::LevelFilter::INFO))
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if self.follows_spans {
            Layer::<S>::on_new_span(&self.logs, attrs, id, ctx);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if self.follows_spans {
            Layer::<S>::on_record(&self.logs, id, values, ctx);
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if self.follows_spans {
            Layer::<S>::on_enter(&self.logs, id, ctx);
        }
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if self.follows_spans {
            Layer::<S>::on_exit(&self.logs, id, ctx);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if self.follows_spans {
            Layer::<S>::on_close(&self.logs, id, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = TelemetryConfig::from_env(&Env::default(), "producer").unwrap();
        assert_eq!(c.log_filter, "info");
        assert!(c.json_logs);
        assert_eq!(c.otlp_endpoint, None);
        let bad = Env::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
        assert_eq!(
            TelemetryConfig::from_env(&bad, "p").unwrap_err().variable,
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        let bad = Env::from_pairs([("LOG_FORMAT", "xml")]);
        assert_eq!(
            TelemetryConfig::from_env(&bad, "p").unwrap_err().variable,
            "LOG_FORMAT"
        );
        let bad = Env::from_pairs([("LOG_LEVEL", "[[")]);
        assert_eq!(
            TelemetryConfig::from_env(&bad, "p").unwrap_err().variable,
            "LOG_LEVEL"
        );
    }
    /// Colour needs a terminal and no `NO_COLOR`: the tests' own standard
    /// streams are captured, not terminals.
    #[test]
    fn no_colour_off_a_terminal_or_with_no_color() {
        use std::ffi::OsStr;
        use std::io::IsTerminal;
        for to_stderr in [true, false] {
            assert!(!colour(to_stderr, Some(OsStr::new("1"))));
            if !std::io::stderr().is_terminal() && !std::io::stdout().is_terminal() {
                assert!(!colour(to_stderr, None));
                assert!(!colour(to_stderr, Some(OsStr::new(""))));
            }
        }
    }

    /// A directive for lines inside a span still sees the span, though
    /// the filter is told of spans only when it has such directives.
    #[test]
    fn span_directives_follow_spans() {
        let directives = "warn,[checkout]=debug";
        let filter = TelemetryFilter::new(EnvFilter::new(directives), directives);
        let subscriber = tracing_subscriber::registry().with(filter);
        let (inside, outside) = tracing::subscriber::with_default(subscriber, || {
            let inside = tracing::info_span!("checkout")
                .in_scope(|| tracing::enabled!(tracing::Level::DEBUG));
            (inside, tracing::enabled!(tracing::Level::DEBUG))
        });
        assert!(inside, "debug lines inside the span are on");
        assert!(!outside, "and off outside it");
    }
}
