//! With an OTLP endpoint set, spans are built as OpenTelemetry spans and
//! leave the process, with the same context that is sent onwards. (A test
//! file of its own: telemetry is installed once per process.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use platform::telemetry::{init, TelemetryConfig};

/// One request the collector received: its path and body.
type Post = (String, Vec<u8>);

/// A listener that answers every request `200` and reports it: where the
/// exporter sends, standing in for a collector.
fn collector() -> (String, mpsc::Receiver<Post>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &tx);
            });
        }
    });
    (url, rx)
}

/// Reads each request of a kept-alive connection and answers `200`.
fn answer(mut stream: TcpStream, posts: &mpsc::Sender<Post>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let _ = posts.send((path, body));
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}

#[test]
fn spans_are_exported_with_the_context_sent_onwards() {
    let (url, posts) = collector();
    let config = TelemetryConfig {
        service_name: "exporter-test".to_owned(),
        log_filter: "info".to_owned(),
        json_logs: true,
        otlp_endpoint: Some(url),
        to_stderr: true,
    };
    let telemetry = init(&config).expect("telemetry installs");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let context = {
        let span = tracing::info_span!("http_request");
        platform::trace::continue_from(&span, |name| {
            (name == "traceparent").then(|| parent.clone())
        });
        platform::trace::context(&span)
    };
    let context = context.expect("the span is traced");
    assert_eq!(context.trace_id, trace_id);
    // Dropping the handle flushes what the batch exporter holds.
    drop(telemetry);
    let (path, body) = posts
        .recv_timeout(Duration::from_secs(20))
        .expect("the collector received the spans");
    assert_eq!(path, "/v1/traces");
    let span_id: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(&context.span_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    assert!(
        body.windows(span_id.len()).any(|w| w == span_id.as_slice()),
        "the exported span is the one whose id went onwards ({} bytes exported)",
        body.len()
    );
}
