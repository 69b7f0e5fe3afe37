//! The command line as scripts use it: with `--json`, a failure is one JSON
//! error object on stdout and a non-zero exit status; stderr carries no
//! colour codes off a terminal and no backtrace; errors a broker can answer
//! at once are answered at once; `lag --json` keeps one shape.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::broker::Tansu;
use harness::process::binary;
use harness::wait::eventually;
use serde_json::Value;

/// `pubsubkafka` with `args`, as a script runs it: stdout and stderr
/// captured (not terminals), RUST_BACKTRACE=1 set, NO_COLOR unset.
fn command(args: &[&str], bootstrap: &str) -> Command {
    let mut command = Command::new(binary("pubsubkafka"));
    command
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("RUST_BACKTRACE", "1")
        .env("LOG_LEVEL", "info")
        .env_remove("NO_COLOR")
        .env_remove("LOG_FORMAT")
        .env_remove("OUTBOX_DATABASE_URL")
        .stdin(Stdio::null());
    command
}

/// The one JSON value stdout holds (anything else, or a second value,
/// fails).
fn stdout_json(args: &[&str], out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not one JSON value ({e}): {:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Checks a failed `--json` run: one error object with a code and a
/// message on stdout, the expected exit status, and on stderr the error
/// without a backtrace or an escape sequence. Its code.
fn failed_as_json(args: &[&str], out: &Output, status: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    let shown = stdout_json(args, out);
    let error = shown["error"].as_object().unwrap_or_else(|| {
        panic!("{args:?}: not an error object: {shown}");
    });
    assert_eq!(shown.as_object().map(|o| o.len()), Some(1), "{shown}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        !out.stderr.contains(&0x1b),
        "{args:?}: colour codes on a stderr that is not a terminal: {stderr:?}"
    );
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("panicked"),
        "{args:?}: an operator's error is not a crash: {stderr}"
    );
    assert_logs_are_throttled(args, &stderr);
    error["code"].as_str().unwrap_or_default().to_owned()
}

/// A broker that stays down is reported once per kind of line, not once
/// per try: no log line (its timestamp aside) is repeated.
fn assert_logs_are_throttled(args: &[&str], stderr: &str) {
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let text = line.split_once(' ').map_or(line, |(_, rest)| rest);
        *seen.entry(text).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{args:?}: repeated log lines {repeated:?} in {} lines of stderr",
        stderr.lines().count()
    );
}

/// `dlq inspect` of the first dead letter of partition 0, as JSON.
const INSPECT: &[&str] = &[
    "dlq",
    "inspect",
    "--partition",
    "0",
    "--offset",
    "0",
    "--json",
];

/// Every subcommand, given `--json`, against a broker that is not there (a
/// closed local port) and a database that is not there: each says so in
/// one JSON object on stdout and exits non-zero, its logs (librdkafka's
/// included) plain text, its error with causes and no backtrace.
#[test]
fn every_subcommand_fails_with_one_json_error_object_on_a_stopped_broker() {
    let broker = format!("127.0.0.1:{}", harness::free_port());
    let database = format!(
        "postgres://nobody@127.0.0.1:{}/pubsubkafka",
        harness::free_port()
    );
    let order = "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b";
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["lag", "--json"], 1, "kafka_unavailable"),
        (
            vec!["lag", "--json", "--outbox", &database],
            1,
            "kafka_unavailable",
        ),
        (vec!["dlq", "list", "--json"], 1, "kafka_unavailable"),
        (INSPECT.to_vec(), 1, "kafka_unavailable"),
        (vec!["dlq", "replay", "--json"], 1, "kafka_unavailable"),
        (
            vec!["dlq", "replay", "--dry-run", "--json"],
            1,
            "kafka_unavailable",
        ),
        (
            vec!["dlq", "replay", "--rate", "0", "--json"],
            1,
            "bad_argument",
        ),
        (
            vec!["order", order, "--database-url", &database, "--json"],
            1,
            "database_unavailable",
        ),
        (vec!["order", "not-an-id", "--json"], 1, "bad_argument"),
        // Kafka options only where Kafka is read: `order` reads PostgreSQL.
        (
            vec!["order", order, "--bootstrap-server", &broker, "--json"],
            2,
            "usage",
        ),
        (vec!["lag", "--no-such-option", "--json"], 2, "usage"),
    ];
    // The broker-bound ones each wait for librdkafka's metadata timeout:
    // run side by side.
    let runs: Vec<_> = cases
        .iter()
        .map(|(args, _, _)| {
            let mut command = command(args, &broker);
            std::thread::spawn(move || command.output().expect("run pubsubkafka"))
        })
        .collect();
    for ((args, status, code), run) in cases.iter().zip(runs) {
        let out = run.join().expect("pubsubkafka ran");
        assert_eq!(&failed_as_json(args, &out, *status), code, "{args:?}");
    }
}

