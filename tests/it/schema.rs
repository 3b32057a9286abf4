//! The schema on the real engine: migrations (fresh, repeated, retention change, added
//! column, concurrent, newer schema), inserts into every table, the errors views, TTL expiry
//! of every table, the low-severity TTL, and the server_logs size cap.

use std::collections::BTreeSet;
use std::time::Duration;

use logbook::config::Config;
use logbook::schema::{self, LogKind, RowId, Ts};
use logbook::store::migrate::{Migrator, SCHEMA_VERSION};
use logbook::store::{StoreError, size_cap};
use serde::Deserialize;

use crate::harness::{TestDb, test_db};

/// logbook's configuration for a test database, through the documented env overrides.
pub fn config_for(db: &TestDb, extra: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logbook.toml");
    std::fs::write(&path, extra).unwrap();
    let vars = [
        ("LOGBOOK_CLICKHOUSE_URL", &db.url),
        ("LOGBOOK_CLICKHOUSE_USER", &db.user),
        ("LOGBOOK_CLICKHOUSE_PASSWORD", &db.password),
        ("LOGBOOK_CLICKHOUSE_DATABASE", &db.database),
    ];
    Config::load(
        Some(&path),
        vars.map(|(k, v)| (k.to_owned(), v.to_string())),
    )
    .unwrap()
}

pub async fn migrated(name: &str, extra: &str) -> (TestDb, Config) {
    let db = test_db(name).await;
    let config = config_for(&db, extra);
    migrator(&db, &config).run(false).await.unwrap();
    (db, config)
}

fn migrator(db: &TestDb, config: &Config) -> Migrator {
    Migrator::new(db.endpoint().client(), config)
}

async fn count(db: &TestDb, table: &str) -> u64 {
    db.client
        .query(&format!("SELECT count() FROM `{table}`"))
        .fetch_one::<u64>()
        .await
        .unwrap()
}

async fn count_where(db: &TestDb, table: &str, condition: &str) -> u64 {
    db.client
        .query(&format!("SELECT count() FROM `{table}` WHERE {condition}"))
        .fetch_one::<u64>()
        .await
        .unwrap()
}

async fn engine_full(db: &TestDb, table: &str) -> String {
    db.client
        .query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {t:String}")
        .param("t", table)
        .fetch_one::<String>()
        .await
        .unwrap()
}

#[tokio::test]
async fn migrate_creates_every_table_and_view_then_has_nothing_to_do() {
    let (db, config) = migrated("migrate_fresh", "").await;
    let names: Vec<String> = db
        .client
        .query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        .fetch_all()
        .await
        .unwrap();
    for table in schema::tables() {
        assert!(
            names.iter().any(|n| n == table.name),
            "missing {}",
            table.name
        );
    }
    assert!(names.iter().any(|n| n == "otel_traces_trace_id_ts_mv"));
    assert!(names.iter().any(|n| n == "api_calls_errors_mv"));
    assert_eq!(migrator(&db, &config).plan().await.unwrap(), vec![]);
    assert_eq!(migrator(&db, &config).run(false).await.unwrap(), vec![]);
    assert_eq!(
        migrator(&db, &config).recorded_version().await.unwrap(),
        Some(SCHEMA_VERSION)
    );
    assert!(
        engine_full(&db, "api_calls")
            .await
            .contains("toIntervalDay(7)")
    );
    assert!(
        engine_full(&db, "audit_activity")
            .await
            .contains("toIntervalDay(365)")
    );
    assert!(!engine_full(&db, "server_logs").await.contains(" TTL "));
}

