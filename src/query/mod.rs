//! The query side: reads ClickHouse for the API, the notifier and the metrics jobs, and never
//! reaches into ingest. The log kinds have one generic implementation: `filter` compiles a
//! caller's filters from the kind's definition, `rows` runs them with per-query limits and
//! pages through the rows in time order. `integrations` holds the integration health rule.

pub mod filter;
pub mod findings;
pub mod integrations;
pub mod rows;

pub use filter::{Cursor, ListRequest, parse_list};
pub use rows::{Detail, Page, Related, Span};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a query can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The caller's request does not fit the kind (unknown filter, bad value): their fault.
    #[error("{0}")]
    Invalid(String),
    #[error("query exceeded its limits: {0}")]
    Limited(String),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("clickhouse did not answer within {0:?}")]
    Timeout(Duration),
    #[error("clickhouse answered rows logbook cannot read: {0}")]
    Decode(String),
}

/// Bounds on every query the API runs, so that one caller cannot hurt ClickHouse.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimits {
    /// Longest a query may run on ClickHouse (`max_execution_time`).
    #[serde(with = "humantime_serde")]
    pub max_execution_time: Duration,
    /// Most rows a query may return (`max_result_rows`).
    pub max_result_rows: u64,
    /// Most bytes a query may return (`max_result_bytes`).
    pub max_result_bytes: bytesize::ByteSize,
    /// Most rows a query may read (`max_rows_to_read`); 0 for no limit.
    pub max_rows_to_read: u64,
    /// Rows per page when the caller does not say.
    pub default_page_size: u32,
    /// Largest page a caller may ask for.
    pub max_page_size: u32,
    /// Longest text of a searchable column in list pages; the detail endpoint returns it whole.
    pub preview_chars: u32,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_execution_time: Duration::from_secs(10),
            max_result_rows: 100_000,
            max_result_bytes: bytesize::ByteSize::mib(64),
            max_rows_to_read: 0,
            default_page_size: 50,
            max_page_size: 1000,
            preview_chars: 256,
        }
    }
}

impl QueryLimits {
    /// `query` with the limits as settings, read-only (`readonly = 2`: reads only, while
    /// these settings may still be set by the request itself).
    pub fn apply(&self, query: clickhouse::query::Query) -> clickhouse::query::Query {
        let mut query = query
            .with_setting("readonly", "2")
            .with_setting(
                "max_execution_time",
                self.max_execution_time.as_secs_f64().to_string(),
            )
            .with_setting("max_result_rows", self.max_result_rows.to_string())
            .with_setting(
                "max_result_bytes",
                self.max_result_bytes.as_u64().to_string(),
            )
            .with_setting("result_overflow_mode", "throw")
            .with_setting("output_format_json_validate_utf8", "1")
            .with_setting("output_format_json_quote_64bit_integers", "0");
        if self.max_rows_to_read > 0 {
            query = query.with_setting("max_rows_to_read", self.max_rows_to_read.to_string());
        }
        query
    }

    /// The client-side wait for an answer: the server's limit and a margin.
    pub fn client_timeout(&self) -> Duration {
        self.max_execution_time + Duration::from_secs(5)
    }
}

/// Which of [`INDEX_SETTINGS`] the engine knows: asked once per process, and again after an ask
/// that failed.
static KNOWN_INDEX_SETTINGS: tokio::sync::OnceCell<Vec<String>> =
    tokio::sync::OnceCell::const_new();

/// Settings API queries turn off where the engine has them:
/// - `use_skip_indexes_on_data_read` (ClickHouse 25.9 and later): skip indexes are evaluated
///   while planning, not while reading; on a table with projections the read-time evaluation
///   skipped none of them (ClickHouse issue #100783; measured on 26.9: a unique search word
///   read every row of `api_calls`).
/// - `query_plan_direct_read_from_text_index`: `hasToken` is answered from the `text` index's
///   posting lists instead of the column, which no projection can provide, so a search never
///   read the `by_time` projection: a common word's newest half hour read 16 granules of the
///   table instead of 11 of `by_time` (measured on 26.9, docs/benchmarks.md). Without it the
///   `text` index still leaves only the granules holding the word.
const INDEX_SETTINGS: &[&str] = &[
    "use_skip_indexes_on_data_read",
    "query_plan_direct_read_from_text_index",
];

/// `query` with [`INDEX_SETTINGS`] turned off where the engine has them (older engines refuse
/// a setting they do not know).
pub async fn index_settings(
    client: &clickhouse::Client,
    query: clickhouse::query::Query,
) -> clickhouse::query::Query {
    let known = KNOWN_INDEX_SETTINGS
        .get_or_try_init(|| async {
            client
                .query("SELECT name FROM system.settings WHERE has(?, name)")
                .bind(INDEX_SETTINGS)
                .fetch_all::<String>()
                .await
        })
        .await;
    let mut query = query;
    for name in known.into_iter().flatten() {
        query = query.with_setting(name.as_str(), "0");
    }
    query
}

/// Error codes of ClickHouse's limits (TIMEOUT_EXCEEDED, TOO_MANY_ROWS, TOO_MANY_ROWS_OR_BYTES,
/// TOO_MANY_BYTES, MEMORY_LIMIT_EXCEEDED).
const LIMIT_CODES: &[&str] = &[
    "Code: 159.",
    "Code: 158.",
    "Code: 396.",
    "Code: 307.",
    "Code: 241.",
];

pub(crate) fn classify(error: clickhouse::error::Error) -> QueryError {
    let text = error.to_string();
    if LIMIT_CODES.iter().any(|code| text.contains(code)) {
        QueryError::Limited(text)
    } else {
        QueryError::ClickHouse(error)
    }
}
