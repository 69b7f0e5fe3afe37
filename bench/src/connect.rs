//! The Kafka Connect peer of the consumer's drain: a standalone Connect
//! worker running Debezium's JDBC sink (`bench/peers/connect`) over the
//! same preloaded `orders` topic, into a database with the consumer's
//! schema, so it writes the consumer's `orders` and `order_items` rows
//! (through `read-model.sql`'s trigger) besides its own `connect_orders`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use harness::database::TestDatabase;
use sqlx::PgPool;

use crate::report::Report;
use crate::system::{peak_rss_mib, Source};

/// Where the peer's templates live, from the workspace root.
const PEER: &str = "bench/peers/connect";
/// Where `scripts/install-connect.sh` installs the worker and the plugin.
const INSTALL: &str = ".tools/connect";
/// connect-standalone.sh's heap (its `KAFKA_HEAP_OPTS`).
const HEAP: [&str; 2] = ["-Xms256M", "-Xmx2G"];
/// kafka-run-class.sh's `KAFKA_JVM_PERFORMANCE_OPTS`, which
/// connect-standalone.sh runs the worker with.
const JVM_OPTS: [&str; 6] = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
];
/// Longest the drain may go without a new row (worker start-up included).
const STALL: Duration = Duration::from_secs(60);
/// How often the stored rows are counted.
const POLL: Duration = Duration::from_millis(200);

/// The versions and settings of the peer, in one line.
pub fn describe() -> String {
    let (worker, debezium) = match versions() {
        Ok(v) => v,
        Err(e) => return format!("Kafka Connect: {e:#}"),
    };
    let sink =
        std::fs::read_to_string(root().join(PEER).join("jdbc-sink.properties")).unwrap_or_default();
    let setting = |key: &str| property(&sink, key).unwrap_or("?").to_owned();
    let short = |class: String| class.rsplit('.').next().unwrap_or_default().to_owned();
    format!(
        "Kafka Connect {worker} standalone worker, Debezium JDBC sink {debezium}: \
         tasks.max={}, batch.size={}, insert.mode={}, key/value converters {}/{}, \
         transforms {}, heap {}",
        setting("tasks.max"),
        setting("batch.size"),
        setting("insert.mode"),
        short(setting("key.converter")),
        short(setting("value.converter")),
        setting("transforms"),
        HEAP.join(" "),
    )
}

/// Drains the `expected` orders preloaded on topic `orders` at `bootstrap`
/// with the JDBC sink into a fresh database; rows per second from the first
/// stored order to the last, and the cores the worker and PostgreSQL used
/// meanwhile. Checks that it wrote the rows `consumer` (the database the
/// consumer drained the same topic into) holds.
pub async fn drain(
    bootstrap: &str,
    expected: usize,
    consumer: &TestDatabase,
    report: &mut Report,
) -> anyhow::Result<(f64, f64)> {
    let (_, debezium) = versions()?;
    eprintln!("  {}", describe());
    let db = TestDatabase::create().await;
    let result = async {
        let mut worker = Worker::start(bootstrap, &db).await?;
        let measured = measure(&mut worker, &db.pool, expected, report).await?;
        report.record(
            "memory",
            "Kafka Connect worker peak RSS (drain)",
            "MiB",
            worker.pid().and_then(peak_rss_mib).unwrap_or(f64::NAN),
        );
        // The worker's connection goes before the counts are compared.
        drop(worker);
        same_rows(consumer, &db, expected).await?;
        anyhow::Ok(measured)
    }
    .await;
    db.drop().await;
    let (rate, cores) = result?;
    let tasks = std::fs::read_to_string(root().join(PEER).join("jdbc-sink.properties"))
        .ok()
        .and_then(|s| property(&s, "tasks.max").map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    report.record(
        "persist",
        &format!(
            "Kafka Connect JDBC sink drain (Debezium {debezium}, {tasks} task{})",
            if tasks == "1" { "" } else { "s" }
        ),
        "rows/s",
        rate,
    );
    Ok((rate, cores))
}

/// Follows the drain until all `expected` rows are stored; the rate from
/// the first to the last, and the cores of the worker and PostgreSQL from
/// the first on.
async fn measure(
    worker: &mut Worker,
    pool: &PgPool,
    expected: usize,
    report: &mut Report,
) -> anyhow::Result<(f64, f64)> {
    let sources = [
        ("connect worker", Source::Pid(worker.pid())),
        ("postgres", Source::Named("postgres")),
    ];
    let mut progress = Progress {
        worker: &mut *worker,
        pool,
        expected,
        counter: Counter::default(),
    };
    let followed = crate::follow::follow(&mut progress, expected, POLL, STALL, &sources).await;
    let followed = match followed {
        Ok(followed) => followed,
        Err(e) => bail!("Kafka Connect drain: {e:#}:\n{}", worker.log_tail(40)),
    };
    let cores = crate::system::record_cpu(report, "Kafka Connect drain", &followed.cpu);
    Ok((followed.rate, cores.iter().map(|(_, c)| c).sum()))
}

/// The sink's stored rows, while its worker runs.
struct Progress<'a> {
    worker: &'a mut Worker,
    pool: &'a PgPool,
    expected: usize,
    counter: Counter,
}

