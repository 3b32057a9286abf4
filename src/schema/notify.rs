//! The notifier's tables: every notification decided (`notifications`), the state of each
//! rule and entity (`notify_state`), and the claims that make one replica send each email
//! (`notify_claims`). See docs/notifications.md.

use super::otel::col;
use super::{ColumnDef, Role, TableDef, days};

const fn filter(name: &'static str, ch_type: &'static str, doc: &'static str) -> ColumnDef {
    ColumnDef {
        role: Role::Filter,
        ..col(name, ch_type, doc)
    }
}

pub const NOTIFICATIONS: TableDef = TableDef {
    name: "notifications",
    doc: "Every notification logbook decided on: sent, failed after its attempts, or suppressed (paused, snoozed, toggled off, rate limited).",
    reference: "api-call-logs.txt 3.4: notification emails; integration-health.txt: error email notifications; backend-services-monitoring.txt: Configuration tab",
    event_name: None,
    common_columns: false,
    columns: &[
        filter(
            "time",
            "DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1))",
            "When the outcome was recorded (the notifier's clock).",
        ),
        filter(
            "rule",
            "LowCardinality(String)",
            "first_error, error_rate or monitoring.",
        ),
        filter(
            "tenant",
            "LowCardinality(String)",
            "Tenant the notification is about.",
        ),
        filter(
            "entity",
            "String",
            "What it is about: the bot, the integration, or the tenant for monitoring events.",
        ),
        col(
            "key",
            "String",
            "Claim key: the same for every replica that decided this notification.",
        ),
        col(
            "recipients",
            "Array(String)",
            "Addresses it went (or would have gone) to.",
        ),
        col("subject", "String", "Email subject."),
        filter(
            "result",
            "LowCardinality(String)",
            "sent, failed or suppressed.",
        ),
        filter(
            "reason",
            "LowCardinality(String)",
            "Why it was suppressed: paused, snoozed, disabled, rate_limited; empty otherwise.",
        ),
        col(
            "error",
            "String CODEC(ZSTD(1))",
            "Last delivery error (also when a later attempt succeeded); never contains the SMTP password.",
        ),
        col("attempts", "UInt8", "Delivery attempts made."),
        col(
            "replica",
            "LowCardinality(String)",
            "The logbook replica that decided it (host name and process id).",
        ),
    ],
    indexes: &[],
    engine: "MergeTree",
    partition_by: "toYYYYMM(time)",
    primary_key: None,
    order_by: "(rule, tenant, entity, time)",
    ttl_from: "toDateTime(time)",
    default_ttl: days(90),
    settings: &[("index_granularity", "8192"), ("ttl_only_drop_parts", "1")],
    errors: None,
    metric_labels: &[],
};

pub const NOTIFY_STATE: TableDef = TableDef {
    name: "notify_state",
    doc: "The notifier's state per rule and entity (the newest `version` wins): when a bot's quiet window ends, whether an integration is above its threshold, how far monitoring events were covered, and each rule's watermark (entity `''`).",
    reference: "api-call-logs.txt 3.4: the 24-hour cycle per bot; integration-health.txt: the error-rate email",
    event_name: None,
    common_columns: false,
    columns: &[
        filter("rule", "LowCardinality(String)", "The rule."),
        filter(
            "entity",
            "String",
            "`tenant/bot`, `tenant/integration`, the tenant, or `''` for the rule's watermark.",
        ),
        col(
            "status",
            "LowCardinality(String)",
            "ok, firing (error rate above threshold, notified) or suppressed (above, not notified).",
        ),
        col(
            "version",
            "UInt64",
            "Incremented on each change; part of the claim key.",
        ),
        col(
            "until",
            "DateTime64(9, 'UTC')",
            "Rule-specific: the time before which a bot's errors are not notified, the time monitoring events were covered to, or the rule's watermark.",
        ),
        col(
            "sent_at",
            "DateTime64(9, 'UTC')",
            "When the entity's last email was sent (the notifier's clock).",
        ),
        col(
            "updated_at",
            "DateTime64(3, 'UTC') DEFAULT now64(3)",
            "When the row was written (server clock).",
        ),
    ],
    indexes: &[],
    engine: "ReplacingMergeTree(version)",
    partition_by: "tuple()",
    primary_key: None,
    order_by: "(rule, entity)",
    ttl_from: "toDateTime(updated_at)",
    default_ttl: None,
    settings: &[("index_granularity", "8192")],
    errors: None,
    metric_labels: &[],
};

pub const NOTIFY_CLAIMS: TableDef = TableDef {
    name: "notify_claims",
    doc: "One row per notification key, written with the key as insert deduplication token: when several replicas decide the same notification, ClickHouse keeps the first insert only, and the replica named in it sends.",
    reference: "several logbook replicas send each email once",
    event_name: None,
    common_columns: false,
    columns: &[
        filter("key", "String", "rule/entity/state version."),
        col(
            "owner",
            "String",
            "The replica that won the claim (host name, process id, random suffix).",
        ),
        col(
            "claimed_at",
            "DateTime64(3, 'UTC') DEFAULT now64(3)",
            "When (server clock).",
        ),
    ],
    indexes: &[],
    engine: "MergeTree",
    partition_by: "toYYYYMM(claimed_at)",
    primary_key: None,
    order_by: "key",
    ttl_from: "toDateTime(claimed_at)",
    default_ttl: days(30),
    settings: &[
        ("index_granularity", "8192"),
        // Deduplication remembers this many inserts: far more than claims made in a window.
        ("non_replicated_deduplication_window", "100000"),
    ],
    errors: None,
    metric_labels: &[],
};
