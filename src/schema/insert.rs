//! What an insert of a table sends: its column list and the `RowBinaryWithNamesAndTypes`
//! header, derived from the [`TableDef`]. The header makes ClickHouse refuse rows whose column
//! types no longer match the table instead of misreading them.

use super::TableDef;
use super::row_binary::{put_str, put_varint};

/// The columns an insert names: every column but those ClickHouse computes, with `Nested`
/// columns as their sub-column arrays.
pub fn insert_columns(table: &TableDef) -> Vec<(String, String)> {
    let mut columns = Vec::new();
    for column in table.all_columns() {
        if column.ch_type.contains(" DEFAULT ")
            || column.ch_type.contains(" MATERIALIZED ")
            || column.ch_type.contains(" ALIAS ")
        {
            continue;
        }
        let ty = column.type_name();
        match ty.strip_prefix("Nested(").and_then(|t| t.strip_suffix(')')) {
            Some(fields) => {
                for field in split_top_level(fields) {
                    let (name, ty) = field.split_once(' ').expect("a Nested field has a type");
                    columns.push((format!("{}.{name}", column.name), format!("Array({ty})")));
                }
            }
            None => columns.push((column.name.to_owned(), ty.to_owned())),
        }
    }
    columns
}

/// `a T, b Map(K, V)` split at the commas outside parentheses.
fn split_top_level(list: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts
}

/// `INSERT INTO table (columns…) FORMAT RowBinaryWithNamesAndTypes`: naming the columns makes
/// a column missing from the table an error rather than skipped.
pub fn insert_statement(table: &TableDef) -> String {
    let names: Vec<String> = insert_columns(table)
        .into_iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    format!(
        "INSERT INTO `{}` ({}) FORMAT RowBinaryWithNamesAndTypes",
        table.name,
        names.join(", ")
    )
}

/// The `RowBinaryWithNamesAndTypes` header: the column count, the names, the types.
pub fn header(table: &TableDef) -> Vec<u8> {
    let columns = insert_columns(table);
    let mut out = Vec::new();
    put_varint(&mut out, columns.len() as u64);
    for (name, _) in &columns {
        put_str(&mut out, name);
    }
    for (_, ty) in &columns {
        put_str(&mut out, ty);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{OTEL_LOGS, OTEL_TRACES};

    #[test]
    fn computed_columns_are_not_sent_and_nested_ones_are_flattened() {
        let logs = insert_columns(&OTEL_LOGS);
        assert!(logs.iter().all(|(name, _)| name != "TimestampTime"));
        assert_eq!(logs[0], ("Timestamp".into(), "DateTime64(9)".into()));
        let spans = insert_columns(&OTEL_TRACES);
        assert!(spans.contains(&(
            "Events.Attributes".into(),
            "Array(Map(LowCardinality(String), String))".into()
        )));
        assert!(spans.contains(&("Links.TraceState".into(), "Array(String)".into())));
        assert!(insert_statement(&OTEL_LOGS).starts_with("INSERT INTO `otel_logs` (`Timestamp`, "));
        let header = header(&OTEL_LOGS);
        assert_eq!(usize::from(header[0]), logs.len());
    }
}
