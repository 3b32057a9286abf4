//! SQL text for the schema, rendered from the table definitions.
//!
//! All identifiers here come from logbook's own definitions or from the database name, which
//! configuration validation restricts to `[A-Za-z_][A-Za-z0-9_]*`; no user input is pasted.
//! Every statement is idempotent (`IF NOT EXISTS`), so replicas may run them concurrently.
//!
//! On a ClickHouse cluster ([`Ddl::on_cluster`], docs/scaling.md) every statement carries
//! `ON CLUSTER`, a table's rows live in `<table>_local` (the Replicated variant of its engine,
//! one Keeper path per shard) and `<table>` becomes a `Distributed` table over them, so writers
//! and readers keep the table names of a single server.

use std::time::Duration;

use super::otel::TRACE_ID_TS_MV;
use super::{KINDS, OTEL_LOGS, OTEL_TRACES_TRACE_ID_TS, Role, TableDef};

/// The TTL wanted for a table: its retention and, for `otel_logs`, the low-severity one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ttl {
    pub keep: Option<Duration>,
    pub keep_low_severity: Option<Duration>,
}

/// Statements for one database, on one server or on every server of a cluster.
#[derive(Debug, Clone)]
pub struct Ddl {
    database: String,
    cluster: Option<String>,
    /// Whether searchable columns get `text` indexes ([`indexes`]).
    text_index: bool,
}

/// Suffix of the table holding a shard's rows on a cluster.
pub const LOCAL_SUFFIX: &str = "_local";

/// A skip index as rendered: name, expression, type, granularity (`None`: the server's own,
/// as for `text` indexes, which cover whole parts whatever is asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: String,
    pub expr: String,
    pub kind: String,
    pub granularity: Option<u32>,
}

impl Index {
    /// `name expr TYPE kind [GRANULARITY n]`, as `INDEX` and `ADD INDEX` take it.
    fn definition(&self) -> String {
        let granularity = self
            .granularity
            .map(|g| format!(" GRANULARITY {g}"))
            .unwrap_or_default();
        format!(
            "{} {} TYPE {}{granularity}",
            self.name, self.expr, self.kind
        )
    }
}

/// The exact inverted index of a searchable column. `splitByNonAlpha` splits text as
/// `hasToken` does, so the API's search (`hasToken`) is answered from the index.
pub const TEXT_INDEX: &str = "text(tokenizer = splitByNonAlpha)";

impl Ddl {
    pub fn new(database: &str) -> Ddl {
        debug_assert!(crate::config::is_identifier(database));
        Ddl {
            database: database.to_owned(),
            cluster: None,
            text_index: false,
        }
    }

    /// The same statements with (or without) `text` indexes on the searchable columns, for a
    /// server that has them (`store::migrate` asks the server).
    pub fn with_text_index(self, text_index: bool) -> Ddl {
        Ddl { text_index, ..self }
    }

    pub fn text_index(&self) -> bool {
        self.text_index
    }

    /// Statements for every server of `cluster` (a `<remote_servers>` entry).
    pub fn on_cluster(database: &str, cluster: &str) -> Ddl {
        debug_assert!(crate::config::is_identifier(cluster));
        Ddl {
            cluster: Some(cluster.to_owned()),
            ..Ddl::new(database)
        }
    }

