//! Filters of any log kind, compiled to SQL with bound parameters.
//!
//! What a caller may filter on comes from the kind's definition alone: every `Filter` column
//! is an equality filter (repeat the parameter for "any of"), numeric ones also take
//! `<column>_min` / `<column>_max`, enumerations accept only their `one_of` values, and `q`
//! searches the `Search` columns through their token indexes. SQL text is made only of the
//! definition's own identifiers; every value the caller gives travels as a ClickHouse query
//! parameter (`{p0:String}`), never inside the SQL.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::QueryError;
use crate::schema::{ColumnDef, Role, TableDef};

/// Parameters every list accepts besides the kind's own filters.
pub const COMMON_PARAMS: &[(&str, &str)] = &[
    ("from", "Oldest time (RFC 3339), inclusive."),
    ("to", "Newest time (RFC 3339), exclusive."),
    (
        "q",
        "Keyword search over the searchable columns: every word must occur as a whole token (case-sensitive), and the text as typed.",
    ),
    ("limit", "Page size."),
    ("cursor", "`next_cursor` of the previous page."),
];

/// A bound parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    UInt(u64),
    Int(i64),
    Bool(bool),
}

/// A condition list with its parameters: `conditions` are ANDed.
#[derive(Debug, Default, Clone)]
pub struct Where {
    pub conditions: Vec<String>,
    pub params: Vec<(String, Value)>,
}

impl Where {
    /// Binds `value` and returns its placeholder, e.g. `{p3:String}`.
    pub fn bind(&mut self, ty: &str, value: Value) -> String {
        let name = format!("p{}", self.params.len());
        let placeholder = format!("{{{name}:{ty}}}");
        self.params.push((name, value));
        placeholder
    }

    pub fn sql(&self) -> String {
        if self.conditions.is_empty() {
            "1".to_owned()
        } else {
            self.conditions.join(" AND ")
        }
    }

    /// Applies the parameters to a query.
    pub fn apply(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        for (name, value) in &self.params {
            query = match value {
                Value::Str(v) => query.param(name, v),
                Value::UInt(v) => query.param(name, v),
                Value::Int(v) => query.param(name, v),
                Value::Bool(v) => query.param(name, v),
            };
        }
        query
    }
}

/// What kind of filter a column takes, from its ClickHouse type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterType {
    Text,
    Number,
    Bool,
}

/// The filter type of a `Filter` column, `None` for columns that are not filters here
/// (`time` is filtered by `from`/`to`).
pub fn filter_type(column: &ColumnDef) -> Option<FilterType> {
    if column.role != Role::Filter || column.name == "time" {
        return None;
    }
    let ty = column.type_name();
    let ty = ty
        .strip_prefix("LowCardinality(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(ty);
    match ty {
        "String" => Some(FilterType::Text),
        "Bool" => Some(FilterType::Bool),
        t if t.starts_with("UInt") || t.starts_with("Int") => Some(FilterType::Number),
        _ => None,
    }
}

/// The columns of `table` a caller can filter on.
pub fn filter_columns(table: &TableDef) -> impl Iterator<Item = (&'static ColumnDef, FilterType)> {
    table
        .all_columns()
        .filter_map(|c| filter_type(c).map(|t| (c, t)))
}

/// The longest search text accepted, and the most words in it.
const MAX_SEARCH_CHARS: usize = 200;
const MAX_SEARCH_WORDS: usize = 8;

/// A list request, parsed and checked against the kind.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub filters: Where,
    pub limit: u32,
    pub cursor: Option<Cursor>,
    /// Oldest time asked for (`from`), in nanoseconds.
    pub oldest_ns: Option<i64>,
    /// Newest time asked for (`to` or the cursor's), in nanoseconds; `None` for "up to now".
    pub newest_ns: Option<i64>,
}