#[tokio::test]
async fn an_errors_view_whose_condition_changed_is_replaced() {
    let (db, config) = migrated("migrate_view_condition", "").await;
    // As schema version 1 made it: mail failures were `failed`.
    let views = logbook::schema::ddl::Ddl::new(&db.database).views();
    let (_, sql) = views
        .iter()
        .find(|(name, _)| name == "mail_messages_errors_mv")
        .unwrap();
    let old = sql.replace("WHERE status = 'error'", "WHERE status = 'failed'");
    assert_ne!(&old, sql);
    for statement in ["DROP VIEW mail_messages_errors_mv SYNC", old.as_str()] {
        db.client.query(statement).execute().await.unwrap();
    }
    let steps = migrator(&db, &config).run(false).await.unwrap();
    let described: Vec<_> = steps.iter().map(|s| s.description.as_str()).collect();
    assert_eq!(
        described,
        [
            "replace materialized view mail_messages_errors_mv: WHERE status = 'error' instead of status = 'failed'",
            "create materialized view mail_messages_errors_mv",
        ]
    );
    assert_eq!(migrator(&db, &config).plan().await.unwrap(), vec![]);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let db = test_db("migrate_dry_run").await;
    let config = config_for(&db, "");
    let plan = migrator(&db, &config).plan().await.unwrap();
    assert!(
        plan.iter()
            .any(|s| s.sql.contains("CREATE TABLE IF NOT EXISTS"))
    );
    let tables: u64 = db
        .client
        .query("SELECT count() FROM system.tables WHERE database = currentDatabase()")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn retention_change_alters_ttl_and_keeps_every_row() {
    let (db, _) = migrated("migrate_retention", "").await;
    db.client
        .query("INSERT INTO api_calls (id, time, bot) SELECT generateUUIDv7(), now64(9) - toIntervalHour(number), 'b' FROM numbers(100)")
        .execute()
        .await
        .unwrap();
    let config = config_for(
        &db,
        "[retention.ttl]\napi_calls = \"3d\"\nerrors = \"0s\"\n",
    );
    let plan = migrator(&db, &config).plan().await.unwrap();
    let descriptions: Vec<_> = plan.iter().map(|s| s.description.as_str()).collect();
    assert_eq!(plan.len(), 2, "{descriptions:?}");
    assert!(descriptions.contains(
        &"change TTL of api_calls from toDateTime(time) + toIntervalDay(7) to toDateTime(time) + toIntervalDay(3)"
    ));
    assert!(plan.iter().any(|s| s.sql.ends_with("`errors` REMOVE TTL")));
    migrator(&db, &config).run(false).await.unwrap();
    assert!(
        engine_full(&db, "api_calls")
            .await
            .contains("toIntervalDay(3)")
    );
    assert!(!engine_full(&db, "errors").await.contains(" TTL "));
    assert_eq!(count(&db, "api_calls").await, 100);
    assert_eq!(migrator(&db, &config).plan().await.unwrap(), vec![]);
}

#[tokio::test]
async fn column_missing_from_an_older_table_is_added_without_data_loss() {
    let (db, config) = migrated("migrate_add_column", "").await;
    // An older deployment: api_calls without the duration_ms column and its id index.
    for sql in [
        "INSERT INTO api_calls (id, time, bot) SELECT generateUUIDv7(), now64(9), 'b' FROM numbers(10)",
        "ALTER TABLE api_calls DROP COLUMN duration_ms",
        "ALTER TABLE api_calls DROP INDEX idx_id",
    ] {
        db.client.query(sql).execute().await.unwrap();
    }
    let steps = migrator(&db, &config).run(false).await.unwrap();
    let descriptions: Vec<_> = steps.iter().map(|s| s.description.as_str()).collect();
    assert_eq!(
        descriptions,
        [
            "add column api_calls.duration_ms UInt32",
            "add index api_calls.idx_id",
            "build index api_calls.idx_id for existing rows",
        ]
    );
    assert_eq!(count(&db, "api_calls").await, 10);
    // The crate validates the struct against the table: every column must be back.
    insert(
        &db,
        schema::ApiCall {
            bot: "after".into(),
            ..row_at(Ts::now())
        },
    )
    .await;
    assert_eq!(count(&db, "api_calls").await, 11);
}

#[tokio::test]
async fn a_version_3_table_gets_the_apis_projection_and_id_index_with_its_rows() {
    let (db, config) = migrated("migrate_add_projection", "").await;
    // Schema version 3: api_calls without the by_tenant projection and the id index (the API).
    for sql in [
        "INSERT INTO api_calls (id, time, tenant, bot) SELECT generateUUIDv7(), now64(9), 't1', 'b' FROM numbers(10)",
        "ALTER TABLE api_calls DROP PROJECTION by_tenant",
        "ALTER TABLE api_calls DROP INDEX idx_id",
    ] {
        db.client.query(sql).execute().await.unwrap();
    }
    let steps = migrator(&db, &config).run(false).await.unwrap();
    let mut descriptions: Vec<_> = steps.iter().map(|s| s.description.as_str()).collect();
    descriptions.sort_unstable();
    assert_eq!(
        descriptions,
        [
            "add index api_calls.idx_id",
            "add projection api_calls.by_tenant",
            "build index api_calls.idx_id for existing rows",
            "build projection api_calls.by_tenant for existing rows",
        ]
    );
    let projections: Vec<String> = db
        .client
        .query("SELECT name FROM system.projections WHERE database = currentDatabase() AND table = 'api_calls' ORDER BY name")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(projections, ["by_tenant", "by_time"]);
    assert_eq!(count_where(&db, "api_calls", "tenant = 't1'").await, 10);
    assert!(migrator(&db, &config).run(false).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_version_4_table_gets_the_time_ordered_projection_built_for_its_rows() {
    let (db, config) = migrated("migrate_add_time_projection", "").await;
    // Schema version 4: every log kind without the by_time projection.
    db.client
        .query("INSERT INTO api_calls (id, time, bot) SELECT generateUUIDv7(), now64(9) - toIntervalSecond(number), 'b' FROM numbers(10)")
        .execute()
        .await
        .unwrap();
    for kind in schema::KINDS {
        db.client
            .query(&format!(
                "ALTER TABLE `{}` DROP PROJECTION by_time",
                kind.name
            ))
            .execute()
            .await
            .unwrap();
    }
    let steps = migrator(&db, &config).run(false).await.unwrap();
    let descriptions: BTreeSet<_> = steps.iter().map(|s| s.description.clone()).collect();
    let want: BTreeSet<_> = schema::KINDS
        .iter()
        .flat_map(|kind| {
            [
                format!("add projection {}.by_time", kind.name),
                format!("build projection {}.by_time for existing rows", kind.name),
            ]
        })
        .collect();
    assert_eq!(descriptions, want);
    // Building the projection is a background mutation: wait for it, then a query that must
    // use the projection finds the existing rows.
    wait_for_mutations(&db, "api_calls").await;
    let newest: Vec<String> = db
        .client
        .query(
            "SELECT toString(id) FROM api_calls ORDER BY time DESC LIMIT 3 \
             SETTINGS force_optimize_projection_name = 'by_time'",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(newest.len(), 3);
    assert_eq!(count(&db, "api_calls").await, 10);
    assert!(migrator(&db, &config).run(false).await.unwrap().is_empty());
}

/// Waits until the background mutations of `table` (index and projection builds) are done.
async fn wait_for_mutations(db: &TestDb, table: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending: u64 = db
            .client
            .query("SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = {t:String} AND NOT is_done")
            .param("t", table)
            .fetch_one()
            .await
            .unwrap();
        if pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mutations of {table} not done in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, clickhouse::Row, Deserialize, PartialEq)]
struct IndexRow {
    table: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

async fn token_indexes(db: &TestDb) -> Vec<IndexRow> {
    db.client
        .query(
            "SELECT table, name, type FROM system.data_skipping_indices \
             WHERE database = currentDatabase() AND type IN ('text', 'tokenbf_v1') ORDER BY table, name",
        )
        .fetch_all()
        .await
        .unwrap()
}

/// The granules `index` leaves to read for `sql`, from `EXPLAIN indexes = 1` (`None` when it
/// does not take part).
async fn granules_left_by(db: &TestDb, index: &str, sql: &str) -> Option<u64> {
    let lines: Vec<String> = db
        .client
        .query(&format!("EXPLAIN indexes = 1 {sql}"))
        .with_setting("use_query_condition_cache", "0")
        .fetch_all()
        .await
        .unwrap();
    let mut in_stage = false;
    for line in lines.iter().map(|l| l.trim()) {
        if let Some(name) = line.strip_prefix("Name: ") {
            in_stage = name == index;
        } else if let Some(granules) = line.strip_prefix("Granules: ")
            && in_stage
        {
            return granules.split('/').next()?.parse().ok();
        }
    }
    None
}

/// The engine here is ClickHouse 26.9: every searchable column gets an exact `text` index in
/// place of its token bloom filter, and `hasToken` is answered from it.
#[tokio::test]
async fn searchable_columns_get_text_indexes_where_the_engine_has_them() {
    let (db, _) = migrated("migrate_text_index", "").await;
    let indexes = token_indexes(&db).await;
    let of = |table: &str| -> Vec<(&str, &str)> {
        indexes
            .iter()
            .filter(|i| i.table == table)
            .map(|i| (i.name.as_str(), i.kind.as_str()))
            .collect()
    };
    assert_eq!(
        of("api_calls"),
        [
            ("text_error_message", "text"),
            ("text_request_body", "text"),
            ("text_response_body", "text"),
            ("text_url", "text"),
        ]
    );
    assert_eq!(of("errors"), [("text_message", "text")]);
    // Not a searchable column: otel_logs.Body keeps its token bloom filter.
    assert_eq!(of("otel_logs"), [("idx_body", "tokenbf_v1")]);
    for kind in schema::KINDS {
        let searchable = kind
            .all_columns()
            .filter(|c| c.role == schema::Role::Search)
            .count();
        assert_eq!(of(kind.name).len(), searchable, "{}", kind.name);
        assert!(
            of(kind.name).iter().all(|(_, t)| *t == "text"),
            "{}",
            kind.name
        );
    }
    // The index leaves the granule with the word, and none for a word no row has.
    insert_bodies(
        &db,
        &["nothing here", "an upstream timeout", "still nothing"],
    )
    .await;
    assert_eq!(
        count_where(&db, "api_calls", "hasToken(response_body, 'timeout')").await,
        1
    );
    assert_eq!(word_granules(&db, "timeout").await, Some(1));
    assert_eq!(word_granules(&db, "absent").await, Some(0));
}

/// One `api_calls` row per response body, each in a part of its own.
async fn insert_bodies(db: &TestDb, bodies: &[&str]) {
    for body in bodies {
        let row = schema::ApiCall {
            response_body: (*body).into(),
            ..row_at(Ts::now())
        };
        insert(db, row).await;
    }
}

/// Granules of `api_calls` the `text` index of `response_body` leaves for a word.
async fn word_granules(db: &TestDb, word: &str) -> Option<u64> {
    // Rows, not `count()`, which the engine may answer from the index alone.
    let sql = format!("SELECT id FROM api_calls WHERE hasToken(response_body, '{word}')");
    granules_left_by(db, "text_response_body", &sql).await
}

/// Schema version 5 had token bloom filters on the searchable columns: an upgrade on an engine
/// with `text` indexes adds them, builds them for the rows already stored, and drops the bloom
/// filters they replace.
#[tokio::test]
async fn a_version_5_database_gets_text_indexes_built_for_its_rows() {
    let (db, config) = migrated("migrate_v5_text_index", "").await;
    // Back to schema version 5: the bloom filters instead of the text indexes.
    let v5 = logbook::schema::ddl::Ddl::new(&db.database);
    let mut want = BTreeSet::new();
    for table in schema::tables() {
        let replaced = logbook::schema::ddl::replaced_indexes(table, true);
        for index in logbook::schema::ddl::indexes(table, false)
            .into_iter()
            .filter(|i| replaced.contains(&i.name))
        {
            let text = format!("text_{}", index.expr);
            for sql in [
                format!("ALTER TABLE `{}` DROP INDEX {text}", table.name),
                v5.add_index(table, &index),
            ] {
                db.client.query(&sql).execute().await.unwrap();
            }
            want.extend([
                format!("add index {}.{text}", table.name),
                format!("build index {}.{text} for existing rows", table.name),
                format!(
                    "drop index {}.{}, replaced by a text index",
                    table.name, index.name
                ),
            ]);
        }
    }
    assert!(
        token_indexes(&db)
            .await
            .iter()
            .all(|i| i.kind == "tokenbf_v1"),
        "the version 5 schema"
    );
    // Rows stored at version 5, in parts written without the text index.
    insert_bodies(&db, &["v5word in an old part", "another old part"]).await;
    let steps = migrator(&db, &config).run(false).await.unwrap();
    let described: BTreeSet<_> = steps.iter().map(|s| s.description.clone()).collect();
    assert_eq!(described, want);
    wait_for_mutations(&db, "api_calls").await;
    assert!(
        token_indexes(&db)
            .await
            .iter()
            .all(|i| i.kind == "text" || i.name == "idx_body"),
        "{:?}",
        token_indexes(&db).await
    );
    // The old parts were indexed: a word no row has leaves no granule to read (a part
    // without the index would have to be read).
    assert_eq!(word_granules(&db, "absent").await, Some(0));
    assert_eq!(word_granules(&db, "v5word").await, Some(1));
    assert_eq!(
        count_where(&db, "api_calls", "hasToken(response_body, 'v5word')").await,
        1
    );
    assert!(migrator(&db, &config).run(false).await.unwrap().is_empty());
    assert_eq!(
        migrator(&db, &config).recorded_version().await.unwrap(),
        Some(SCHEMA_VERSION)
    );
}

/// A server upgraded to ClickHouse 26.2+ after the last migration: the schema version is
/// current, so readiness does not ask for `logbook migrate`, but `serve` says which `text`
/// indexes the tables lack, and the migration builds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_names_the_text_indexes_a_newer_server_could_hold() {
    let (db, config) = migrated("migrate_text_index_advice", "").await;
    assert!(missing_text_indexes(&db, &config).await.is_empty());
    // `api_calls.response_body` as a server without text indexes had it: a token bloom filter.
    let before = logbook::schema::ddl::Ddl::new(&db.database);
    let bloom = logbook::schema::ddl::indexes(schema::ApiCall::TABLE, false)
        .into_iter()
        .find(|i| i.expr == "response_body")
        .unwrap();
    for sql in [
        "ALTER TABLE `api_calls` DROP INDEX text_response_body".to_owned(),
        before.add_index(schema::ApiCall::TABLE, &bloom),
    ] {
        db.client.query(&sql).execute().await.unwrap();
    }
    assert_eq!(
        missing_text_indexes(&db, &config).await,
        ["api_calls.text_response_body"]
    );

    let logbook = crate::logbook::Logbook::start_unmigrated(&db, "", &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !logbook
        .stderr()
        .contains("ClickHouse can now hold `text` indexes")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no advice in serve's log: {}",
            logbook.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logbook.stderr().contains("api_calls.text_response_body"));
    drop(logbook);

    let steps = migrator(&db, &config).run(false).await.unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.description == "add index api_calls.text_response_body"),
        "{steps:?}"
    );
    assert!(missing_text_indexes(&db, &config).await.is_empty());
}

async fn missing_text_indexes(db: &TestDb, config: &Config) -> Vec<String> {
    migrator(db, config).missing_text_indexes().await.unwrap()
}

/// Marks of the newest active part of `table` and of its `projection` there.
async fn marks(db: &TestDb, table: &str, projection: &str) -> (u64, u64) {
    let part: u64 = db
        .client
        .query("SELECT marks FROM system.parts WHERE database = currentDatabase() AND table = {t:String} AND active ORDER BY modification_time DESC LIMIT 1")
        .param("t", table)
        .fetch_one()
        .await
        .unwrap();
    let projected: u64 = db
        .client
        .query("SELECT marks FROM system.projection_parts WHERE database = currentDatabase() AND table = {t:String} AND name = {p:String} AND active ORDER BY modification_time DESC LIMIT 1")
        .param("t", table)
        .param("p", projection)
        .fetch_one()
        .await
        .unwrap();
    (part, projected)
}

/// Times for `numbers(10000)`: ten seconds from today's midnight (UTC), one daily partition.
const ONE_DAY_10K: &str = "toStartOfDay(now64(9)) + toIntervalMillisecond(number)";

#[tokio::test]
async fn tables_get_granules_of_2048_rows_and_a_version_6_table_keeps_its_own() {
    let (db, config) = migrated("migrate_v7_granularity", "").await;
    let fresh = schema::KINDS
        .iter()
        .find(|kind| kind.name != "api_calls")
        .unwrap()
        .name;
    // 10,000 rows make at least 5 granules of 2,048 rows, in the part and its projections (at
    // most 3 of 8,192, with the final mark). All in today's partition, so in one part: rows
    // reaching back past midnight made two (failed a CI run at 01:10 UTC).
    db.client
        .query(&format!("INSERT INTO `{fresh}` (id, time) SELECT generateUUIDv7(), {ONE_DAY_10K} FROM numbers(10000)"))
        .execute()
        .await
        .unwrap();
    assert!(
        engine_full(&db, fresh)
            .await
            .contains("index_granularity = 2048")
    );
    for projection in ["by_time", "by_tenant"] {
        let (part, projected) = marks(&db, fresh, projection).await;
        assert!(
            part >= 5 && projected >= 5,
            "{projection}: {part}, {projected}"
        );
    }

    // Back to schema version 6 for api_calls: the same table with granules of 8,192 rows,
    // which ClickHouse cannot change in place.
    let create: String = db
        .client
        .query("SHOW CREATE TABLE api_calls")
        .fetch_one()
        .await
        .unwrap();
    assert!(create.contains("index_granularity = 2048"), "{create}");
    for sql in [
        "DROP TABLE api_calls SYNC".to_owned(),
        create.replace("index_granularity = 2048", "index_granularity = 8192"),
        format!(
            "INSERT INTO api_calls (id, time, bot) SELECT generateUUIDv7(), {ONE_DAY_10K}, 'b' FROM numbers(10000)"
        ),
    ] {
        db.client.query(&sql).execute().await.unwrap();
    }
    // Migrating leaves it as it is, rows and all, and has nothing else to do.
    assert_eq!(migrator(&db, &config).run(false).await.unwrap(), vec![]);
    assert!(
        engine_full(&db, "api_calls")
            .await
            .contains("index_granularity = 8192")
    );
    let (part, projected) = marks(&db, "api_calls", "by_time").await;
    assert!(part <= 3 && projected <= 3, "{part}, {projected}");
    assert_eq!(count(&db, "api_calls").await, 10000);
}

#[tokio::test]
async fn concurrent_migrations_from_several_replicas_converge() {
    let db = test_db("migrate_concurrent").await;
    let config = config_for(&db, "");
    let runs = (0..3).map(|_| {
        let migrator = migrator(&db, &config);
        tokio::spawn(async move { migrator.run(false).await.map(|steps| steps.len()) })
    });
    for run in runs {
        run.await.unwrap().unwrap();
    }
    assert_eq!(migrator(&db, &config).plan().await.unwrap(), vec![]);
}

#[tokio::test]
async fn database_migrated_by_a_newer_logbook_is_refused() {
    let (db, config) = migrated("migrate_newer", "").await;
    db.client
        .query("INSERT INTO logbook_migrations (version, step) VALUES (999, 'future')")
        .execute()
        .await
        .unwrap();
    let err = migrator(&db, &config).run(false).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
}

fn row_at<T: LogKind + Default + HasCommon>(time: Ts) -> T {
    let mut row = T::default();
    row.set_common(RowId(uuid::Uuid::now_v7()), time);
    row
}

async fn insert<T: LogKind + clickhouse::RowOwned + clickhouse::RowWrite>(db: &TestDb, row: T) {
    let mut insert = db.client.insert::<T>(T::TABLE.name).await.unwrap();
    insert.write(&row).await.unwrap();
    insert.end().await.unwrap();
}

/// Sets the columns every kind shares; implemented below for each kind.
pub trait HasCommon {
    fn set_common(&mut self, id: RowId, time: Ts);
}

macro_rules! each_kind {
    ($($kind:ident),* $(,)?) => {
        $(impl HasCommon for schema::$kind {
            fn set_common(&mut self, id: RowId, time: Ts) {
                self.id = id;
                self.time = time;
                self.tenant = "t1".into();
                self.trace_id = "0af7651916cd43dd8448eb211c80319c".into();
            }
        })*

        /// One row of every kind through the crate (its schema validation compares each
        /// struct with `DESCRIBE TABLE`); returns how many kinds were inserted.
        async fn insert_one_of_each(db: &TestDb) -> usize {
            let mut kinds = 0;
            $(
                insert(db, row_at::<schema::$kind>(Ts::now())).await;
                kinds += 1;
            )*
            kinds
        }
    };
}

logbook::for_each_kind!(each_kind);

#[tokio::test]
async fn every_typed_table_takes_inserts_through_the_crate() {
    let (db, _) = migrated("insert_every_kind", "").await;
    let kinds = insert_one_of_each(&db).await;
    assert_eq!(
        kinds,
        schema::KINDS.len(),
        "each_kind! must list every kind"
    );
    for kind in schema::KINDS {
        assert_eq!(count(&db, kind.name).await, 1, "{}", kind.name);
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ErrorRow {
    kind: String,
    source: String,
    code: String,
    message: String,
    severity: String,
    tenant: String,
}

#[tokio::test]
async fn error_outcomes_of_every_kind_reach_the_errors_table() {
    let (db, _) = migrated("errors_view", "").await;
    let call = schema::ApiCall {
        bot: "billing-bot".into(),
        status_code: 502,
        outcome: "error".into(),
        error_message: "bad gateway".into(),
        ..row_at(Ts::now())
    };
    let fine = schema::ApiCall {
        bot: "billing-bot".into(),
        status_code: 200,
        outcome: "success".into(),
        ..row_at(Ts::now())
    };
    insert(&db, call.clone()).await;
    insert(&db, fine).await;
    insert(
        &db,
        schema::MailMessage {
            mailbox: "support@".into(),
            direction: "outbound".into(),
            status: "error".into(),
            attempt: 3,
            error_message: "550 mailbox unavailable".into(),
            ..row_at(Ts::now())
        },
    )
    .await;
    insert(
        &db,
        schema::MonitoringEvent {
            severity: "warning".into(),
            severity_number: 13,
            message: "4 emails failed".into(),
            ..row_at(Ts::now())
        },
    )
    .await;
    let rows: Vec<ErrorRow> = db
        .client
        .query("SELECT kind, source, code, message, severity, tenant FROM errors ORDER BY kind")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (
            rows[0].kind.as_str(),
            rows[0].source.as_str(),
            rows[0].code.as_str()
        ),
        ("api_calls", "billing-bot", "502")
    );
    assert_eq!(rows[0].message, "bad gateway");
    assert_eq!(rows[0].tenant, "t1");
    assert_eq!(
        (
            rows[1].kind.as_str(),
            rows[1].code.as_str(),
            rows[1].severity.as_str()
        ),
        ("mail_messages", "outbound attempt 3", "error")
    );
    let related: String = db
        .client
        .query("SELECT toString(related_id) FROM errors WHERE kind = 'api_calls'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(related, call.id.0.to_string());
}

#[tokio::test]
async fn otel_tables_accept_the_collector_exporters_inserts() {
    let (db, _) = migrated("otel_inserts", "").await;
    // Column lists as the OpenTelemetry Collector's ClickHouse exporter writes them.
    db.client
        .query(
            "INSERT INTO otel_logs (Timestamp, TraceId, SpanId, TraceFlags, SeverityText, \
             SeverityNumber, ServiceName, Body, ResourceSchemaUrl, ResourceAttributes, \
             ScopeSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes, LogAttributes, EventName) \
             VALUES (now64(9), 'abc', 'def', 1, 'INFO', 9, 'mail', 'sent', '', \
             map('service.name', 'mail'), '', 'scope', '1.0', map(), map('k', 'v'), 'logbook.mail')",
        )
        .execute()
        .await
        .unwrap();
    db.client
        .query(
            "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, \
             SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, \
             SpanAttributes, Duration, StatusCode, StatusMessage, `Events.Timestamp`, \
             `Events.Name`, `Events.Attributes`, `Links.TraceId`, `Links.SpanId`, \
             `Links.TraceState`, `Links.Attributes`) \
             VALUES (now64(9), 'trace-1', 'span-1', '', '', 'sync', 'Internal', 'integrator', \
             map(), 'scope', '1', map('http.request.method', 'GET'), 1500000, 'Ok', '', \
             [now64(9)], ['exception'], [map('exception.message', 'boom')], [], [], [], [])",
        )
        .execute()
        .await
        .unwrap();
    assert_eq!(count(&db, "otel_logs").await, 1);
    let time_second: i64 = db
        .client
        .query("SELECT toUnixTimestamp(TimestampTime) - toUnixTimestamp(Timestamp) FROM otel_logs")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(time_second, 0, "TimestampTime defaults from Timestamp");
    let lookups: u64 = db
        .client
        .query("SELECT count() FROM otel_traces_trace_id_ts WHERE TraceId = 'trace-1'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        lookups, 1,
        "the materialized view fills the trace-id lookup"
    );
}

/// For every table with a TTL: a row that expires seconds after insertion is gone after a
/// merge, while a fresh row stays. Old rows sit in their own (older) partition, as they would
/// in production, so `ttl_only_drop_parts` can drop them whole.
#[tokio::test]
async fn every_ttl_table_drops_expired_rows_and_keeps_fresh_ones() {
    let (db, config) = migrated(
        "ttl_every_table",
        "[retention]\notel_logs_low_severity_ttl = \"2d\"\n",
    )
    .await;
    // The tables of records (the notifier's bookkeeping tables have their own tests).
    let record_tables = || {
        schema::tables()
            .filter(|t| t.event_name.is_some() || t.name.starts_with("otel_") || t.name == "errors")
    };
    let ttl_tables: Vec<_> = record_tables()
        .filter_map(|t| config.retention.ttl_of(t).map(|ttl| (t, ttl.as_secs())))
        .collect();
    assert_eq!(
        ttl_tables.len(),
        record_tables().count() - 1,
        "all but server_logs"
    );
    for (table, ttl) in &ttl_tables {
        let (insert_columns, values) = match table.name {
            "otel_logs" => ("Timestamp, SeverityNumber", "9"),
            "otel_traces" => ("Timestamp, TraceId", "'t'"),
            "otel_traces_trace_id_ts" => ("Start, TraceId", "'t'"),
            "errors" => ("time, kind", "'k'"),
            _ => ("time, id", "generateUUIDv7()"),
        };
        for (label, age) in [("expiring", ttl - 4), ("fresh", 3600)] {
            let sql = format!(
                "INSERT INTO `{}` ({insert_columns}) SELECT now() - {age}, {values}",
                table.name
            );
            db.client
                .query(&sql)
                .execute()
                .await
                .unwrap_or_else(|e| panic!("{label} {sql}: {e}"));
        }
    }
    // The low-severity TTL deletes DEBUG rows only.
    db.client
        .query("INSERT INTO otel_logs (Timestamp, SeverityNumber) VALUES (now() - 172796, 5), (now() - 3600, 5)")
        .execute()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (table, _) in &ttl_tables {
        let sql = format!("OPTIMIZE TABLE `{}` FINAL", table.name);
        db.client.query(&sql).execute().await.unwrap();
    }
    for (table, _) in &ttl_tables {
        // Kinds whose every row is an error also feed `errors`: count only the direct rows.
        let left = match table.name {
            "errors" => {
                count(&db, "errors").await - count_where(&db, "errors", "kind != 'k'").await
            }
            name => count(&db, name).await,
        };
        let want = if table.name == "otel_logs" { 2 } else { 1 };
        assert_eq!(left, want, "{} keeps only its fresh rows", table.name);
    }
    let debug_left: u64 = db
        .client
        .query("SELECT count() FROM otel_logs WHERE SeverityNumber = 5")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        debug_left, 1,
        "the old DEBUG row went, the recent one stayed"
    );
}

#[tokio::test]
async fn size_cap_drops_the_oldest_server_log_partitions_and_keeps_the_newest() {
    let (db, config) = migrated("size_cap", "").await;
    for days_ago in [3, 2, 1, 0] {
        let sql = format!(
            "INSERT INTO server_logs (id, time, category, level, message) \
             SELECT generateUUIDv7(), now64(9) - toIntervalDay({days_ago}), 'email', 'info', \
             randomPrintableASCII(200) FROM numbers(2000)"
        );
        db.client.query(&sql).execute().await.unwrap();
    }
    let limit = config.clickhouse.request_timeout;
    let roomy = size_cap::enforce(
        &db.client,
        &db.database,
        "server_logs",
        bytesize::ByteSize::gib(1),
        limit,
    )
    .await
    .unwrap();
    assert!(roomy.dropped.is_empty());
    let total = roomy.remaining_bytes;
    // Room for a bit more than two days: the two oldest go.
    let cap = bytesize::ByteSize::b(total / 2 + total / 8);
    let report = size_cap::enforce(&db.client, &db.database, "server_logs", cap, limit)
        .await
        .unwrap();
    assert_eq!(report.dropped.len(), 2, "{report:?}");
    assert!(report.remaining_bytes <= cap.as_u64());
    let oldest_left: i64 = db
        .client
        .query("SELECT dateDiff('day', min(toDate(time)), today()) FROM server_logs")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(oldest_left, 1);
    assert_eq!(count(&db, "server_logs").await, 4000);
    // Even a cap of one byte keeps the newest day.
    let report = size_cap::enforce(
        &db.client,
        &db.database,
        "server_logs",
        bytesize::ByteSize::b(1),
        limit,
    )
    .await
    .unwrap();
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(count(&db, "server_logs").await, 2000);
}
