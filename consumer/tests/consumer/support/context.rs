//! One test's world, set up in one call: a mock cluster with the pipeline's
//! topics, a database of its own and a consumer group name, with a method
//! per thing a test does to it or asks of it (start the consumer, publish,
//! count rows, read a DLQ, ask what the group committed). Tests state their
//! scenario and their assertions; the plumbing lives here once.

use std::fmt;
use std::future::ready;
use std::time::Duration;

use contract::topics;
use harness::events::Outgoing;
use harness::wait::eventually;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use sqlx::PgPool;
use uuid::Uuid;

use super::service::RunningConsumer;
use super::TestDatabase;

/// How long a test waits for something the consumer does: a bound on a
/// broken run, not the expected time (a passing run goes on as soon as it
/// sees it).
pub const WAIT: Duration = Duration::from_secs(30);

/// A table of the read model a test counts the rows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `orders`: one row per stored order.
    Orders,
    /// `order_items`: the stored orders' lines.
    OrderItems,
    /// `users`: one row per stored user.
    Users,
    /// `event_store`: every event stored, append-only.
    EventStore,
    /// `rejections`: one record per dead-lettered message read.
    Rejections,
}

impl Table {
    /// The tables the migrations create for the pipeline's events.
    pub const EVENT_TABLES: [Table; 4] = [
        Table::EventStore,
        Table::OrderItems,
        Table::Orders,
        Table::Users,
    ];

    /// The table's name in the schema.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Orders => "orders",
            Table::OrderItems => "order_items",
            Table::Users => "users",
            Table::EventStore => "event_store",
            Table::Rejections => "rejections",
        }
    }

    /// The statement counting the table's rows (a constant per table, so
    /// no name is ever spliced into SQL at run time).
    const fn count_sql(self) -> &'static str {
        match self {
            Table::Orders => "SELECT count(*) FROM orders",
            Table::OrderItems => "SELECT count(*) FROM order_items",
            Table::Users => "SELECT count(*) FROM users",
            Table::EventStore => "SELECT count(*) FROM event_store",
            Table::Rejections => "SELECT count(*) FROM rejections",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rows of `table` in the database of `pool`.
pub async fn rows(pool: &PgPool, table: Table) -> i64 {
    count(pool, table.count_sql()).await
}

/// What the count statement `sql` returns in the database of `pool`; fails
/// the test naming the statement when the database refuses it.
pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("counting with `{sql}`: {e}"))
}

/// Waits, within [`WAIT`], until the count statement `sql` returns at least
/// `expected`, and returns the count then. At the deadline it returns the
/// last count seen instead of failing, so the caller's assertion (and its
/// message) says what went wrong; only a database that never answered
/// fails here.
pub async fn wait_for_count(pool: &PgPool, sql: &str, expected: i64) -> i64 {
    harness::database::wait_for_count(pool, sql, expected, WAIT).await
}

/// How many stored orders' items do not add up to their totals (0 in a
/// consistent read model).
pub async fn inconsistent_orders(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM orders o
         LEFT JOIN (SELECT order_id, sum(line_total) AS sum, sum(quantity) AS qty
                    FROM order_items GROUP BY order_id) i USING (order_id)
         WHERE i.sum IS DISTINCT FROM o.subtotal OR i.qty IS DISTINCT FROM o.item_count",
    )
    .await
}

/// A fresh database with the read model's migrations applied, for a test
/// that writes or locks rows before (or without) a consumer.
pub async fn migrated_database() -> TestDatabase {
    let db = TestDatabase::create().await;
    if let Err(e) = store::schema::migrate(&db.pool).await {
        panic!("migrating the test database: {e}");
    }
    db
}

/// How every test group's name begins (a dead letter names its group).
pub const GROUP_PREFIX: &str = "test-group-";

/// A fresh consumer group name: each test (and each second group of a test)
/// reads the topics from the start.
pub fn new_group() -> String {
    format!("{GROUP_PREFIX}{}", Uuid::new_v4().simple())
}

/// A test's cluster, database and consumer group.
pub struct TestContext {
    /// librdkafka's mock cluster with the pipeline's topics (a test may
    /// script its failures).
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    /// The cluster's address.
    pub bootstrap: String,
    /// The test's own database.
    pub db: TestDatabase,
    /// The group the consumers of [`TestContext::start_consumer`] join.
    pub group: String,
}

