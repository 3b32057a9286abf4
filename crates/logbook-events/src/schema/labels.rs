//! Business metric labels: which columns of a log kind label its `logbook_<table>_total`
//! counter. A kind declares them once, in its `labels: [...]` (next to its columns); this module
//! reads their values back out of the kind's RowBinary rows, so the counter of a new kind needs
//! no code of its own.

use super::TableDef;
use super::row_binary::read;

/// How a label's value is made from its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelValue {
    /// The column's value as text.
    Column,
    /// An HTTP status code's class: `1xx` … `5xx`, `none` for 0 (no answer) or anything else.
    StatusClass,
}

/// One label of a kind's counter.
#[derive(Debug, Clone, Copy)]
pub struct MetricLabel {
    pub name: &'static str,
    pub column: &'static str,
    pub value: LabelValue,
}

/// The counter's name of a kind: `logbook_<table>_total`.
pub fn counter_name(table: &TableDef) -> String {
    format!("logbook_{}_total", table.name)
}

/// Finds a kind's label values in its RowBinary rows, column by column.
#[derive(Debug)]
pub struct LabelReader {
    /// Type of every column up to the last label column, and which of them are labels.
    columns: Vec<(&'static str, bool)>,
    /// The labels in column order (the order of their values in a key).
    labels: Vec<MetricLabel>,
}

impl LabelReader {
    /// The reader of `table`'s declared labels. Panics on a label naming no column (a test
    /// checks every kind).
    pub fn new(table: &'static TableDef) -> LabelReader {
        let mut columns = Vec::new();
        let mut labels = Vec::new();
        for column in table.all_columns() {
            let label = table.metric_labels.iter().find(|l| l.column == column.name);
            columns.push((column.type_name(), label.is_some()));
            labels.extend(label.copied());
        }
        assert_eq!(
            labels.len(),
            table.metric_labels.len(),
            "{}: a label names no column",
            table.name
        );
        let last = columns
            .iter()
            .rposition(|(_, label)| *label)
            .map_or(0, |i| i + 1);
        columns.truncate(last);
        LabelReader { columns, labels }
    }

    pub fn labels(&self) -> &[MetricLabel] {
        &self.labels
    }

    /// Appends to `key` the RowBinary bytes of the label columns of the row `row` starts
    /// with: a key that compares equal exactly when the label values do. `None` if the row
    /// is cut short or has a type this reader does not know.
    pub fn key(&self, row: &[u8], key: &mut Vec<u8>) -> Option<()> {
        let mut input = row;
        for &(ty, label) in &self.columns {
            let before = input;
            skip(ty, &mut input)?;
            if label {
                key.extend_from_slice(&before[..before.len() - input.len()]);
            }
        }
        Some(())
    }

    /// The label values a [`LabelReader::key`] holds, in the order of [`LabelReader::labels`].
    pub fn values(&self, key: &[u8]) -> Option<Vec<String>> {
        let mut input = key;
        let types = self.columns.iter().filter(|(_, label)| *label);
        types
            .zip(&self.labels)
            .map(|(&(ty, _), label)| {
                let text = text(ty, &mut input)?;
                Some(match label.value {
                    LabelValue::Column => text,
                    LabelValue::StatusClass => status_class(&text).to_owned(),
                })
            })
            .collect()
    }
}

fn status_class(code: &str) -> &'static str {
    match code.parse::<u16>() {
        Ok(100..=199) => "1xx",
        Ok(200..=299) => "2xx",
        Ok(300..=399) => "3xx",
        Ok(400..=499) => "4xx",
        Ok(500..=599) => "5xx",
        _ => "none",
    }
}

/// The byte width of a fixed-size type.
fn width(ty: &str) -> Option<usize> {
    Some(match ty {
        "UInt8" | "Bool" => 1,
        "UInt16" => 2,
        "UInt32" => 4,
        "UInt64" => 8,
        "UUID" => 16,
        _ if ty.starts_with("DateTime64(") => 8,
        _ => return None,
    })
}

/// The type inside `Wrapper(...)`, if `ty` is one.
fn inner<'a>(ty: &'a str, wrapper: &str) -> Option<&'a str> {
    ty.strip_prefix(wrapper)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn is_string(ty: &str) -> bool {
    ty == "String" || inner(ty, "LowCardinality") == Some("String")
}

