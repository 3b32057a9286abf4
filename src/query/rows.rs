//! Running list and detail queries: rows come back as JSON objects (`JSONEachRow`), so one
//! implementation serves every kind whatever its columns.

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::filter::{Cursor, ListRequest, Value, Where};
use super::{QueryError, QueryLimits, classify, index_settings};
use crate::schema::{ColumnDef, KINDS, OTEL_TRACES, Role, TableDef};

/// One page of a list, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// The rows, newest first; searchable text columns cut to a preview.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Json>>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A row of another kind related to the one asked for.
#[derive(Debug, Serialize, serde::Deserialize, clickhouse::Row, utoipa::ToSchema)]
pub struct Related {
    /// Its kind (table).
    pub kind: String,
    pub id: String,
    pub time: String,
    /// Why it is related: `trace` (same trace) or `related_log_id`.
    pub relation: String,
}

/// A span of the row's trace, from `otel_traces`.
#[derive(Debug, Serialize, serde::Deserialize, clickhouse::Row, utoipa::ToSchema)]
pub struct Span {
    pub timestamp: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: String,
    pub service: String,
    pub duration_ns: u64,
    pub status_code: String,
    pub status_message: String,
}

/// One row in full, with its related rows and its trace's spans.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Detail {
    #[schema(value_type = Object)]
    pub row: Map<String, Json>,
    pub related: Vec<Related>,
    pub spans: Vec<Span>,
}

/// Most related rows and spans a detail lists.
const MAX_RELATED: u32 = 200;

pub(crate) async fn fetch_json(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    query: clickhouse::query::Query,
) -> Result<Vec<Map<String, Json>>, QueryError> {
    let query = index_settings(client, query).await;
    let run = async {
        let mut cursor = limits.apply(query).fetch_bytes("JSONEachRow")?;
        cursor.collect().await
    };
    let bytes = tokio::time::timeout(limits.client_timeout(), run)
        .await
        .map_err(|_| QueryError::Timeout(limits.client_timeout()))?
        .map_err(classify)?;
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).map_err(|e| QueryError::Decode(e.to_string())))
        .collect()
}

async fn fetch_rows<T>(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    query: clickhouse::query::Query,
) -> Result<Vec<T>, QueryError>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    let query = index_settings(client, query).await;
    tokio::time::timeout(
        limits.client_timeout(),
        limits.apply(query).fetch_all::<T>(),
    )
    .await
    .map_err(|_| QueryError::Timeout(limits.client_timeout()))?
    .map_err(classify)
}

/// Prefix of the alias a preview is selected under. Aliasing `leftUTF8(url, n) AS url` would
/// make ClickHouse read `url` in WHERE as the alias: search would see only the preview, and
/// the token indexes could not be used.
const PREVIEW: &str = "_preview_";