/// Only the subcommands that talk to Kafka offer its options.
#[test]
fn kafka_options_are_offered_where_kafka_is_read() {
    let help = |args: &[&str]| {
        let out = command(args, "127.0.0.1:1")
            .output()
            .expect("run pubsubkafka");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for args in [
        &["lag", "--help"][..],
        &["dlq", "list", "--help"],
        &["dlq", "inspect", "--help"],
        &["dlq", "replay", "--help"],
        &["dev", "--help"],
    ] {
        assert!(help(args).contains("--bootstrap-server"), "{args:?}");
    }
    assert!(!help(&["order", "--help"]).contains("--bootstrap-server"));
    assert!(!help(&["--help"]).contains("--bootstrap-server"));
}

/// Runs `args` and waits for its exit within `deadline`: a bound on a
/// broken run (the tool used to wait out a 10 s poll), not the expected
/// time.
async fn within(deadline: Duration, args: &[&str], bootstrap: &str) -> Output {
    let mut child = command(args, bootstrap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pubsubkafka");
    let ended = eventually(deadline, "pubsubkafka answers", || {
        let status = child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    if ended.is_err() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("pubsubkafka's output");
    if let Err(late) = ended {
        panic!(
            "{args:?}: {late}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A broker that refuses the connection (a closed port) or a host that
/// does not resolve fails each Kafka command at once, saying it cannot
/// reach Kafka, instead of after each call's 10 s time-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_unresolved_broker_fails_each_kafka_command_at_once() {
    let closed = format!("127.0.0.1:{}", harness::free_port());
    let commands: [&[&str]; 4] = [
        &["lag", "--json"],
        &["dlq", "list", "--json"],
        INSPECT,
        &["dlq", "replay", "--dry-run", "--json"],
    ];
    for bootstrap in [closed.as_str(), "no-such-broker.invalid:9092"] {
        for args in commands {
            let out = within(Duration::from_secs(5), args, bootstrap).await;
            assert_eq!(
                failed_as_json(args, &out, 1),
                "kafka_unavailable",
                "{args:?}"
            );
            let said: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            let message = said["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with(&format!("cannot reach Kafka at {bootstrap}")),
                "{args:?}: {said}"
            );
        }
    }
}

/// `dlq inspect` of an offset outside the partition, or of a partition the
/// topic does not have, reads the watermarks and says so at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_refuses_a_missing_offset_or_partition_at_once() {
    let broker = Tansu::start();
    broker.create_topics();
    let deadline = Duration::from_secs(5);
    // Warm up: the first metadata request of a fresh broker may be slow.
    let listed = within(
        Duration::from_secs(30),
        &["dlq", "list", "--json"],
        &broker.bootstrap,
    )
    .await;
    assert!(listed.status.success(), "{listed:?}");

    let args = [
        "dlq",
        "inspect",
        "--partition",
        "0",
        "--offset",
        "1000000",
        "--json",
    ];
    let past = within(deadline, &args, &broker.bootstrap).await;
    assert_eq!(failed_as_json(&args, &past, 1), "offset_out_of_range");
    let said = String::from_utf8_lossy(&past.stderr);
    assert!(said.contains("holds offsets 0 to 0"), "{said}");

    let args = ["dlq", "inspect", "--partition", "7", "--offset", "0"];
    let nowhere = within(deadline, &args, &broker.bootstrap).await;
    let said = String::from_utf8_lossy(&nowhere.stderr);
    assert_eq!(nowhere.status.code(), Some(1), "{said}");
    assert!(nowhere.stdout.is_empty(), "no --json: no error object");
    assert!(said.contains("has no partition 7"), "{said}");
}

/// `lag --json` is `{"groups": [...], "outbox": ...}` for one group or
/// several; a dry run's summary says what it would replay.
#[test]
fn lag_json_keeps_its_shape_and_a_dry_run_says_would_replay() {
    let broker = Tansu::start();
    broker.create_topics();
    let run = |args: &[&str]| {
        let out = command(args, &broker.bootstrap)
            .output()
            .expect("run pubsubkafka");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let keys = |value: &Value| {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
    };
    let args = ["lag", "--group", "a", "--allow-new-group", "--json"];
    let one = stdout_json(&args, &run(&args));
    assert_eq!(keys(&one), Some(vec!["groups".into(), "outbox".into()]));
    assert_eq!(one["outbox"], Value::Null, "{one}");
    assert_eq!(one["groups"][0]["group"], "a", "{one}");
    assert_eq!(one["groups"][0]["total"], 0, "{one}");
    let args = [
        "lag",
        "--group",
        "a",
        "--group",
        "b=orders-dlq",
        "--allow-new-group",
        "--json",
    ];
    let two = stdout_json(&args, &run(&args));
    assert_eq!(keys(&two), keys(&one), "{two}");
    assert_eq!(two["groups"][1]["group"], "b", "{two}");

    let dry = run(&["dlq", "replay", "--dry-run"]);
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.starts_with("dry run: read 0, would replay 0"),
        "{said}"
    );
}
