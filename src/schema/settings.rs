//! The `settings` table: logbook's run-time settings (log level, retention, notifications),
//! shared by every replica. See `crate::settings` for how it is read and written.

use super::{ColumnDef, Presence, Role, TableDef};

const fn col(name: &'static str, ch_type: &'static str, doc: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        ch_type,
        doc,
        source: None,
        presence: Presence::Optional,
        role: Role::Plain,
        one_of: &[],
    }
}

pub const SETTINGS: TableDef = TableDef {
    name: "settings",
    doc: "Run-time settings, one row per change: the newest row of a key (by `updated_at`) is its value. Written by the API, read by every replica every few seconds.",
    reference: "backend-services-monitoring.txt: Configuration tab (log level, minimum severity, snooze, pause); integration-health.txt: error email toggle",
    event_name: None,
    common_columns: false,
    columns: &[
        ColumnDef {
            role: Role::Filter,
            ..col(
                "key",
                "String",
                "Setting name, e.g. `notify.paused` (docs/notifications.md lists them).",
            )
        },
        col(
            "value",
            "String CODEC(ZSTD(1))",
            "The value as JSON; `null` when `deleted`.",
        ),
        col(
            "deleted",
            "UInt8",
            "1: the key was reset, and the configuration file's default applies again.",
        ),
        col(
            "updated_at",
            "DateTime64(9, 'UTC') DEFAULT now64(9)",
            "When the change was written, by the ClickHouse server's clock (one clock for all replicas): the row version.",
        ),
        col(
            "updated_by",
            "String",
            "Who made the change (API token name, `config`, …).",
        ),
    ],
    indexes: &[],
    engine: "ReplacingMergeTree(updated_at)",
    partition_by: "tuple()",
    primary_key: None,
    order_by: "key",
    ttl_from: "toDateTime(updated_at)",
    default_ttl: None,
    settings: &[("index_granularity", "8192")],
    errors: None,
    metric_labels: &[],
};