/// Where a page starts: just older than this row, in `(time, id)` descending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time_ns: i64,
    pub id: uuid::Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.time_ns, self.id.simple())
    }

    /// Keeps the rows after this one in `(time_column, id)` descending order.
    pub fn older_rows(&self, filters: &mut Where, time_column: &str) {
        let t = filters.bind("Int64", Value::Int(self.time_ns));
        let id = filters.bind("UUID", Value::Str(self.id.to_string()));
        filters.conditions.push(format!(
            "{time_column} <= fromUnixTimestamp64Nano({t}) AND ({time_column} < fromUnixTimestamp64Nano({t}) OR id < {id})"
        ));
    }

    pub fn decode(text: &str) -> Result<Cursor, QueryError> {
        let bad = || QueryError::Invalid(format!("cursor {text:?} is not one this API returned"));
        let (time, id) = text.split_once('_').ok_or_else(bad)?;
        Ok(Cursor {
            time_ns: time.parse().map_err(|_| bad())?,
            id: uuid::Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

/// Parses query-string pairs into a checked list request for `table`. `tenant`, when given,
/// is ANDed whatever the pairs say. `max_limit` bounds the page size.
pub fn parse_list(
    table: &TableDef,
    pairs: &[(String, String)],
    tenant: Option<&str>,
    default_limit: u32,
    max_limit: u32,
) -> Result<ListRequest, QueryError> {
    let mut filters = Where::default();
    let mut limit = default_limit;
    let mut cursor = None;
    let (mut oldest_ns, mut newest_ns) = (None::<i64>, None::<i64>);
    let mut equal: Vec<(&'static ColumnDef, Vec<String>)> = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "from" => {
                let t = timestamp(key, value)?;
                oldest_ns = oldest_ns.max(Some(t));
                let p = filters.bind("Int64", Value::Int(t));
                filters
                    .conditions
                    .push(format!("time >= fromUnixTimestamp64Nano({p})"));
            }
            "to" => {
                let t = timestamp(key, value)?;
                newest_ns = Some(newest_ns.map_or(t, |n| n.min(t)));
                let p = filters.bind("Int64", Value::Int(t));
                filters
                    .conditions
                    .push(format!("time < fromUnixTimestamp64Nano({p})"));
            }
            "q" => search(table, value, &mut filters)?,
            "limit" => limit = page_limit(value, max_limit)?,
            "cursor" => cursor = Some(Cursor::decode(value)?),
            _ => {
                let (name, bound) = match key.rsplit_once('_') {
                    Some((name, "min")) => (name, Some(">=")),
                    Some((name, "max")) => (name, Some("<=")),
                    _ => (key.as_str(), None),
                };
                let column = filter_columns(table)
                    .find(|(c, t)| c.name == name && (bound.is_none() || *t == FilterType::Number));
                let Some((column, ty)) = column else {
                    return Err(unknown_parameter(table, key));
                };
                let value = typed(column, ty, value)?;
                match bound {
                    Some(op) => {
                        let p = filters.bind(column.type_name(), value);
                        filters
                            .conditions
                            .push(format!("`{}` {op} {p}", column.name));
                    }
                    None => match equal.iter_mut().find(|(c, _)| c.name == column.name) {
                        Some((_, values)) => values.push(key.clone()),
                        None => equal.push((column, vec![key.clone()])),
                    },
                }
            }
        }
    }
    // Equality filters: repeated parameters mean "any of".
    for (column, _) in &equal {
        let ty = filter_type(column).expect("a filter column");
        let mut any = Vec::new();
        for (key, value) in pairs.iter().filter(|(k, _)| k == column.name) {
            let value = typed(column, ty, value).map_err(|e| match e {
                QueryError::Invalid(m) => QueryError::Invalid(format!("{key}: {m}")),
                other => other,
            })?;
            // Rows stored before a value was renamed keep its older spelling.
            let older = column.old_values.iter().filter(|(_, new)| match &value {
                Value::Str(v) => new == v,
                _ => false,
            });
            for (old, _) in older {
                let p = filters.bind(bind_type(column), Value::Str((*old).to_owned()));
                any.push(format!("`{}` = {p}", column.name));
            }
            let p = filters.bind(bind_type(column), value);
            any.push(format!("`{}` = {p}", column.name));
        }
        filters.conditions.push(format!("({})", any.join(" OR ")));
    }
    if let Some(tenant) = tenant {
        let p = filters.bind("String", Value::Str(tenant.to_owned()));
        filters.conditions.push(format!("tenant = {p}"));
    }
    if let Some(cursor) = &cursor {
        cursor.older_rows(&mut filters, "time");
        newest_ns = Some(newest_ns.map_or(cursor.time_ns, |n| n.min(cursor.time_ns)));
    }
    Ok(ListRequest {
        filters,
        limit,
        cursor,
        oldest_ns,
        newest_ns,
    })
}

/// The type a column's value is bound as (`LowCardinality` is storage, not type).
fn bind_type(column: &ColumnDef) -> &'static str {
    let ty = column.type_name();
    ty.strip_prefix("LowCardinality(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(ty)
}

fn unknown_parameter(table: &TableDef, key: &str) -> QueryError {
    let mut known: Vec<String> = COMMON_PARAMS.iter().map(|(k, _)| (*k).to_owned()).collect();
    for (column, ty) in filter_columns(table) {
        known.push(column.name.to_owned());
        if ty == FilterType::Number {
            known.push(format!("{}_min", column.name));
            known.push(format!("{}_max", column.name));
        }
    }
    QueryError::Invalid(format!(
        "unknown parameter {key:?}; {} accepts {}",
        table.name,
        known.join(", ")
    ))
}

fn typed(column: &ColumnDef, ty: FilterType, value: &str) -> Result<Value, QueryError> {
    let name = column.name;
    match ty {
        FilterType::Text => {
            // An older spelling (`failed`) means what it is stored as now (`error`).
            let value = column
                .old_values
                .iter()
                .find(|(old, _)| *old == value)
                .map_or(value, |(_, new)| *new);
            if !column.one_of.is_empty() && !column.one_of.contains(&value) {
                return Err(QueryError::Invalid(format!(
                    "{name} must be one of {}, not {value:?}",
                    column.one_of.join(", ")
                )));
            }
            Ok(Value::Str(value.to_owned()))
        }
        FilterType::Bool => match value {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(QueryError::Invalid(format!(
                "{name} must be true or false, not {value:?}"
            ))),
        },
        FilterType::Number => {
            let max = match bind_type(column) {
                "UInt8" => u64::from(u8::MAX),
                "UInt16" => u64::from(u16::MAX),
                "UInt32" => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            value
                .parse::<u64>()
                .ok()
                .filter(|v| *v <= max)
                .map(Value::UInt)
                .ok_or_else(|| {
                    QueryError::Invalid(format!(
                        "{name} must be a whole number from 0 to {max}, not {value:?}"
                    ))
                })
        }
    }
}

/// A page size the caller asked for, from 1 to `max_limit`.
pub(crate) fn page_limit(value: &str, max_limit: u32) -> Result<u32, QueryError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|l| (1..=max_limit).contains(l))
        .ok_or_else(|| {
            QueryError::Invalid(format!(
                "limit must be a whole number from 1 to {max_limit}"
            ))
        })
}