impl crate::follow::Count for Progress<'_> {
    async fn count(&mut self) -> anyhow::Result<u64> {
        if let Some(status) = self.worker.exited()? {
            bail!("the worker exited ({status})");
        }
        let n = self.counter.count(self.pool).await?;
        if (n as usize) < self.expected {
            return Ok(n);
        }
        // The count only reads blocks it has not counted before: the end
        // is a full one.
        self.counter = Counter::default();
        let full: i64 = sqlx::query_scalar("SELECT count(*) FROM connect_orders")
            .fetch_one(self.pool)
            .await?;
        Ok(u64::try_from(full)?)
    }
}

/// Counts the rows of `connect_orders` incrementally. A `count(*)` every
/// poll would scan the whole table each time (hundreds of MB of jsonb rows
/// near the end of a large drain, several times a second: CPU of the
/// server being measured). The sink only appends (one connection, one
/// transaction at a time, no updates without redeliveries), so each poll
/// reads only the blocks from the last one that had a visible row on
/// (a TID range scan, PostgreSQL 14 or later): every row is read about
/// once more over the whole drain, by one backend whose CPU counts under
/// "postgres". Stats views (`n_tup_ins`) would cost nothing but lag by a
/// second or more, which the rate would carry.
#[derive(Default)]
struct Counter {
    /// Rows in the blocks before `block`.
    before: u64,
    /// The last block a visible row was seen on.
    block: i64,
}

impl Counter {
    async fn count(&mut self, pool: &PgPool) -> anyhow::Result<u64> {
        let blocks: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (ctid::text::point)[0]::bigint AS block, count(*) FROM connect_orders \
             WHERE ctid >= $1::tid GROUP BY 1 ORDER BY 1",
        )
        .bind(format!("({},0)", self.block))
        .fetch_all(pool)
        .await
        .context("count the rows of connect_orders")?;
        let total: i64 = blocks.iter().map(|&(_, n)| n).sum();
        let n = self.before + total as u64;
        if let Some(&(last, in_last)) = blocks.last() {
            self.before += (total - in_last) as u64;
            self.block = last;
        }
        Ok(n)
    }
}

/// The JDBC sink wrote the consumer's rows: as many orders and items, the
/// same money, and one `connect_orders` row per order.
async fn same_rows(
    consumer: &TestDatabase,
    db: &TestDatabase,
    expected: usize,
) -> anyhow::Result<()> {
    const CHECKS: [(&str, &str); 2] = [
        (
            "orders",
            "SELECT count(*)::text || ' orders, total ' || coalesce(sum(total), 0)::text FROM orders",
        ),
        (
            "order_items",
            "SELECT count(*)::text || ' items, quantity ' || coalesce(sum(quantity), 0)::text \
             || ', total ' || coalesce(sum(line_total), 0)::text FROM order_items",
        ),
    ];
    for (table, sql) in CHECKS {
        let theirs: String = sqlx::query_scalar(sql).fetch_one(&consumer.pool).await?;
        let ours: String = sqlx::query_scalar(sql).fetch_one(&db.pool).await?;
        ensure!(
            ours == theirs,
            "Kafka Connect wrote {table}: {ours}; the consumer: {theirs}"
        );
    }
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db.pool)
        .await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM connect_orders")
        .fetch_one(&db.pool)
        .await?;
    ensure!(
        orders as usize == expected && stored as usize == expected,
        "Kafka Connect drain: {orders} orders, {stored} connect_orders rows for {expected} orders"
    );
    Ok(())
}

/// A standalone Connect worker process with its files; stopped (SIGTERM,
/// then SIGKILL) and its files removed when dropped.
struct Worker {
    child: Option<Child>,
    dir: PathBuf,
}

