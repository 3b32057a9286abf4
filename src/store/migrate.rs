//! `logbook migrate`: brings a database to the schema of the definitions, without data loss.
//!
//! The plan is computed from what the server reports (`system.tables`, `system.columns`,
//! `system.data_skipping_indices`) against what the definitions want: missing tables and
//! views are created, missing columns and indexes added (and built for the rows already
//! there), TTLs and TTL-related settings changed when the configured retention differs.
//! Columns are never dropped or retyped; the only index dropped is a token bloom filter that a
//! `text` index replaced. A table keeps the granule size it was created with
//! (`index_granularity`, which ClickHouse cannot change). What the schema wants depends on the
//! server: searchable columns get `text` indexes on ClickHouse 26.2 and later, where they are
//! generally available ([`text_index_usable`]), token bloom filters before.
//! Every statement is idempotent, so several replicas may migrate at once; each applied step
//! is recorded in `logbook_migrations` with the schema version, and a database recorded at a
//! newer version than this binary's is refused.
//!
//! With a cluster ([`Migrator::on_cluster`]) the same plan is made from the server the client
//! talks to and applied `ON CLUSTER` (see `schema::ddl`): missing local tables, Distributed
//! tables and views are created, columns added to both.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{StoreError, bounded};
use crate::config::Config;
use crate::schema::ddl::{self, Ddl, Ttl};
use crate::schema::{self, TableDef};

/// Bump when the definitions change; `schema_fingerprint_is_recorded` fails until you do.
pub const SCHEMA_VERSION: u32 = 7;

const MIGRATIONS_TABLE: &str = "logbook_migrations";

/// One statement of a plan, with a sentence saying what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub table: String,
    pub description: String,
    pub sql: String,
}