pub(crate) fn timestamp(key: &str, value: &str) -> Result<i64, QueryError> {
    let t = OffsetDateTime::parse(value, &Rfc3339).map_err(|e| {
        QueryError::Invalid(format!(
            "{key} must be an RFC 3339 time such as 2026-11-30T12:00:00Z, not {value:?} ({e})"
        ))
    })?;
    i64::try_from(t.unix_timestamp_nanos())
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| QueryError::Invalid(format!("{key} is out of range")))
}

/// The words of a search text as ClickHouse's token index splits them: runs of ASCII letters
/// and digits and of non-ASCII characters.
pub fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// `q`: each word must be a token of some searchable column (`hasToken`, which the columns'
/// `text` indexes answer from their posting lists, or their token bloom filters on servers
/// without `text` indexes), and the whole text must occur as typed (`position`, checked only on
/// the rows the index let through).
fn search(table: &TableDef, text: &str, filters: &mut Where) -> Result<(), QueryError> {
    let columns: Vec<&str> = table
        .all_columns()
        .filter(|c| c.role == Role::Search)
        .map(|c| c.name)
        .collect();
    if columns.is_empty() {
        return Err(QueryError::Invalid(format!(
            "{} has no searchable columns",
            table.name
        )));
    }
    if text.chars().count() > MAX_SEARCH_CHARS {
        return Err(QueryError::Invalid(format!(
            "q is longer than {MAX_SEARCH_CHARS} characters"
        )));
    }
    let words = words(text);
    if words.is_empty() {
        return Err(QueryError::Invalid(
            "q needs at least one word (letters or digits): the search uses the token index".into(),
        ));
    }
    if words.len() > MAX_SEARCH_WORDS {
        return Err(QueryError::Invalid(format!(
            "q has more than {MAX_SEARCH_WORDS} words"
        )));
    }
    for word in &words {
        let p = filters.bind("String", Value::Str((*word).to_owned()));
        let any: Vec<String> = columns
            .iter()
            .map(|c| format!("hasToken(`{c}`, {p})"))
            .collect();
        filters.conditions.push(format!("({})", any.join(" OR ")));
    }
    if words.len() > 1 || words[0] != text {
        let p = filters.bind("String", Value::Str(text.to_owned()));
        let any: Vec<String> = columns
            .iter()
            .map(|c| format!("position(`{c}`, {p}) > 0"))
            .collect();
        filters.conditions.push(format!("({})", any.join(" OR ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ApiCall, LogKind, MailMessage, TaskSchedulerRun};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(table: &TableDef, list: &[(&str, &str)]) -> Result<ListRequest, QueryError> {
        parse_list(table, &pairs(list), None, 50, 1000)
    }

    #[test]
    fn values_never_reach_the_sql_text() {
        let evil = "x' OR 1=1 -- {p0:String} \\'; DROP TABLE api_calls";
        let request = parse(
            ApiCall::TABLE,
            &[
                ("bot", evil),
                ("application", evil),
                ("q", "x' OR 1=1; DROP --"),
            ],
        )
        .unwrap();
        let sql = request.filters.sql();
        assert!(!sql.contains("DROP") && !sql.contains("1=1"), "{sql}");
        assert!(
            request
                .filters
                .params
                .iter()
                .any(|(_, v)| *v == Value::Str(evil.into()))
        );
    }

    #[test]
    fn repeated_filter_means_any_of_and_enumerations_are_checked() {
        let request = parse(
            MailMessage::TABLE,
            &[("status", "sent"), ("status", "pending")],
        )
        .unwrap();
        assert_eq!(
            request.filters.sql(),
            "(`status` = {p0:String} OR `status` = {p1:String})"
        );
        let err = parse(MailMessage::TABLE, &[("status", "lost")]).unwrap_err();
        assert!(
            err.to_string().contains("pending, processed, sent, error"),
            "{err}"
        );
    }

    #[test]
    fn numbers_take_ranges_and_are_checked() {
        let request = parse(ApiCall::TABLE, &[("status_code_min", "500")]).unwrap();
        assert_eq!(request.filters.sql(), "`status_code` >= {p0:UInt16}");
        assert!(parse(ApiCall::TABLE, &[("status_code", "70000")]).is_err());
        assert!(parse(ApiCall::TABLE, &[("status_code", "5xx")]).is_err());
        assert!(parse(ApiCall::TABLE, &[("bot_min", "a")]).is_err());
        let forced = parse(TaskSchedulerRun::TABLE, &[("forced", "true")]).unwrap();
        assert_eq!(forced.filters.params[0].1, Value::Bool(true));
    }

    #[test]
    fn a_renamed_value_matches_both_spellings() {
        for asked in ["error", "failed"] {
            let request = parse(MailMessage::TABLE, &[("status", asked)]).unwrap();
            assert_eq!(
                request.filters.sql(),
                "(`status` = {p0:String} OR `status` = {p1:String})"
            );
            let values: Vec<_> = request.filters.params.iter().map(|(_, v)| v).collect();
            assert_eq!(
                values,
                [&Value::Str("failed".into()), &Value::Str("error".into())]
            );
        }
    }

    #[test]
    fn unknown_parameters_are_named_with_the_known_ones() {
        let err = parse(ApiCall::TABLE, &[("url", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"url\"") && err.contains("status_code_min"),
            "{err}"
        );
    }

    #[test]
    fn search_uses_tokens_and_the_phrase() {
        let request = parse(ApiCall::TABLE, &[("q", "timeout, upstream")]).unwrap();
        let sql = request.filters.sql();
        assert!(
            sql.contains("hasToken(`response_body`, {p0:String})"),
            "{sql}"
        );
        assert!(sql.contains("hasToken(`url`, {p1:String})"), "{sql}");
        assert!(
            sql.contains("position(`request_body`, {p2:String}) > 0"),
            "{sql}"
        );
        assert_eq!(words("é-ü ok"), ["é", "ü", "ok"]);
        assert!(parse(ApiCall::TABLE, &[("q", "'; --")]).is_err());
    }

    #[test]
    fn tenant_scope_is_added_whatever_the_filters() {
        let request = parse_list(
            ApiCall::TABLE,
            &pairs(&[("tenant", "other")]),
            Some("mine"),
            50,
            1000,
        )
        .unwrap();
        let sql = request.filters.sql();
        assert!(sql.contains("(`tenant` = {p0:String})") && sql.ends_with("tenant = {p1:String}"));
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let cursor = Cursor {
            time_ns: 1_764_000_000_000_000_001,
            id: uuid::Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(Cursor::decode("12_x").is_err());
        assert!(parse(ApiCall::TABLE, &[("limit", "0")]).is_err());
        assert!(parse(ApiCall::TABLE, &[("limit", "1001")]).is_err());
        assert!(parse(ApiCall::TABLE, &[("from", "yesterday")]).is_err());
    }
}
