//! Size-based retention for `server_logs`: when the table's bytes on disk exceed the cap,
//! its oldest daily partitions are dropped, never the newest one.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use tokio_util::sync::CancellationToken;

use super::{StoreError, bounded};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::schema::{LogKind, ServerLog};

/// What one enforcement pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CapReport {
    /// Partitions dropped, oldest first, with their bytes on disk.
    pub dropped: Vec<(String, u64)>,
    /// Bytes on disk left afterwards.
    pub remaining_bytes: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct PartitionRow {
    partition_id: String,
    bytes: u64,
}

/// Drops the oldest partitions of `database.table` until its active parts fit in `cap`.
pub async fn enforce(
    client: &clickhouse::Client,
    database: &str,
    table: &str,
    cap: ByteSize,
    limit: Duration,
) -> Result<CapReport, StoreError> {
    let partitions = bounded(
        limit,
        client
            .query(
                "SELECT partition_id, sum(bytes_on_disk) AS bytes FROM system.parts \
                 WHERE database = {db:String} AND table = {t:String} AND active \
                 GROUP BY partition_id ORDER BY partition_id",
            )
            .param("db", database)
            .param("t", table)
            .fetch_all::<PartitionRow>(),
    )
    .await?;
    let mut report = CapReport {
        remaining_bytes: partitions.iter().map(|p| p.bytes).sum(),
        ..CapReport::default()
    };
    // Day partitions are named YYYYMMDD, so name order is age order; the newest is kept.
    let droppable = partitions.len().saturating_sub(1);
    for partition in partitions.into_iter().take(droppable) {
        if report.remaining_bytes <= cap.as_u64() {
            break;
        }
        // Partition ids are ClickHouse-generated; check before quoting one into ALTER.
        if !partition
            .partition_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let sql = format!(
            "ALTER TABLE `{database}`.`{table}` DROP PARTITION ID '{}'",
            partition.partition_id
        );
        bounded(limit, client.query(&sql).execute()).await?;
        tracing::warn!(
            table,
            partition = %partition.partition_id,
            bytes = partition.bytes,
            cap = %cap,
            "dropped the oldest partition to stay under the size cap"
        );
        report.remaining_bytes -= partition.bytes;
        report
            .dropped
            .push((partition.partition_id, partition.bytes));
    }
    Ok(report)
}

/// Enforces the `server_logs` size cap every `retention.size_check_interval` until `stop`.
pub async fn run(
    client: clickhouse::Client,
    config: Config,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let retention = &config.retention;
    loop {
        let pass = enforce(
            &client,
            &config.clickhouse.database,
            ServerLog::TABLE.name,
            retention.server_logs_max_bytes,
            config.clickhouse.request_timeout,
        )
        .await;
        match pass {
            Ok(report) => {
                for (_, bytes) in &report.dropped {
                    metrics.retention_partitions_dropped.inc();
                    metrics.retention_bytes_dropped.inc_by(*bytes);
                }
            }
            Err(error) => tracing::warn!(%error, "server_logs size check failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retention.size_check_interval) => {}
        }
    }
}