impl Worker {
    /// Prepares `db` (the consumer's migrations, `table.sql`,
    /// `read-model.sql`) and starts the worker on it.
    async fn start(bootstrap: &str, db: &TestDatabase) -> anyhow::Result<Self> {
        let root = root();
        let peer = root.join(PEER);
        store::schema::migrate(&db.pool).await?;
        for file in ["table.sql", "read-model.sql"] {
            let sql = std::fs::read_to_string(peer.join(file))
                .with_context(|| format!("read {PEER}/{file}"))?;
            sqlx::raw_sql(&sql)
                .execute(&db.pool)
                .await
                .with_context(|| format!("apply {PEER}/{file}"))?;
        }

        let dir =
            std::env::temp_dir().join(format!("connect-drain-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // From here on the guard removes the folder (and stops the worker).
        let mut worker = Self { child: None, dir };
        let url = reqwest::Url::parse(&db.url).context("the test database's URL")?;
        let jdbc = format!(
            "jdbc:postgresql://{}:{}{}?stringtype=unspecified",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432),
            url.path()
        );
        let install = root.join(INSTALL);
        let path = |p: &Path| p.display().to_string();
        write_properties(
            &peer.join("worker.properties"),
            &worker.dir.join("worker.properties"),
            &[
                ("bootstrap.servers", bootstrap.to_owned()),
                ("plugin.path", path(&install.join("plugins"))),
                (
                    "offset.storage.file.filename",
                    path(&worker.dir.join("connect.offsets")),
                ),
                (
                    "listeners",
                    format!("http://127.0.0.1:{}", harness::free_port()),
                ),
            ],
        )?;
        // A name of its own: its consumer group is `connect-<name>`.
        let name = format!(
            "bench-orders-jdbc-sink-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        write_properties(
            &peer.join("jdbc-sink.properties"),
            &worker.dir.join("jdbc-sink.properties"),
            &[
                ("name", name),
                ("connection.url", jdbc),
                ("connection.username", url.username().to_owned()),
                (
                    "connection.password",
                    url.password().unwrap_or_default().to_owned(),
                ),
            ],
        )?;
        let log =
            File::create(worker.dir.join("connect.log")).context("create the worker's log")?;
        let child = Command::new("java")
            .args(HEAP)
            .args(JVM_OPTS)
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                path(&peer.join("log4j2.properties"))
            ))
            .arg("-cp")
            .arg(format!("{}/*", path(&install.join("libs"))))
            .arg("org.apache.kafka.connect.cli.ConnectStandalone")
            .arg(worker.dir.join("worker.properties"))
            .arg(worker.dir.join("jdbc-sink.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start the Kafka Connect worker (java on PATH?)")?;
        worker.child = Some(child);
        Ok(worker)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How it ended, if it did.
    fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        harness::process::tail(&self.dir.join("connect.log"), lines)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            harness::process::terminate(child, Duration::from_secs(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `template` to `to` with each `(key, value)` set: its line
/// replaced, or added when the template has none.
fn write_properties(template: &Path, to: &Path, set: &[(&str, String)]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(template)
        .with_context(|| format!("read {}", template.display()))?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (key, value) in set {
        let line = format!("{key}={value}");
        match lines
            .iter_mut()
            .find(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == *key))
        {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
    }
    std::fs::write(to, lines.join("\n") + "\n").with_context(|| format!("write {}", to.display()))
}

/// The value of `key` in properties text.
fn property<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim())
        })
}

fn root() -> PathBuf {
    harness::workspace_root()
}

/// The worker's version (the broker's, from `scripts/install-kafka.sh`, as
/// `scripts/install-connect.sh` reads it) and Debezium's (from
/// `scripts/install-connect.sh`); fails unless that is what is installed.
fn versions() -> anyhow::Result<(String, String)> {
    let root = root();
    let read = |script: &str, key: &str| -> anyhow::Result<String> {
        let text =
            std::fs::read_to_string(root.join(script)).with_context(|| format!("read {script}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("no {key}= in {script}"))
    };
    let worker = read("scripts/install-kafka.sh", "version")?;
    let debezium = read("scripts/install-connect.sh", "debezium")?;
    let installed = std::fs::read_to_string(root.join(INSTALL).join("VERSION")).unwrap_or_default();
    let jar = root
        .join(INSTALL)
        .join("libs")
        .join(format!("connect-runtime-{worker}.jar"));
    ensure!(
        installed.trim() == format!("{worker} {debezium}") && jar.is_file(),
        "Kafka Connect {worker} with Debezium's JDBC sink {debezium} is not installed at {INSTALL} \
         (found {:?}): run ./scripts/install-connect.sh",
        installed.trim()
    );
    Ok((worker, debezium))
}
