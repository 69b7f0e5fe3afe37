//! Without an OTLP endpoint, spans keep their W3C context (so it still
//! goes onwards through Kafka headers) but no OpenTelemetry span is built.
//! (A test file of its own: telemetry is installed once per process.)

use opentelemetry::trace::TraceContextExt;
use platform::telemetry::{init, TelemetryConfig};
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[test]
fn spans_keep_their_context_without_opentelemetry_spans() {
    let config = TelemetryConfig {
        service_name: "no-exporter-test".to_owned(),
        log_filter: "info".to_owned(),
        json_logs: true,
        otlp_endpoint: None,
        to_stderr: true,
    };
    let _telemetry = init(&config).expect("telemetry installs");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let span = tracing::info_span!("http_request");
    platform::trace::continue_from(&span, |name| {
        (name == "traceparent").then(|| parent.clone())
    });
    let context = platform::trace::context(&span).expect("the span is traced");
    assert_eq!(context.trace_id, trace_id);
    assert_eq!(
        context.traceparent,
        format!("00-{trace_id}-{}-01", context.span_id)
    );
    let child = span.in_scope(|| platform::trace::context(&tracing::info_span!("write")));
    assert_eq!(child.expect("traced").trace_id, trace_id, "children follow");
    assert!(
        !span.context().span().span_context().is_valid(),
        "no OpenTelemetry span was built"
    );
}