/// The select list of a page: every column, searchable text cut to `preview_chars` (under
/// [`PREVIEW`]`name`; [`list`] renames them back).
fn list_columns(table: &TableDef, filters: &mut Where, preview_chars: u32) -> String {
    let n = filters.bind("UInt32", Value::UInt(u64::from(preview_chars)));
    table
        .all_columns()
        .map(|c| {
            if is_previewed(c) {
                format!("leftUTF8(`{0}`, {n}) AS `{PREVIEW}{0}`", c.name)
            } else {
                format!("`{}`", c.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_previewed(column: &ColumnDef) -> bool {
    column.role == Role::Search && column.type_name() == "String"
}

/// How far back from the newest time asked for the first query of a page reaches. A page is
/// read window after window, the next one only when the rows found so far do not fill it: a
/// short window lets the engine prune by time (daily partitions, the `by_time` projection's
/// key) and pick the layout that reads least for the filters, instead of scanning every day
/// for the newest rows. Half an hour holds a full page of most lists.
const FIRST_WINDOW_NS: i64 = 30 * 60 * 1_000_000_000;

/// How much further back the next window reaches: as far again as the rows found so far say
/// the rest of the page needs, with a margin, at least doubling the reach and at most 16
/// times it; 32 times when nothing was found yet, so that a rare word (a request id) costs
/// three queries, the last two served by the token indexes.
fn next_reach(reach: i64, found: usize, missing: usize) -> i64 {
    let more = if found == 0 {
        reach.saturating_mul(32)
    } else {
        let needed = reach as f64 * 1.5 * missing as f64 / found as f64;
        (needed as i64).clamp(reach, reach.saturating_mul(16))
    };
    reach.saturating_add(more)
}

/// A page of `table`'s rows matching `request`, newest first.
pub async fn list(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    table: &TableDef,
    request: &ListRequest,
) -> Result<Page, QueryError> {
    let want = request.limit as usize + 1;
    let newest = request.newest_ns.unwrap_or_else(now_ns);
    let oldest = request.oldest_ns.unwrap_or(0);
    let mut rows = Vec::new();
    // Each window takes the rows older than the previous one's lower bound, so the windows
    // split the time range asked for: no row is in two, every row is in one. The last one has
    // no lower bound but `from`'s.
    let mut reach = FIRST_WINDOW_NS;
    let mut older_than = None;
    loop {
        let since = Some(newest.saturating_sub(reach)).filter(|since| *since > oldest);
        let mut filters = request.filters.clone();
        if let Some(t) = older_than {
            let p = filters.bind("Int64", Value::Int(t));
            filters
                .conditions
                .push(format!("time < fromUnixTimestamp64Nano({p})"));
        }
        if let Some(t) = since {
            let p = filters.bind("Int64", Value::Int(t));
            filters
                .conditions
                .push(format!("time >= fromUnixTimestamp64Nano({p})"));
        }
        rows.extend(newest_rows(client, limits, table, filters, want - rows.len()).await?);
        if rows.len() >= want || since.is_none() {
            break;
        }
        older_than = since;
        reach = next_reach(reach, rows.len(), want - rows.len());
    }
    let more = rows.len() > request.limit as usize;
    rows.truncate(request.limit as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(cursor_of(last)?.encode()),
        _ => None,
    };
    for row in &mut rows {
        row.remove("_time_ns");
        for column in table.all_columns().filter(|c| is_previewed(c)) {
            if let Some(preview) = row.remove(&format!("{PREVIEW}{}", column.name)) {
                row.insert(column.name.to_owned(), preview);
            }
        }
    }
    Ok(Page { rows, next_cursor })
}

/// The newest `limit` rows of `table` matching `filters`, with previews and `_time_ns`.
async fn newest_rows(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    table: &TableDef,
    mut filters: Where,
    limit: usize,
) -> Result<Vec<Map<String, Json>>, QueryError> {
    let columns = list_columns(table, &mut filters, limits.preview_chars);
    let limit = filters.bind("UInt32", Value::UInt(limit as u64));
    let sql = format!(
        "SELECT {columns}, toUnixTimestamp64Nano(time) AS _time_ns FROM `{}` WHERE {} \
         ORDER BY time DESC, id DESC LIMIT {limit}",
        table.name,
        filters.sql()
    );
    fetch_json(client, limits, filters.apply(client.query(&sql))).await
}

fn now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

pub(crate) fn cursor_of(row: &Map<String, Json>) -> Result<Cursor, QueryError> {
    let time_ns = row
        .get("_time_ns")
        .and_then(|t| t.as_i64().or_else(|| t.as_str()?.parse().ok()));
    let id = row
        .get("id")
        .and_then(Json::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok());
    match (time_ns, id) {
        (Some(time_ns), Some(id)) => Ok(Cursor { time_ns, id }),
        _ => Err(QueryError::Decode("a row without time or id".into())),
    }
}

/// The row of `table` with `id` (within `tenant` when given), with related rows and spans;
/// `None` when there is no such row.
pub async fn detail(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    table: &TableDef,
    id: uuid::Uuid,
    tenant: Option<&str>,
) -> Result<Option<Detail>, QueryError> {
    let mut filters = Where::default();
    let p = filters.bind("UUID", Value::Str(id.to_string()));
    filters.conditions.push(format!("id = {p}"));
    scope(&mut filters, tenant);
    let sql = format!(
        "SELECT * FROM `{}` WHERE {} LIMIT 1",
        table.name,
        filters.sql()
    );
    let Some(row) = fetch_json(client, limits, filters.apply(client.query(&sql)))
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let trace_id = row
        .get("trace_id")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    let related_id = row
        .get("related_log_id")
        .and_then(Json::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok());
    let mut related = Vec::new();
    if !trace_id.is_empty() {
        let mut filters = Where::default();
        let p = filters.bind("String", Value::Str(trace_id.clone()));
        filters.conditions.push(format!("trace_id = {p}"));
        scope(&mut filters, tenant);
        related.extend(
            related_rows(client, limits, filters, "trace")
                .await?
                .into_iter()
                .filter(|r| r.id != id.to_string()),
        );
        related.truncate(MAX_RELATED as usize);
    }
    if let Some(other) = related_id {
        let mut filters = Where::default();
        let p = filters.bind("UUID", Value::Str(other.to_string()));
        filters.conditions.push(format!("id = {p}"));
        scope(&mut filters, tenant);
        related.extend(related_rows(client, limits, filters, "related_log_id").await?);
    }
    let spans = if trace_id.is_empty() {
        Vec::new()
    } else {
        spans(client, limits, &trace_id).await?
    };
    Ok(Some(Detail {
        row,
        related,
        spans,
    }))
}

fn scope(filters: &mut Where, tenant: Option<&str>) {
    if let Some(tenant) = tenant {
        let p = filters.bind("String", Value::Str(tenant.to_owned()));
        filters.conditions.push(format!("tenant = {p}"));
    }
}

/// Rows of every kind matching `filters` (one `UNION ALL`, each part on its own table).
async fn related_rows(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    mut filters: Where,
    relation: &str,
) -> Result<Vec<Related>, QueryError> {
    let relation = filters.bind("String", Value::Str(relation.to_owned()));
    let condition = filters.sql();
    let parts: Vec<String> = KINDS
        .iter()
        .map(|kind| {
            // No alias may shadow a column: ClickHouse resolves a name in WHERE to the
            // SELECT's alias first, so `toString(id) AS id` turned `id = {p:UUID}` into a
            // String = UUID comparison.
            format!(
                "SELECT '{0}' AS kind, id AS row_id, time AS row_time FROM `{0}` WHERE {condition}",
                kind.name
            )
        })
        .collect();
    let max = filters.bind("UInt32", Value::UInt(u64::from(MAX_RELATED)));
    let sql = format!(
        "SELECT kind, toString(row_id) AS id, toString(row_time) AS time, {relation} AS relation \
         FROM ({}) ORDER BY row_time LIMIT {max}",
        parts.join(" UNION ALL ")
    );
    fetch_rows(client, limits, filters.apply(client.query(&sql))).await
}

/// The spans of a trace, found through `otel_traces`' bloom-filter index on `TraceId`.
/// (Bounding the time by `otel_traces_trace_id_ts` as well returned no rows on the engine:
/// its `DateTime` bounds against the `DateTime64` key pruned every part.)
async fn spans(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    trace_id: &str,
) -> Result<Vec<Span>, QueryError> {
    let mut filters = Where::default();
    let p = filters.bind("String", Value::Str(trace_id.to_owned()));
    let max = filters.bind("UInt32", Value::UInt(u64::from(MAX_RELATED)));
    let sql = format!(
        "SELECT toString(Timestamp) AS timestamp, SpanId AS span_id, ParentSpanId AS parent_span_id, \
         SpanName AS name, toString(SpanKind) AS kind, ServiceName AS service, \
         toUInt64(Duration) AS duration_ns, toString(StatusCode) AS status_code, \
         StatusMessage AS status_message FROM `{traces}` \
         WHERE TraceId = {p} ORDER BY Timestamp LIMIT {max}",
        traces = OTEL_TRACES.name,
    );
    fetch_rows(client, limits, filters.apply(client.query(&sql))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn windows_grow_by_what_the_rows_found_say_the_page_still_needs() {
        // 17 of 51 rows in half an hour: the next window reaches 1.5 hours further.
        assert_eq!(next_reach(HOUR / 2, 17, 34), 2 * HOUR);
        // Nothing found: 32 times further (half an hour, 16.5 hours, 544.5 hours).
        assert_eq!(next_reach(HOUR / 2, 0, 51), 33 * HOUR / 2);
        assert_eq!(next_reach(33 * HOUR / 2, 0, 51), 1089 * HOUR / 2);
        // Almost full: at least twice as far; one row in a long window: at most 17 times.
        assert_eq!(next_reach(HOUR, 50, 1), 2 * HOUR);
        assert_eq!(next_reach(HOUR, 1, 50), 17 * HOUR);
        assert_eq!(next_reach(i64::MAX / 2, 0, 1), i64::MAX);
    }
}
