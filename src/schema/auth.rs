//! The API's tokens: who may call the HTTP API, with which role, for which tenant.

use super::{TableDef, otel::col};

/// API tokens, stored as the SHA-256 of the secret (the secret itself is printed once, by
/// `logbook token create`). A revocation writes a newer version of the row; reads use `FINAL`.
pub const API_TOKENS: TableDef = TableDef {
    name: "api_tokens",
    doc: "API tokens of the HTTP API: name, role, tenant, permissions and the SHA-256 of the secret; a revocation is a newer version of the row.",
    reference: "api-call-logs.txt: role-based access; audit-logs.txt: view audit logs permission",
    event_name: None,
    common_columns: false,
    columns: &[
        col(
            "id",
            "UUID",
            "Token id (shown by `logbook token list`, used to revoke).",
        ),
        col(
            "name",
            "String",
            "Who or what the token is for; recorded as the user of every request in `access_logs`.",
        ),
        col(
            "role",
            "LowCardinality(String)",
            "owner, supervisor, bot_builder or viewer.",
        ),
        col(
            "tenant",
            "String",
            "The only tenant the token may read; empty for every tenant.",
        ),
        col(
            "permissions",
            "Array(LowCardinality(String))",
            "Extra permissions: view_audit_logs.",
        ),
        col(
            "secret_sha256",
            "String",
            "SHA-256 of the token's secret, hex.",
        ),
        col(
            "created_at",
            "DateTime64(3, 'UTC')",
            "When the token was created.",
        ),
        col(
            "revoked_at",
            "Nullable(DateTime64(3, 'UTC'))",
            "When it was revoked; NULL while valid.",
        ),
        col("version", "UInt64", "Row version: the newest one wins."),
    ],
    indexes: &[],
    engine: "ReplacingMergeTree(version)",
    partition_by: "tuple()",
    primary_key: None,
    order_by: "(id)",
    ttl_from: "created_at",
    default_ttl: None,
    settings: &[("index_granularity", "8192")],
    errors: None,
    metric_labels: &[],
};