    /// The statements for the database `config` names, on its cluster when it names one.
    pub fn for_config(config: &crate::config::ClickHouseConfig) -> Ddl {
        match &config.cluster {
            Some(cluster) => Ddl::on_cluster(&config.database, cluster),
            None => Ddl::new(&config.database),
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    fn qualified(&self, table: &str) -> String {
        format!("`{}`.`{}`", self.database, table)
    }

    /// Drops a view, on every server of the cluster when there is one.
    pub fn drop_view(&self, name: &str) -> String {
        format!(
            "DROP VIEW IF EXISTS {}{} SYNC",
            self.qualified(name),
            self.on()
        )
    }

    /// ` ON CLUSTER `name`` on a cluster, nothing otherwise.
    fn on(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| format!(" ON CLUSTER `{c}`"))
            .unwrap_or_default()
    }

    /// The table holding `table`'s rows: itself, or `<table>_local` on a cluster.
    pub fn storage_name(&self, table: &str) -> String {
        match self.cluster {
            Some(_) => format!("{table}{LOCAL_SUFFIX}"),
            None => table.to_owned(),
        }
    }

    fn storage(&self, table: &str) -> String {
        self.qualified(&self.storage_name(table))
    }

    /// Drops one partition of `table`, on a cluster from every server's local table.
    /// `partition_id` is one ClickHouse names partitions by (`YYYYMMDD` for a day).
    pub fn drop_partition(&self, table: &str, partition_id: &str) -> String {
        assert!(
            partition_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "partition id {partition_id:?}"
        );
        format!(
            "ALTER TABLE {}{} DROP PARTITION ID '{partition_id}'",
            self.storage(table),
            self.on()
        )
    }

    /// A lightweight delete of `table`'s rows where `condition` holds (its values bound as
    /// query parameters), on a cluster from every shard's local table: a Distributed table
    /// takes no deletes.
    pub fn delete_where(&self, table: &str, condition: &str) -> String {
        format!(
            "DELETE FROM {}{} WHERE {condition}",
            self.storage(table),
            self.on()
        )
    }

    /// The engine clause: on a cluster the Replicated variant, its Keeper path per shard
    /// (`{shard}`, `{replica}` are the servers' macros; `{database}`, `{table}` ClickHouse's).
    fn engine(&self, engine: &str, shared_by_all_shards: bool) -> String {
        match self.cluster {
            None => engine.to_owned(),
            Some(_) => {
                let shard = if shared_by_all_shards {
                    "all"
                } else {
                    "{shard}"
                };
                // `ReplacingMergeTree(version)` becomes
                // `ReplicatedReplacingMergeTree(path, replica, version)`.
                let (name, args) = match engine.split_once('(') {
                    Some((name, rest)) => (name, format!(", {}", rest.trim_end_matches(')'))),
                    None => (engine, String::new()),
                };
                format!(
                    "Replicated{name}('/clickhouse/tables/{shard}/{{database}}/{{table}}', '{{replica}}'{args})"
                )
            }
        }
    }

    /// An engine for a table of logbook's own bookkeeping (the migrations record): on a
    /// cluster every server holds every row, so any server can answer for the whole cluster.
    pub fn bookkeeping_engine(&self) -> String {
        self.engine("MergeTree", true)
    }

    pub fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS `{}`{}",
            self.database,
            self.on()
        )
    }

    /// The `CREATE TABLE` of a table, or on a cluster of its `<table>_local`.
    pub fn create_table(&self, table: &TableDef, ttl: Ttl) -> String {
        let mut lines: Vec<String> = table
            .all_columns()
            .map(|c| format!("    `{}` {}", c.name, c.ch_type))
            .collect();
        lines.extend(
            indexes(table, self.text_index)
                .iter()
                .map(|i| format!("    INDEX {}", i.definition())),
        );
        lines.extend(
            projections(table)
                .iter()
                .map(|(name, select)| format!("    PROJECTION {name} ({select})")),
        );
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {}{} (\n{}\n) ENGINE = {}\nPARTITION BY {}\n",
            self.storage(table.name),
            self.on(),
            lines.join(",\n"),
            self.engine(table.engine, false),
            table.partition_by,
        );
        if let Some(primary_key) = table.primary_key {
            sql += &format!("PRIMARY KEY {primary_key}\n");
        }
        sql += &format!("ORDER BY {}\n", table.order_by);
        if let Some(expr) = ttl_expression(table, ttl) {
            sql += &format!("TTL {expr}\n");
        }
        let settings: Vec<_> = settings(table, ttl)
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        sql += &format!("SETTINGS {}", settings.join(", "));
        sql
    }

    /// On a cluster, the `Distributed` table named like `table` over its `<table>_local`
    /// tables. Rows go to shards by a key that is the same when a batch is retried, so a
    /// retry lands on the same shards and their deduplication sees it.
    pub fn create_distributed(&self, table: &TableDef) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        Some(format!(
            "CREATE TABLE IF NOT EXISTS {}{} AS {} ENGINE = Distributed('{cluster}', '{}', '{}', {})",
            self.qualified(table.name),
            self.on(),
            self.storage(table.name),
            self.database,
            self.storage_name(table.name),
            sharding_key(table)
        ))
    }

    /// Adds a column: to the table, or on a cluster to its local and Distributed tables.
    pub fn add_column(&self, table: &TableDef, column: &str, after: Option<&str>) -> Vec<String> {
        let def = table.column(column).expect("column of the table");
        let after = after.map(|a| format!(" AFTER `{a}`")).unwrap_or_default();
        let mut targets = vec![self.storage(table.name)];
        if self.cluster.is_some() {
            targets.push(self.qualified(table.name));
        }
        targets
            .into_iter()
            .map(|target| {
                format!(
                    "ALTER TABLE {target}{} ADD COLUMN IF NOT EXISTS `{}` {}{after}",
                    self.on(),
                    def.name,
                    def.ch_type
                )
            })
            .collect()
    }

    pub fn add_index(&self, table: &TableDef, index: &Index) -> String {
        format!(
            "ALTER TABLE {}{} ADD INDEX IF NOT EXISTS {}",
            self.storage(table.name),
            self.on(),
            index.definition()
        )
    }

    /// A background mutation that builds the index for the parts written before it was added
    /// (without it they get it only when merged, and a daily partition's old parts may never be).
    pub fn materialize_index(&self, table: &TableDef, name: &str) -> String {
        format!(
            "ALTER TABLE {}{} MATERIALIZE INDEX {name}",
            self.storage(table.name),
            self.on()
        )
    }

    pub fn drop_index(&self, table: &TableDef, name: &str) -> String {
        format!(
            "ALTER TABLE {}{} DROP INDEX IF EXISTS {name}",
            self.storage(table.name),
            self.on()
        )
    }

    /// Existing parts get the projection on their next merge, or by [`Ddl::materialize_projection`].
    pub fn add_projection(&self, table: &TableDef, name: &str, select: &str) -> String {
        format!(
            "ALTER TABLE {}{} ADD PROJECTION IF NOT EXISTS {name} ({select})",
            self.storage(table.name),
            self.on()
        )
    }

    /// A background mutation that builds the projection for the parts written before it.
    pub fn materialize_projection(&self, table: &TableDef, name: &str) -> String {
        format!(
            "ALTER TABLE {}{} MATERIALIZE PROJECTION {name}",
            self.storage(table.name),
            self.on()
        )
    }

    /// Changing a TTL with `materialize_ttl_after_modify = 0` does not rewrite existing parts:
    /// new parts get the new TTL at once, old ones on their next merge (or on
    /// `ALTER TABLE … MATERIALIZE TTL`, which `logbook migrate --materialize-ttl` runs).
    pub fn modify_ttl(&self, table: &TableDef, ttl: Ttl) -> String {
        match ttl_expression(table, ttl) {
            Some(expr) => format!(
                "ALTER TABLE {}{} MODIFY TTL {expr} SETTINGS materialize_ttl_after_modify = 0",
                self.storage(table.name),
                self.on()
            ),
            None => format!(
                "ALTER TABLE {}{} REMOVE TTL",
                self.storage(table.name),
                self.on()
            ),
        }
    }

    pub fn materialize_ttl(&self, table: &TableDef) -> String {
        format!(
            "ALTER TABLE {}{} MATERIALIZE TTL",
            self.storage(table.name),
            self.on()
        )
    }

    pub fn modify_settings(&self, table: &TableDef, ttl: Ttl) -> String {
        let settings: Vec<_> = settings(table, ttl)
            .into_iter()
            .filter(|(k, _)| *k != "index_granularity")
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        format!(
            "ALTER TABLE {}{} MODIFY SETTING {}",
            self.storage(table.name),
            self.on(),
            settings.join(", ")
        )
    }

    /// Materialized views, as (name, CREATE statement): the trace-id lookup and one
    /// `<kind>_errors_mv` per kind that has an error mapping. On a cluster they read and
    /// write the local tables, so each shard computes its own rows.
    pub fn views(&self) -> Vec<(String, String)> {
        let (name, source, select) = TRACE_ID_TS_MV;
        let mut views = vec![(
            name.to_owned(),
            format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {}{} TO {} AS {}",
                self.qualified(name),
                self.on(),
                self.storage(OTEL_TRACES_TRACE_ID_TS.name),
                select.replace("{source}", &self.storage(source))
            ),
        )];
        for kind in KINDS {
            let Some(errors) = kind.errors else { continue };
            let name = format!("{}_errors_mv", kind.name);
            let sql = format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {}{} TO {} AS SELECT time, '{}' AS kind, \
                 toString({}) AS source, toString({}) AS code, toString({}) AS message, \
                 toString({}) AS severity, tenant, service, environment, id AS related_id, \
                 trace_id FROM {} WHERE {}",
                self.qualified(&name),
                self.on(),
                self.storage(super::ERRORS.name),
                kind.name,
                errors.source,
                errors.code,
                errors.message,
                errors.severity,
                self.storage(kind.name),
                errors.when
            );
            views.push((name, sql));
        }
        views
    }
}