pub struct Migrator {
    client: clickhouse::Client,
    ddl: Ddl,
    config: Config,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TableRow {
    name: String,
    engine_full: String,
    as_select: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct NameRow {
    table: String,
    name: String,
}

/// What the server has now, per table.
#[derive(Debug, Default)]
struct Current {
    tables: BTreeMap<String, String>,
    /// A view's query, as the server formats it.
    queries: BTreeMap<String, String>,
    columns: BTreeMap<String, BTreeSet<String>>,
    indexes: BTreeMap<String, BTreeSet<String>>,
    projections: BTreeMap<String, BTreeSet<String>>,
    /// Whether the server has `text` indexes.
    text_index: bool,
}

/// Whether a server of `version` (`SELECT version()`, e.g. `26.9.2.1`) with the setting
/// `enable_full_text_index` at `setting` (`None`: no such setting) takes `text` indexes
/// without experimental settings: from 26.2, where they are generally available, unless the
/// setting was turned off. Before, they were experimental or beta, with other formats and
/// syntax (25.8: `allow_experimental_full_text_index`), which logbook does not rely on.
pub fn text_index_usable(version: &str, setting: Option<&str>) -> bool {
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (26, 2) && setting.is_none_or(|value| value == "1")
}

impl Migrator {
    /// Migrates the database `config` names, on its `clickhouse.cluster` when it names one.
    /// `client` must not be bound to a database: the database may not exist yet.
    pub fn new(client: clickhouse::Client, config: &Config) -> Migrator {
        Migrator {
            client,
            ddl: Ddl::for_config(&config.clickhouse),
            config: config.clone(),
        }
    }

    /// Migrates every server of `cluster` (docs/scaling.md).
    pub fn on_cluster(client: clickhouse::Client, config: &Config, cluster: &str) -> Migrator {
        Migrator {
            ddl: Ddl::on_cluster(&config.clickhouse.database, cluster),
            ..Migrator::new(client, config)
        }
    }

    fn ttl(&self, table: &TableDef) -> Ttl {
        Ttl {
            keep: self.config.retention.ttl_of(table),
            keep_low_severity: self.config.retention.otel_logs_low_severity_ttl,
        }
    }

    async fn current(&self) -> Result<Current, StoreError> {
        let limit = self.config.clickhouse.request_timeout;
        let db = self.ddl.database();
        let tables = bounded(
            limit,
            self.client
                .query(
                    "SELECT name, engine_full, as_select FROM system.tables WHERE database = {db:String}",
                )
                .param("db", db)
                .fetch_all::<TableRow>(),
        )
        .await?;
        let mut current = Current {
            queries: tables
                .iter()
                .map(|t| (t.name.clone(), t.as_select.clone()))
                .collect(),
            tables: tables
                .into_iter()
                .map(|t| (t.name, t.engine_full))
                .collect(),
            text_index: self.text_index_usable().await?,
            ..Current::default()
        };
        for (source, target) in [
            ("system.columns", &mut current.columns),
            ("system.data_skipping_indices", &mut current.indexes),
            ("system.projections", &mut current.projections),
        ] {
            let sql = format!("SELECT table, name FROM {source} WHERE database = {{db:String}}");
            let rows = bounded(
                limit,
                self.client
                    .query(&sql)
                    .param("db", db)
                    .fetch_all::<NameRow>(),
            )
            .await?;
            for row in rows {
                target.entry(row.table).or_default().insert(row.name);
            }
        }
        Ok(current)
    }

    async fn text_index_usable(&self) -> Result<bool, StoreError> {
        let limit = self.config.clickhouse.request_timeout;
        let version = bounded(
            limit,
            self.client.query("SELECT version()").fetch_one::<String>(),
        )
        .await?;
        let setting = bounded(
            limit,
            self.client
                .query("SELECT value FROM system.settings WHERE name = 'enable_full_text_index'")
                .fetch_optional::<String>(),
        )
        .await?;
        Ok(text_index_usable(&version, setting.as_deref()))
    }

    /// The statements that would bring the database up to date, in order.
    pub async fn plan(&self) -> Result<Vec<Step>, StoreError> {
        let current = self.current().await?;
        let ddl = self.ddl.clone().with_text_index(current.text_index);
        let mut steps = Vec::new();
        let mut step = |table: &str, description: String, sql: String| {
            steps.push(Step {
                table: table.to_owned(),
                description,
                sql,
            })
        };
        if current.tables.is_empty() {
            step(
                "",
                format!("create database {}", ddl.database()),
                ddl.create_database(),
            );
        }
        if !current.tables.contains_key(MIGRATIONS_TABLE) {
            step(
                MIGRATIONS_TABLE,
                "create the migrations record".into(),
                self.create_migrations_table(),
            );
        }
        for table in schema::tables() {
            let ttl = self.ttl(table);
            let storage = ddl.storage_name(table.name);
            let engine_full = current.tables.get(&storage);
            if engine_full.is_none() {
                step(
                    table.name,
                    format!("create table {storage}"),
                    ddl.create_table(table, ttl),
                );
            }
            if let Some(sql) = ddl.create_distributed(table)
                && !current.tables.contains_key(table.name)
            {
                let description = format!("create distributed table {}", table.name);
                step(table.name, description, sql);
            }
            let Some(engine_full) = engine_full else {
                continue;
            };
            let columns = current.columns.get(&storage).cloned().unwrap_or_default();
            let mut previous = None;
            for column in table.all_columns() {
                // A Nested column shows up as its `Name.field` sub-columns.
                let nested = format!("{}.", column.name);
                let present =
                    columns.contains(column.name) || columns.iter().any(|c| c.starts_with(&nested));
                if !present {
                    for sql in ddl.add_column(table, column.name, previous) {
                        step(
                            table.name,
                            format!(
                                "add column {}.{} {}",
                                table.name,
                                column.name,
                                column.type_name()
                            ),
                            sql,
                        );
                    }
                }
                previous = Some(column.name);
            }
            let indexes = current.indexes.get(&storage).cloned().unwrap_or_default();
            for index in ddl::indexes(table, ddl.text_index()) {
                if !indexes.contains(&index.name) {
                    step(
                        table.name,
                        format!("add index {}.{}", table.name, index.name),
                        ddl.add_index(table, &index),
                    );
                    step(
                        table.name,
                        format!(
                            "build index {}.{} for existing rows",
                            table.name, index.name
                        ),
                        ddl.materialize_index(table, &index.name),
                    );
                }
            }
            for name in ddl::replaced_indexes(table, ddl.text_index()) {
                if indexes.contains(&name) {
                    step(
                        table.name,
                        format!("drop index {}.{name}, replaced by a text index", table.name),
                        ddl.drop_index(table, &name),
                    );
                }
            }
            let projections = current
                .projections
                .get(&storage)
                .cloned()
                .unwrap_or_default();
            for (name, select) in ddl::projections(table) {
                if !projections.contains(name) {
                    step(
                        table.name,
                        format!("add projection {}.{name}", table.name),
                        ddl.add_projection(table, name, select),
                    );
                    step(
                        table.name,
                        format!("build projection {}.{name} for existing rows", table.name),
                        ddl.materialize_projection(table, name),
                    );
                }
            }
            let want = ddl::ttl_expression(table, ttl);
            let have = ttl_of_engine(engine_full);
            if normalize(want.as_deref()) != normalize(have.as_deref()) {
                step(
                    table.name,
                    format!(
                        "change TTL of {} from {} to {}",
                        table.name,
                        have.as_deref().unwrap_or("none"),
                        want.as_deref().unwrap_or("none")
                    ),
                    ddl.modify_ttl(table, ttl),
                );
            }
            let modify = ddl.modify_settings(table, ttl);
            let wanted = modify.rsplit("MODIFY SETTING ").next().unwrap_or_default();
            if wanted
                .split(", ")
                .any(|setting| !engine_full.contains(setting))
            {
                step(
                    table.name,
                    format!("set {wanted} on {}", table.name),
                    modify,
                );
            }
        }
        for (name, sql) in ddl.views() {
            let Some(query) = current.queries.get(&name) else {
                step(&name, format!("create materialized view {name}"), sql);
                continue;
            };
            // A view's condition changed (a kind's failure value, say): replace the view.
            let (want, have) = (condition(&sql), condition(query));
            if want != have {
                step(
                    &name,
                    format!(
                        "replace materialized view {name}: WHERE {} instead of {}",
                        want.unwrap_or("nothing"),
                        have.unwrap_or("nothing")
                    ),
                    ddl.drop_view(&name),
                );
                step(&name, format!("create materialized view {name}"), sql);
            }
        }
        Ok(steps)
    }

    fn create_migrations_table(&self) -> String {
        let on = match self.ddl.cluster() {
            Some(cluster) => format!(" ON CLUSTER `{cluster}`"),
            None => String::new(),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS `{}`.`{MIGRATIONS_TABLE}`{on} (\
             version UInt32, step String, statement String, \
             applied_at DateTime64(3, 'UTC') DEFAULT now64(3), \
             applied_by LowCardinality(String), logbook_version LowCardinality(String)\
             ) ENGINE = {} ORDER BY (version, applied_at)",
            self.ddl.database(),
            self.ddl.bookkeeping_engine()
        )
    }

    /// The newest schema version recorded, if the database has been migrated before.
    pub async fn recorded_version(&self) -> Result<Option<u32>, StoreError> {
        let limit = self.config.clickhouse.request_timeout;
        let exists = bounded(
            limit,
            self.client
                .query("SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}")
                .param("db", self.ddl.database())
                .param("t", MIGRATIONS_TABLE)
                .fetch_one::<u64>(),
        )
        .await?;
        if exists == 0 {
            return Ok(None);
        }
        let sql = format!(
            "SELECT max(version) FROM `{}`.`{MIGRATIONS_TABLE}`",
            self.ddl.database()
        );
        let version = bounded(limit, self.client.query(&sql).fetch_one::<u32>()).await?;
        Ok((version > 0).then_some(version))
    }

    /// The `text` indexes (`table.index`) the server can hold and the tables lack: the server was
    /// upgraded to ClickHouse 26.2 or later after the last `logbook migrate`, which the schema
    /// version does not record (searches then read the token bloom filters, more granules).
    pub async fn missing_text_indexes(&self) -> Result<Vec<String>, StoreError> {
        let current = self.current().await?;
        if !current.text_index {
            return Ok(Vec::new());
        }
        let mut missing = Vec::new();
        for table in schema::tables() {
            let storage = self.ddl.storage_name(table.name);
            let Some(have) = current.indexes.get(&storage) else {
                continue;
            };
            missing.extend(
                ddl::indexes(table, true)
                    .into_iter()
                    .filter(|index| index.kind == ddl::TEXT_INDEX && !have.contains(&index.name))
                    .map(|index| format!("{}.{}", table.name, index.name)),
            );
        }
        Ok(missing)
    }

    /// Plans and applies; returns the steps applied. With `materialize_ttl`, tables whose TTL
    /// changed are rewritten now rather than on their next merges.
    pub async fn run(&self, materialize_ttl: bool) -> Result<Vec<Step>, StoreError> {
        if let Some(found) = self.recorded_version().await?
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let limit = self.config.clickhouse.request_timeout;
        let mut steps = self.plan().await?;
        if materialize_ttl {
            let changed: BTreeSet<_> = steps
                .iter()
                .filter(|s| s.description.starts_with("change TTL"))
                .map(|s| s.table.clone())
                .collect();
            for table in changed.iter().filter_map(|t| schema::table(t)) {
                steps.push(Step {
                    table: table.name.into(),
                    description: format!("apply the new TTL to existing parts of {}", table.name),
                    sql: self.ddl.materialize_ttl(table),
                });
            }
        }
        for step in &steps {
            tracing::info!(step = %step.description, "migrating");
            bounded(limit, self.client.query(&step.sql).execute()).await?;
        }
        if !steps.is_empty() || self.recorded_version().await? != Some(SCHEMA_VERSION) {
            self.record(&steps).await?;
        }
        Ok(steps)
    }

    async fn record(&self, steps: &[Step]) -> Result<(), StoreError> {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let marker = [Step {
            table: String::new(),
            description: format!("schema version {SCHEMA_VERSION}"),
            sql: String::new(),
        }];
        let steps = if steps.is_empty() { &marker[..] } else { steps };
        for step in steps {
            let sql = format!(
                "INSERT INTO `{}`.`{MIGRATIONS_TABLE}` (version, step, statement, applied_by, logbook_version) \
                 VALUES ({{v:UInt32}}, {{step:String}}, {{sql:String}}, {{host:String}}, {{lv:String}})",
                self.ddl.database()
            );
            let query = self
                .client
                .query(&sql)
                .param("v", SCHEMA_VERSION)
                .param("step", &step.description)
                .param("sql", &step.sql)
                .param("host", &host)
                .param("lv", env!("CARGO_PKG_VERSION"));
            bounded(self.config.clickhouse.request_timeout, query.execute()).await?;
        }
        Ok(())
    }
}

/// The `WHERE` condition ending a view's query, if it has one.
fn condition(query: &str) -> Option<&str> {
    query
        .rsplit_once(" WHERE ")
        .map(|(_, condition)| condition.trim())
}

/// The TTL clause of a table's `engine_full`, as ClickHouse prints it.
fn ttl_of_engine(engine_full: &str) -> Option<String> {
    let start = engine_full.find(" TTL ")? + " TTL ".len();
    let rest = &engine_full[start..];
    let end = rest.find(" SETTINGS ").unwrap_or(rest.len());
    Some(rest[..end].trim().to_owned())
}

fn normalize(ttl: Option<&str>) -> String {
    ttl.unwrap_or_default().split_whitespace().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_read_from_engine_full() {
        let engine = "MergeTree PARTITION BY toDate(time) ORDER BY (bot, time) \
                      TTL toDateTime(time) + toIntervalDay(7) SETTINGS index_granularity = 8192";
        assert_eq!(
            ttl_of_engine(engine).as_deref(),
            Some("toDateTime(time) + toIntervalDay(7)")
        );
        assert_eq!(ttl_of_engine("MergeTree ORDER BY x"), None);
    }

    /// The DDL of every table, hashed: changing a definition changes it, and this test then
    /// asks for a new SCHEMA_VERSION so deployed databases can tell schemas apart.
    #[test]
    fn schema_fingerprint_is_recorded() {
        let ddl = Ddl::new("db");
        // Both forms: token bloom filters, and `text` indexes where the server has them.
        let mut text: String = [false, true]
            .into_iter()
            .flat_map(|text_index| {
                let ddl = ddl.clone().with_text_index(text_index);
                schema::tables().map(move |table| ddl.create_table(table, Ttl::default()))
            })
            .collect();
        text.extend(ddl.views().into_iter().map(|(_, sql)| sql));
        // FNV-1a: stable across Rust releases, unlike std's DefaultHasher.
        let fingerprint = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let recorded: &[(u32, u64)] = &[
            (1, FINGERPRINT_V1),
            (2, FINGERPRINT_V2),
            (3, FINGERPRINT_V3),
            (4, FINGERPRINT_V4),
            (5, FINGERPRINT_V5),
            (6, FINGERPRINT_V6),
            (7, FINGERPRINT_V7),
        ];
        assert_eq!(
            recorded.last(),
            Some(&(SCHEMA_VERSION, fingerprint)),
            "the schema changed: bump SCHEMA_VERSION and record fingerprint {fingerprint}"
        );
    }

    const FINGERPRINT_V1: u64 = 5238660490372325930;
    /// V2: integration_states added.
    const FINGERPRINT_V2: u64 = 16982639726602007365;
    /// V3: the `settings` table and the notifier's tables.
    const FINGERPRINT_V3: u64 = 12295467655914754803;
    /// V4: api_tokens, access_logs.status_code, the by_tenant projections and id indexes
    /// (the API); one failure value (`error`) in every kind's errors view, summary and
    /// severity columns, renamed columns (the sender contract).
    const FINGERPRINT_V4: u64 = 4218452177836187392;
    /// V5: the by_time projections (newest-first pages read in time order).
    const FINGERPRINT_V5: u64 = 5895499954712133382;
    /// V6: `text` indexes instead of token bloom filters on the searchable columns, where the
    /// server has them (ClickHouse 26.2 and later); the hash covers both forms from here on.
    const FINGERPRINT_V6: u64 = 3450025740838826396;
    /// V7: granules of 2,048 rows in the tables logbook inserts into (new tables only).
    const FINGERPRINT_V7: u64 = 12995920634308717704;

    #[test]
    fn text_indexes_from_clickhouse_26_2_unless_turned_off() {
        assert!(text_index_usable("26.9.2.1", Some("1")));
        assert!(text_index_usable("26.2.1.1", None));
        assert!(text_index_usable("27.1.1.1", None));
        assert!(!text_index_usable("26.9.2.1", Some("0")));
        // Experimental (25.8 LTS) or beta (25.12, 26.1): token bloom filters.
        assert!(!text_index_usable("25.8.12.1", None));
        assert!(!text_index_usable("26.1.3.4", Some("0")));
        assert!(!text_index_usable("26.1.3.4", Some("1")));
        assert!(!text_index_usable("unknown", None));
    }

    #[test]
    fn a_view_condition_is_its_last_where() {
        assert_eq!(
            condition("SELECT a FROM t WHERE x IN (SELECT 1 WHERE 1) WHERE status = 'error'"),
            Some("status = 'error'")
        );
        assert_eq!(condition("SELECT a FROM t"), None);
    }
}
