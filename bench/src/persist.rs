//! Persistence: the consumer draining a preloaded topic into PostgreSQL,
//! next to a bare bulk insert of the same rows into the same schema (the
//! database limit: COPY, in transactions of the consumer's batch size) and
//! a naive consumer that writes and commits one message at a time.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use contract::{Format, OrderEvent};
use harness::database::TestDatabase;
use harness::events::Outgoing;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;

use crate::broker::Broker;
use crate::report::Report;
use crate::system::{peak_rss_mib, CpuMeter, Source};
use crate::{services, Settings};

const SECTION: &str = "persist";

/// The comparison with Kafka Connect's JDBC sink, as recorded.
pub const CONSUMER_PER_CORE: &str = "consumer drain per core (consumer + PostgreSQL)";
pub const CONNECT_PER_CORE: &str = "Kafka Connect drain per core (worker + PostgreSQL)";
pub const CONSUMER_OVER_CONNECT: &str = "consumer / Kafka Connect, rows/s per core";
/// The consumer's default `BATCH_SIZE`.
const BATCH: usize = 500;

/// Measures the three ways of persisting `settings.orders` orders.
pub async fn run(settings: &Settings, report: &mut Report, broker: &Broker) -> anyhow::Result<()> {
    let events: Vec<OrderEvent> = (0..settings.orders)
        .map(harness::events::order_event)
        .collect();
    let messages = events
        .iter()
        .map(|e| harness::events::order_message(e, Format::Json))
        .collect::<Vec<_>>();
    let bootstrap = broker.bootstrap().to_owned();
    tokio::task::spawn_blocking(move || preload(&bootstrap, &messages)).await??;

    let (rate, cores, drained) =
        drain(broker.bootstrap(), broker.cpu(), events.len(), report).await?;
    report.record(SECTION, "consumer drain", "rows/s", rate);
    // Kafka Connect's JDBC sink on the same topic, the same PostgreSQL.
    // Per core: the sink's process and the database's, on either side.
    let (connect, connect_cores) =
        crate::connect::drain(broker.bootstrap(), events.len(), &drained, report).await?;
    let (ours, theirs) = (rate / cores, connect / connect_cores);
    report.record(SECTION, CONSUMER_PER_CORE, "rows/s/core", ours);
    report.record(SECTION, CONNECT_PER_CORE, "rows/s/core", theirs);
    report.record("ratio", CONSUMER_OVER_CONNECT, "x", ours / theirs);
    report.record(
        "ratio",
        "consumer drain / Kafka Connect drain",
        "x",
        rate / connect,
    );

    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await?;
    let cpu = CpuMeter::start(&[
        ("load generator", Source::Pid(Some(std::process::id()))),
        ("postgres", Source::Named("postgres")),
    ]);
    let started = Instant::now();
    copy_rows(&db.pool, &events).await?;
    let copy = events.len() as f64 / started.elapsed().as_secs_f64();
    crate::system::record_cpu(report, "bare COPY", &cpu);
    same_rows(&drained, &db).await?;
    drained.drop().await;
    db.drop().await;
    report.record(
        SECTION,
        &format!("bare COPY, {BATCH} rows per transaction"),
        "rows/s",
        copy,
    );

    let naive = naive_consumer(broker.bootstrap(), events.len(), settings.naive_limit).await?;
    report.record(
        SECTION,
        "naive consumer, one row one commit",
        "rows/s",
        naive,
    );
    report.record("ratio", "consumer drain / bare COPY", "x", rate / copy);
    report.record(
        "ratio",
        "consumer drain / naive consumer",
        "x",
        rate / naive,
    );
    Ok(())
}