/// How a Distributed table spreads rows over shards: by what a retried batch repeats (a
/// typed row's id, a span's trace, so that a trace stays on one shard).
fn sharding_key(table: &TableDef) -> &'static str {
    if table.common_columns {
        return "cityHash64(id)";
    }
    match table.name {
        "otel_logs" => "cityHash64(TraceId, Timestamp)",
        "otel_traces" | "otel_traces_trace_id_ts" => "cityHash64(TraceId)",
        "errors" => "cityHash64(related_id)",
        // One key, one shard: a setting's rows, and a notification's claims (so that their
        // insert deduplication sees them all) and state.
        "settings" | "notify_claims" => "cityHash64(key)",
        "notify_state" | "notifications" => "cityHash64(rule, entity)",
        "api_tokens" => "cityHash64(id)",
        other => unreachable!("no sharding key for table {other}"),
    }
}

/// Projections, as (name, SELECT): log kinds keep two more copies of their rows, because the
/// sort key leads with the kind's own filter columns while the API asks for the newest rows:
/// `by_tenant` ordered by `(tenant, time)` for tenant-scoped queries (a tenant's newest page
/// reads ~0.5% of 10 M rows instead of ~27%), and `by_time` ordered by `time` for pages that
/// no sort-key filter narrows (the unfiltered list, a common search word): the engine reads it
/// newest first and stops at the page (docs/benchmarks.md has what each costs in disk).
pub fn projections(table: &TableDef) -> Vec<(&'static str, &'static str)> {
    if table.common_columns {
        vec![
            (TENANT_PROJECTION, "SELECT * ORDER BY tenant, time"),
            (TIME_PROJECTION, "SELECT * ORDER BY time"),
        ]
    } else {
        Vec::new()
    }
}