impl TestContext {
    /// A mock cluster, a fresh database (not migrated: the consumer
    /// migrates it as it starts) and a fresh group.
    pub async fn spawn() -> Self {
        let cluster = harness::kafka::mock_cluster();
        let bootstrap = cluster.bootstrap_servers();
        Self {
            cluster,
            bootstrap,
            db: TestDatabase::create().await,
            group: new_group(),
        }
    }

    /// [`TestContext::spawn`] with the database migrated, for a test that
    /// prepares rows, locks or triggers before the consumer starts.
    pub async fn spawn_migrated() -> Self {
        let cluster = harness::kafka::mock_cluster();
        let bootstrap = cluster.bootstrap_servers();
        Self {
            cluster,
            bootstrap,
            db: migrated_database().await,
            group: new_group(),
        }
    }

    /// The consumer of the test's group and database, with `extra`
    /// settings over the test defaults.
    pub fn start_consumer(&self, extra: &[(&str, &str)]) -> RunningConsumer {
        self.start_consumer_in(&self.group, extra)
    }

    /// A consumer of group `group` (another group reading everything again,
    /// say) on the test's database.
    pub fn start_consumer_in(&self, group: &str, extra: &[(&str, &str)]) -> RunningConsumer {
        RunningConsumer::start(&self.bootstrap, &self.db.url, group, extra)
    }

    /// A consumer of the test's group reaching its database at
    /// `database_url` (through a proxy a test can cut, say).
    pub fn start_consumer_via(
        &self,
        database_url: &str,
        extra: &[(&str, &str)],
    ) -> RunningConsumer {
        RunningConsumer::start(&self.bootstrap, database_url, &self.group, extra)
    }

    /// Publishes `messages` and waits until every one is acknowledged.
    pub fn publish(&self, messages: &[Outgoing]) {
        harness::kafka::publish(&self.bootstrap, messages);
    }

    /// The messages of `topic` from the beginning, once at least
    /// `expected` have come (or [`WAIT`] has passed).
    pub fn read(&self, topic: &str, expected: usize) -> Vec<OwnedMessage> {
        harness::kafka::read_topic(&self.bootstrap, topic, expected, WAIT)
    }

    /// How many messages `topic` holds, read from its partitions' end
    /// offsets: an exact count once its writers have stopped, where reading
    /// the topic for a while could only say "no more arrived in that time".
    /// (Nothing is deleted or compacted in the mock cluster, and no writer
    /// is transactional, so every offset is a message.)
    pub fn topic_size(&self, topic: &str) -> i64 {
        let reader: BaseConsumer = harness::kafka::client(&self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("a reader of {topic}: {e}"));
        (0..harness::kafka::PARTITIONS)
            .map(|p| match reader.fetch_watermarks(topic, p, WAIT) {
                Ok((_, end)) => end,
                Err(e) => panic!("the end offset of {topic}/{p}: {e}"),
            })
            .sum()
    }

    /// The offsets the test's group has committed on each partition of
    /// `orders` (the next message it will read).
    pub fn committed(&self) -> Vec<Option<i64>> {
        harness::kafka::committed(&self.bootstrap, &self.group, topics::ORDERS)
    }

    /// Waits until the group's committed offset of `orders` partition 0 is
    /// `offset`; the committed offsets of the topic's partitions then.
    pub async fn committed_to(&self, offset: i64) -> Vec<Option<i64>> {
        eventually(WAIT, "partition 0 committed to its offset", || {
            let committed = self.committed();
            ready(if committed[0] == Some(offset) {
                Ok(committed)
            } else {
                Err(format!("committed {committed:?}, not {offset}"))
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The rows of `table` now.
    pub async fn rows(&self, table: Table) -> i64 {
        rows(&self.db.pool, table).await
    }

    /// Waits until `table` holds at least `expected` rows; the count then
    /// (the last one seen if [`WAIT`] passed first: see [`wait_for_count`]).
    pub async fn wait_for_rows(&self, table: Table, expected: i64) -> i64 {
        wait_for_count(&self.db.pool, table.count_sql(), expected).await
    }

    /// What the count statement `sql` returns now (for a count that is not
    /// a table's rows).
    pub async fn count(&self, sql: &str) -> i64 {
        count(&self.db.pool, sql).await
    }

    /// [`wait_for_count`] in the test's database.
    pub async fn wait_for_count(&self, sql: &str, expected: i64) -> i64 {
        wait_for_count(&self.db.pool, sql, expected).await
    }

    /// Drops the test's database (the cluster goes with the context).
    pub async fn tear_down(self) {
        self.db.drop().await;
    }
}