/// Publishes `messages` as fast as the broker takes them.
fn preload(bootstrap: &str, messages: &[Outgoing]) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()
        .context("preload producer")?;
    for m in messages {
        let mut record = m.record();
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context("preload"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("preload flush")?;
    Ok(())
}

/// The bare COPY is the limit only if it writes what the consumer writes:
/// every column the consumer fills, so rows of the same width (within a
/// few bytes: offsets, times and ids differ in their digits).
async fn same_rows(drained: &TestDatabase, copied: &TestDatabase) -> anyhow::Result<()> {
    for table in ["event_store", "orders", "order_items"] {
        let sql = format!("SELECT avg(pg_column_size(t.*))::float8 FROM {table} t");
        let d: f64 = sqlx::query_scalar(&sql).fetch_one(&drained.pool).await?;
        let c: f64 = sqlx::query_scalar(&sql).fetch_one(&copied.pool).await?;
        ensure!(
            (d - c).abs() <= d * 0.02,
            "bare COPY writes {table} rows of {c:.0} bytes, the consumer {d:.0}: \
             the baseline must write every column the consumer does"
        );
    }
    Ok(())
}

/// Runs the consumer over the preloaded topic; rows per second from the
/// first row to the last (the group join is not persistence), and the
/// cores the consumer and PostgreSQL used meanwhile. Gives back the
/// database it filled.
async fn drain(
    bootstrap: &str,
    broker: Source,
    expected: usize,
    report: &mut Report,
) -> anyhow::Result<(f64, f64, TestDatabase)> {
    let db = TestDatabase::create().await;
    let consumer = services::consumer(bootstrap, &db.url, "bench-drain", &[]).await;
    let sources = [
        ("consumer", Source::Pid(consumer.pid())),
        ("broker", broker),
        ("postgres", Source::Named("postgres")),
    ];
    // Progress comes from the consumer's own counter: counting rows in the
    // database while it drains would load the server being measured.
    let mut counter = Persisted {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        metrics: consumer.url("/metrics"),
    };
    let followed = crate::follow::follow(
        &mut counter,
        expected,
        Duration::from_millis(50),
        Duration::from_secs(60),
        &sources,
    )
    .await
    .with_context(|| format!("consumer drain:\n{}", consumer.log_tail(20)))?;
    let rate = followed.rate;
    // The consumer's and PostgreSQL's cores, what the sink costs.
    let cores = crate::system::record_cpu(report, "consumer drain", &followed.cpu);
    let cores =
        crate::system::cores_of(&cores, "consumer") + crate::system::cores_of(&cores, "postgres");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db.pool)
        .await?;
    ensure!(
        rows as usize == expected,
        "consumer drain: {rows} rows for {expected} orders"
    );
    report.record(
        "memory",
        "consumer peak RSS (drain)",
        "MiB",
        consumer.pid().and_then(peak_rss_mib).unwrap_or(f64::NAN),
    );
    drop(consumer);
    Ok((rate, cores, db))
}

/// The consumer's count of persisted `orders` messages, from its metrics.
struct Persisted {
    client: reqwest::Client,
    metrics: String,
}

impl crate::follow::Count for Persisted {
    async fn count(&mut self) -> anyhow::Result<u64> {
        persisted_orders(&self.client, &self.metrics).await
    }
}

async fn persisted_orders(client: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let text = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let line = text.lines().find(|l| {
        l.starts_with("kafka_consumer_messages_total{")
            && l.contains("outcome=\"persisted\"")
            && l.contains("topic=\"orders\"")
    });
    // The series appears with the first persisted message.
    let Some(line) = line else { return Ok(0) };
    let value = line.rsplit(' ').next().unwrap_or_default();
    value
        .parse::<f64>()
        .map(|v| v as u64)
        .with_context(|| format!("consumer metrics: not a count: {line}"))
}