/// The projection of every log kind ordered by `(tenant, time)`.
pub const TENANT_PROJECTION: &str = "by_tenant";
/// The projection of every log kind ordered by `time`.
pub const TIME_PROJECTION: &str = "by_time";

/// The table's skip indexes: its own, plus for log kinds bloom filters on `trace_id` and `id`
/// (related rows and the API's detail lookups), and on every searchable column either an exact
/// `text` index (`text_index`: the server has it, ClickHouse 26.2 and later) or a token bloom
/// filter. The `text` index replaces the bloom filter: it answers `hasToken` from its posting
/// lists, while the bloom filters are read for every granule of the time range searched
/// (docs/benchmarks.md, "Schema version 6").
pub fn indexes(table: &TableDef, text_index: bool) -> Vec<Index> {
    let search: Vec<&str> = table
        .all_columns()
        .filter(|c| c.role == Role::Search)
        .map(|c| c.name)
        .collect();
    let mut out: Vec<Index> = table
        .indexes
        .iter()
        .filter(|i| !(text_index && search.contains(&i.expr)))
        .map(|i| Index {
            name: i.name.into(),
            expr: i.expr.into(),
            kind: i.kind.into(),
            granularity: Some(i.granularity),
        })
        .collect();
    if table.common_columns {
        out.push(Index {
            name: "idx_trace_id".into(),
            expr: "trace_id".into(),
            kind: "bloom_filter(0.001)".into(),
            granularity: Some(1),
        });
        out.push(Index {
            name: "idx_id".into(),
            expr: "id".into(),
            kind: "bloom_filter(0.001)".into(),
            granularity: Some(1),
        });
    }
    for column in search {
        if text_index {
            out.push(Index {
                name: format!("text_{column}"),
                expr: column.into(),
                kind: TEXT_INDEX.into(),
                granularity: None,
            });
        } else if table.common_columns {
            out.push(Index {
                name: format!("idx_{column}"),
                expr: column.into(),
                kind: "tokenbf_v1(32768, 3, 0)".into(),
                // One filter per granule: at 4 granules the filter saturates and a keyword
                // found in one row still reads 12.7% of the table (docs/benchmarks.md).
                granularity: Some(1),
            });
        }
    }
    out
}