/// Moves `input` past one value of type `ty`.
fn skip(ty: &str, input: &mut &[u8]) -> Option<()> {
    if let Some(width) = width(ty) {
        read::fixed(input, width)?;
    } else if is_string(ty) {
        read::bytes(input)?;
    } else if let Some(item) = inner(ty, "Array") {
        for _ in 0..read::varint(input)? {
            skip(item, input)?;
        }
    } else if let Some(pair) = inner(ty, "Map") {
        let (key, value) = pair.split_once(", ")?;
        for _ in 0..read::varint(input)? {
            skip(key, input)?;
            skip(value, input)?;
        }
    } else {
        return None;
    }
    Some(())
}

/// One value of a scalar type `ty` as text.
fn text(ty: &str, input: &mut &[u8]) -> Option<String> {
    Some(match ty {
        "UInt8" => u8::from_le_bytes(read::array(input)?).to_string(),
        "UInt16" => u16::from_le_bytes(read::array(input)?).to_string(),
        "UInt32" => u32::from_le_bytes(read::array(input)?).to_string(),
        "UInt64" => u64::from_le_bytes(read::array(input)?).to_string(),
        "Bool" => (read::array::<1>(input)?[0] != 0).to_string(),
        _ if is_string(ty) => read::str(input)?.to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ApiCall, FieldValue, KINDS, LogKind, RowId, Ts};

    #[test]
    fn every_kind_declares_labels_of_filter_columns_it_has() {
        for kind in KINDS {
            let reader = LabelReader::new(kind);
            for label in reader.labels() {
                let column = kind.column(label.column).unwrap();
                assert_eq!(
                    column.role,
                    crate::schema::Role::Filter,
                    "{}.{}",
                    kind.name,
                    column.name
                );
                // Low cardinality by construction: no free-text columns.
                assert!(
                    !column.ch_type.starts_with("String CODEC"),
                    "{}.{} is free text",
                    kind.name,
                    column.name
                );
            }
        }
    }

    #[test]
    fn labels_are_read_from_a_row_with_the_status_class() {
        let call = ApiCall {
            id: RowId(uuid::Uuid::now_v7()),
            time: Ts(7),
            bot: "helpdesk".into(),
            application: "Zendesk".into(),
            method: "POST".into(),
            url: "https://example.com/x".into(),
            status_code: 503,
            outcome: "error".into(),
            ..ApiCall::default()
        };
        let mut row = Vec::new();
        call.write_row(&mut row);
        let reader = LabelReader::new(ApiCall::TABLE);
        let names: Vec<_> = reader.labels().iter().map(|l| l.name).collect();
        assert_eq!(names, ["bot", "method", "status_class", "outcome"]);
        let mut key = Vec::new();
        reader.key(&row, &mut key).unwrap();
        assert_eq!(
            reader.values(&key).unwrap(),
            ["helpdesk", "POST", "5xx", "error"]
        );
        // A row cut short gives no key.
        assert!(reader.key(&row[..20], &mut Vec::new()).is_none());
    }

    /// Every kind's default row (arrays and maps empty) gives a key, and its values read back.
    #[test]
    fn every_kind_reads_its_own_rows() {
        macro_rules! check {
            ($($kind:ident),*) => {$({
                let mut row = Vec::new();
                crate::schema::$kind::default().write_row(&mut row);
                let reader = LabelReader::new(crate::schema::$kind::TABLE);
                let mut key = Vec::new();
                reader.key(&row, &mut key).expect(stringify!($kind));
                let values = reader.values(&key).expect(stringify!($kind));
                assert_eq!(values.len(), reader.labels().len());
            })*};
        }
        crate::for_each_kind!(check);
    }

    #[test]
    fn arrays_and_maps_are_skipped() {
        let mut row = Vec::new();
        vec!["a".to_owned(), "bc".to_owned()].write(&mut row);
        vec![("k".to_owned(), "v".to_owned())].write(&mut row);
        7u16.write(&mut row);
        let mut input = row.as_slice();
        skip("Array(LowCardinality(String))", &mut input).unwrap();
        skip("Map(LowCardinality(String), String)", &mut input).unwrap();
        assert_eq!(text("UInt16", &mut input).as_deref(), Some("7"));
        assert!(input.is_empty());
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class("0"), "none");
        assert_eq!(status_class("199"), "1xx");
        assert_eq!(status_class("404"), "4xx");
        assert_eq!(status_class("600"), "none");
    }
}