/// One field in COPY's text format.
fn field(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A row of COPY text: fields separated by tabs, `None` as `\N`.
fn row(out: &mut String, fields: &[Option<&str>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match f {
            Some(v) => field(out, v),
            None => out.push_str("\\N"),
        }
    }
    out.push('\n');
}

/// The rows the consumer writes for `events`, by COPY, `BATCH` orders per
/// transaction.
async fn copy_rows(pool: &PgPool, events: &[OrderEvent]) -> anyhow::Result<()> {
    for chunk in events.chunks(BATCH) {
        let (mut store, mut orders, mut items) = (String::new(), String::new(), String::new());
        for (i, e) in chunk.iter().enumerate() {
            let m = &e.metadata;
            let (event_id, order_id) = (m.event_id.to_string(), e.order_id.to_string());
            let occurred = m.occurred_at.to_rfc3339();
            let payload = serde_json::to_string(e)?;
            let fingerprint = contract::fingerprint::order(e);
            let offset = i.to_string();
            let version = m.schema_version.to_string();
            row(
                &mut store,
                &[
                    Some(&event_id),
                    Some(&m.event_type),
                    Some(&order_id),
                    Some(&version),
                    Some(Format::Json.content_type()),
                    Some(&payload),
                    Some("orders"),
                    Some("0"),
                    Some(&offset),
                    Some(&occurred),
                    Some(&m.correlation_id),
                    m.trace_id.as_deref(),
                    Some(fingerprint.as_str()),
                ],
            );
            let address = serde_json::to_string(&e.customer.address)?;
            let (subtotal, total) = (e.totals.subtotal.to_string(), e.totals.total.to_string());
            let count = e.totals.item_count.to_string();
            row(
                &mut orders,
                &[
                    Some(&order_id),
                    Some(&e.customer.id),
                    Some(&e.customer.name),
                    Some(&e.customer.email),
                    Some(&address),
                    Some(&e.currency),
                    Some(&subtotal),
                    Some(&total),
                    Some(&count),
                    e.promotion_code.as_deref(),
                    Some(&event_id),
                    Some(&version),
                    Some(&occurred),
                    Some(&m.correlation_id),
                    Some(fingerprint.as_str()),
                ],
            );
            for (line, item) in e.items.iter().enumerate() {
                let (price, line_total) =
                    (item.unit_price.to_string(), item.line_total.to_string());
                let (line, quantity) = (line.to_string(), item.quantity.to_string());
                row(
                    &mut items,
                    &[
                        Some(&order_id),
                        Some(&line),
                        Some(&item.sku),
                        Some(&item.name),
                        Some(&quantity),
                        Some(&price),
                        Some(&line_total),
                        Some(item.inventory_status.as_str()),
                    ],
                );
            }
        }
        let mut tx = pool.begin().await?;
        for (statement, data) in [
            (
                "COPY event_store (event_id, event_type, aggregate_id, schema_version, content_type, payload, \
                 source_topic, source_partition, source_offset, occurred_at, correlation_id, trace_id, \
                 content_fingerprint) FROM STDIN",
                store,
            ),
            (
                "COPY orders (order_id, customer_id, customer_name, customer_email, shipping_address, currency, \
                 subtotal, total, item_count, promotion_code, event_id, schema_version, occurred_at, correlation_id, \
                 content_fingerprint) FROM STDIN",
                orders,
            ),
            (
                "COPY order_items (order_id, line_no, sku, name, quantity, unit_price, line_total, inventory_status) \
                 FROM STDIN",
                items,
            ),
        ] {
            let mut copy = tx.copy_in_raw(statement).await?;
            copy.send(data.into_bytes()).await?;
            copy.finish().await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// A consumer that decodes each message, writes it in a transaction of its
/// own with one statement per row, and commits its offset: the usual first
/// version. Rows per second over `limit` at most.
async fn naive_consumer(bootstrap: &str, available: usize, limit: Duration) -> anyhow::Result<f64> {
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await?;
    let kafka: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", services::unique_group("bench-naive"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .context("naive consumer")?;
    kafka.subscribe(&["orders"])?;
    let mut started: Option<Instant> = None;
    let mut rows = 0usize;
    // A rebalance (topics just created change the group's metadata) may
    // deliver a message again whose commit was still on its way: its row
    // is written once, so rows are counted by order.
    let mut orders = std::collections::HashSet::new();
    while rows < available && started.is_none_or(|s| s.elapsed() < limit) {
        let message = tokio::time::timeout(Duration::from_secs(60), kafka.recv())
            .await
            .context("naive consumer: no message within 60 s")??;
        started.get_or_insert_with(Instant::now);
        let decoded =
            consumer::decode::decode(&message.detach(), consumer::decode::Domain::Orders)?;
        let event = match decoded.event {
            consumer::decode::DomainEvent::Order(event) => event,
            other => anyhow::bail!("naive consumer: not an order: {other:?}"),
        };
        let m = &event.metadata;
        let mut tx = db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO event_store (event_id, event_type, aggregate_id, schema_version, content_type, payload, \
             source_topic, source_partition, source_offset, occurred_at, correlation_id, trace_id) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(m.event_id)
        .bind(&m.event_type)
        .bind(event.order_id.to_string())
        .bind(m.schema_version as i32)
        .bind(Format::Json.content_type())
        .bind(serde_json::to_string(&event)?)
        .bind(message.topic())
        .bind(message.partition())
        .bind(message.offset())
        .bind(m.occurred_at)
        .bind(&m.correlation_id)
        .bind(&m.trace_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO orders (order_id, customer_id, customer_name, customer_email, shipping_address, currency, \
             subtotal, total, item_count, promotion_code, event_id, schema_version, occurred_at, correlation_id) \
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING",
        )
        .bind(event.order_id)
        .bind(&event.customer.id)
        .bind(&event.customer.name)
        .bind(&event.customer.email)
        .bind(serde_json::to_string(&event.customer.address)?)
        .bind(&event.currency)
        .bind(event.totals.subtotal)
        .bind(event.totals.total)
        .bind(event.totals.item_count as i32)
        .bind(&event.promotion_code)
        .bind(m.event_id)
        .bind(m.schema_version as i32)
        .bind(m.occurred_at)
        .bind(&m.correlation_id)
        .execute(&mut *tx)
        .await?;
        for (line, item) in event.items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price, line_total, \
                 inventory_status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(event.order_id)
            .bind(line as i32)
            .bind(&item.sku)
            .bind(&item.name)
            .bind(item.quantity as i32)
            .bind(item.unit_price)
            .bind(item.line_total)
            .bind(item.inventory_status.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        kafka.commit_message(&message, CommitMode::Async)?;
        orders.insert(event.order_id);
        rows += 1;
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let persisted: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db.pool)
        .await?;
    ensure!(
        persisted as usize == orders.len(),
        "naive consumer wrote {persisted} rows for {} orders ({rows} messages)",
        orders.len()
    );
    db.drop().await;
    Ok(rows as f64 / secs.max(1e-3))
}