/// Names of the indexes a server without `text` indexes has and this schema replaces: the token
/// bloom filters of the searchable columns, when `text_index`.
pub fn replaced_indexes(table: &TableDef, text_index: bool) -> Vec<String> {
    let wanted: Vec<String> = indexes(table, text_index)
        .into_iter()
        .map(|i| i.name)
        .collect();
    indexes(table, false)
        .into_iter()
        .map(|i| i.name)
        .filter(|name| !wanted.contains(name))
        .collect()
}

/// The TTL expression list, in the form ClickHouse itself prints in `engine_full` (so the
/// migration can compare what is with what should be).
pub fn ttl_expression(table: &TableDef, ttl: Ttl) -> Option<String> {
    let keep = ttl
        .keep
        .map(|d| format!("{} + {}", table.ttl_from, interval(d)));
    let low = (table.name == OTEL_LOGS.name)
        .then_some(ttl.keep_low_severity)
        .flatten()
        .map(|d| {
            format!(
                "{} + {} WHERE SeverityNumber < 9",
                table.ttl_from,
                interval(d)
            )
        });
    let parts: Vec<String> = keep.into_iter().chain(low).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn interval(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    if secs.is_multiple_of(86_400) {
        format!("toIntervalDay({})", secs / 86_400)
    } else {
        format!("toIntervalSecond({secs})")
    }
}

/// A low-severity TTL deletes rows, not whole parts, so it needs row-level TTL merges.
/// Tables with projections let a lightweight delete (the API's purge) drop the projection of
/// the parts it touches, to be rebuilt by their next merge; `rebuild` left deleted rows
/// visible through the projection on the engine (measured, chdb 26.9).
fn settings(table: &TableDef, ttl: Ttl) -> Vec<(&'static str, &'static str)> {
    let row_level = table.name == OTEL_LOGS.name && ttl.keep_low_severity.is_some();
    let mut out: Vec<_> = table
        .settings
        .iter()
        .map(|&(k, v)| match k {
            "ttl_only_drop_parts" if row_level => (k, "0"),
            _ => (k, v),
        })
        .collect();
    if !projections(table).is_empty() {
        out.push(("lightweight_mutation_projection_mode", "'drop'"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ApiCall, LogKind};

    fn days(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n * 86_400))
    }

    #[test]
    fn ttl_in_whole_days_or_seconds() {
        let t = ApiCall::TABLE;
        let ttl = |keep| Ttl {
            keep,
            keep_low_severity: None,
        };
        assert_eq!(
            ttl_expression(t, ttl(days(7))).unwrap(),
            "toDateTime(time) + toIntervalDay(7)"
        );
        assert_eq!(
            ttl_expression(t, ttl(Some(Duration::from_secs(90)))).unwrap(),
            "toDateTime(time) + toIntervalSecond(90)"
        );
        assert_eq!(ttl_expression(t, ttl(None)), None);
    }

    #[test]
    fn low_severity_ttl_only_on_otel_logs_and_switches_to_row_level_deletes() {
        let ttl = Ttl {
            keep: days(30),
            keep_low_severity: days(1),
        };
        assert_eq!(
            ttl_expression(&OTEL_LOGS, ttl).unwrap(),
            "TimestampTime + toIntervalDay(30), TimestampTime + toIntervalDay(1) WHERE SeverityNumber < 9"
        );
        assert!(
            Ddl::new("db")
                .create_table(&OTEL_LOGS, ttl)
                .contains("ttl_only_drop_parts = 0")
        );
        assert_eq!(
            ttl_expression(ApiCall::TABLE, ttl).unwrap(),
            "toDateTime(time) + toIntervalDay(30)"
        );
    }

    #[test]
    fn searchable_columns_get_token_bloom_filters_without_text_indexes() {
        let names: Vec<_> = indexes(ApiCall::TABLE, false)
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert!(names.contains(&"idx_trace_id".to_owned()));
        assert!(names.contains(&"idx_request_body".to_owned()));
        assert!(!names.contains(&"idx_bot".to_owned()));
        assert!(!names.iter().any(|n| n.starts_with("text_")), "{names:?}");
        assert!(replaced_indexes(ApiCall::TABLE, false).is_empty());
    }

    #[test]
    fn text_indexes_replace_the_token_bloom_filters_where_the_server_has_them() {
        let sql = Ddl::new("db")
            .with_text_index(true)
            .create_table(ApiCall::TABLE, Ttl::default());
        for column in ["url", "request_body", "response_body", "error_message"] {
            assert!(
                sql.contains(&format!(
                    "INDEX text_{column} {column} TYPE text(tokenizer = splitByNonAlpha),"
                )),
                "{sql}"
            );
            assert!(!sql.contains(&format!("INDEX idx_{column} ")), "{sql}");
        }
        assert!(sql.contains("INDEX idx_id id TYPE bloom_filter(0.001) GRANULARITY 1"));
        assert_eq!(
            replaced_indexes(ApiCall::TABLE, true),
            [
                "idx_url",
                "idx_request_body",
                "idx_response_body",
                "idx_error_message"
            ]
        );
        // A table's own token index on a searchable column (`errors.message`) is replaced too;
        // an index on a column that is not searched (`otel_logs.Body`) is kept.
        assert_eq!(
            replaced_indexes(&crate::schema::ERRORS, true),
            ["idx_message"]
        );
        assert!(replaced_indexes(&OTEL_LOGS, true).is_empty());
    }

    #[test]
    fn cluster_statements_run_on_every_server_through_local_and_distributed_tables() {
        let ddl = Ddl::on_cluster("db", "main");
        let ttl = Ttl::default();
        let local = ddl.create_table(ApiCall::TABLE, ttl);
        assert!(
            local.starts_with(
                "CREATE TABLE IF NOT EXISTS `db`.`api_calls_local` ON CLUSTER `main` ("
            ),
            "{local}"
        );
        assert!(local.contains(
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
        ));
        assert_eq!(
            ddl.create_distributed(ApiCall::TABLE).unwrap(),
            "CREATE TABLE IF NOT EXISTS `db`.`api_calls` ON CLUSTER `main` AS `db`.`api_calls_local` \
             ENGINE = Distributed('main', 'db', 'api_calls_local', cityHash64(id))"
        );
        let added = ddl.add_column(ApiCall::TABLE, "bot", None);
        assert_eq!(added.len(), 2, "local and distributed: {added:?}");
        assert!(
            added
                .iter()
                .all(|sql| sql.contains(" ON CLUSTER `main` ADD COLUMN"))
        );
        // Projections and indexes belong to the rows: the local table, on every server.
        let (name, select) = projections(ApiCall::TABLE)[0];
        assert!(
            ddl.add_projection(ApiCall::TABLE, name, select)
                .starts_with("ALTER TABLE `db`.`api_calls_local` ON CLUSTER `main` ADD PROJECTION")
        );
        assert_eq!(
            ddl.materialize_projection(ApiCall::TABLE, name),
            format!(
                "ALTER TABLE `db`.`api_calls_local` ON CLUSTER `main` MATERIALIZE PROJECTION {name}"
            )
        );
        for (_, view) in ddl.views() {
            assert!(view.contains(" ON CLUSTER `main` TO `db`.`"), "{view}");
            assert!(view.contains("_local` AS SELECT"), "{view}");
        }
        // Every table can be distributed; on one server there is nothing to distribute.
        for table in crate::schema::tables() {
            assert!(ddl.create_distributed(table).is_some(), "{}", table.name);
            assert!(Ddl::new("db").create_distributed(table).is_none());
        }
    }

    #[test]
    fn one_server_statements_name_the_tables_themselves() {
        let ddl = Ddl::new("db");
        let sql = ddl.create_table(ApiCall::TABLE, Ttl::default());
        assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS `db`.`api_calls` ("));
        assert!(sql.contains("ENGINE = MergeTree\n"));
        assert_eq!(ddl.add_column(ApiCall::TABLE, "bot", None).len(), 1);
        assert!(!ddl.create_database().contains("ON CLUSTER"));
    }

    #[test]
    fn purges_delete_from_the_tables_holding_the_rows() {
        let one = Ddl::new("db");
        let cluster = Ddl::on_cluster("db", "main");
        assert_eq!(
            one.drop_partition("api_calls", "20261130"),
            "ALTER TABLE `db`.`api_calls` DROP PARTITION ID '20261130'"
        );
        assert_eq!(
            cluster.drop_partition("api_calls", "20261130"),
            "ALTER TABLE `db`.`api_calls_local` ON CLUSTER `main` DROP PARTITION ID '20261130'"
        );
        assert_eq!(
            one.delete_where("api_calls", "tenant = {p0:String}"),
            "DELETE FROM `db`.`api_calls` WHERE tenant = {p0:String}"
        );
        assert_eq!(
            cluster.delete_where("api_calls", "tenant = {p0:String}"),
            "DELETE FROM `db`.`api_calls_local` ON CLUSTER `main` WHERE tenant = {p0:String}"
        );
        let configured = |cluster: Option<&str>| {
            Ddl::for_config(&crate::config::ClickHouseConfig {
                database: "db".into(),
                cluster: cluster.map(Into::into),
                ..Default::default()
            })
        };
        assert_eq!(configured(None).cluster(), None);
        assert_eq!(configured(Some("main")).cluster(), Some("main"));
        assert_eq!(configured(Some("main")).database(), "db");
    }

    #[test]
    #[should_panic(expected = "partition id")]
    fn a_partition_id_is_never_quoted_text() {
        Ddl::new("db").drop_partition("api_calls", "1' OR '1");
    }

    #[test]
    fn one_error_view_per_kind_with_a_mapping() {
        let views = Ddl::new("db").views();
        let with_errors = KINDS.iter().filter(|k| k.errors.is_some()).count();
        assert_eq!(views.len(), with_errors + 1);
        assert!(views.iter().any(|(n, _)| n == "api_calls_errors_mv"));
    }
}
