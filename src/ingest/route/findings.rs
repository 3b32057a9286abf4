//! What the router found wrong with a record beside the rows it made: why a record got no
//! typed row, `logbook.*` names that name nothing, deprecated spellings. Each finding is
//! written on the record's own `otel_logs` (or `otel_traces`) row, as `logbook.rejected` or
//! `logbook.warnings`, so that every rejected record can be found with SQL; the pipeline
//! counts them by sending service and reports them as `monitoring_events`.

use std::fmt;

use crate::ingest::decode::KeyValue;
use crate::schema::{Deprecated, KINDS, Rejection, TableDef, Ts};

/// The attribute naming why a record got no typed row: `<table>.<column>: <reason>`.
pub const REJECTED: &str = "logbook.rejected";
/// The attribute listing what logbook ignored or read under an old name, `; `-separated.
pub const WARNINGS: &str = "logbook.warnings";

/// `logbook.*` attributes any kind may carry without being one of its columns.
const ALWAYS_KNOWN: &[&str] = &["logbook.id", "logbook.tenant", REJECTED, WARNINGS];

/// One thing found about one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The sending service (`service.name`).
    pub service: String,
    pub time: Ts,
    /// The record's (or span's) index in its request.
    pub record: u64,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The record named a kind but does not fit it: no typed row.
    Rejected(Rejection),
    /// The event name is in the `logbook.` namespace but names no kind: no typed row.
    UnknownEvent {
        name: String,
        closest: Option<&'static str>,
    },
    /// A `logbook.*` attribute the kind has no column for: ignored.
    UnknownAttribute {
        table: &'static str,
        name: String,
        closest: Option<&'static str>,
    },
    /// An old attribute name or value, still accepted.
    Deprecated(Deprecated),
}

impl Problem {
    /// Whether the record got no typed row because of it.
    pub fn rejects(&self) -> bool {
        matches!(self, Problem::Rejected(_) | Problem::UnknownEvent { .. })
    }

    /// The table (or, for an unknown event name, `event.name`) and column it is about.
    pub fn place(&self) -> (&'static str, &str) {
        match self {
            Problem::Rejected(r) => (r.table, r.column),
            Problem::UnknownEvent { .. } => ("", "event.name"),
            Problem::UnknownAttribute { table, name, .. } => (table, name),
            Problem::Deprecated(d) => (d.table, d.column),
        }
    }

    /// A short label for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Rejected(_) => "rejected",
            Problem::UnknownEvent { .. } => "unknown_event",
            Problem::UnknownAttribute { .. } => "unknown_attribute",
            Problem::Deprecated(_) => "deprecated",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suggest = |f: &mut fmt::Formatter<'_>, closest: &Option<&str>| match closest {
            Some(name) => write!(f, " (did you mean {name}?)"),
            None => Ok(()),
        };
        match self {
            Problem::Rejected(rejection) => write!(f, "{rejection}"),
            Problem::UnknownEvent { name, closest } => {
                write!(f, "event.name: {name} names no log kind")?;
                suggest(f, closest)
            }
            Problem::UnknownAttribute {
                table,
                name,
                closest,
            } => {
                write!(
                    f,
                    "{table}: {name} is not an attribute of this kind, ignored"
                )?;
                suggest(f, closest)
            }
            Problem::Deprecated(d) => write!(
                f,
                "{}.{}: {} is deprecated, send {}",
                d.table, d.column, d.used, d.instead
            ),
        }
    }
}

/// The nearest of `candidates` to `name` by edit distance, if near enough to be a typo.
pub fn closest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let (distance, best) = candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .min()?;
    (distance <= (name.len() / 3).max(3)).then_some(best)
}

/// The finding for an event name in the `logbook.` namespace that names no kind.
pub fn unknown_event(name: &str) -> Option<Problem> {
    name.starts_with("logbook.").then(|| Problem::UnknownEvent {
        name: name.to_owned(),
        closest: closest(name, KINDS.iter().filter_map(|k| k.event_name)),
    })
}

/// Findings for the `logbook.*` attributes of a record of `table` that it has no column for.
pub fn unknown_attributes(table: &'static TableDef, attributes: &[KeyValue<'_>]) -> Vec<Problem> {
    attributes
        .iter()
        .filter(|kv| kv.key.starts_with("logbook.") && !ALWAYS_KNOWN.contains(&kv.key))
        .filter(|kv| !table.attribute_names().any(|known| known == kv.key))
        .map(|kv| Problem::UnknownAttribute {
            table: table.name,
            name: kv.key.to_owned(),
            closest: closest(kv.key, table.attribute_names()),
        })
        .collect()
}

/// The `logbook.rejected` and `logbook.warnings` values of one record's findings.
pub fn attributes(findings: &[Finding]) -> Vec<(&'static str, String)> {
    let join = |rejects: bool| {
        findings
            .iter()
            .filter(|f| f.problem.rejects() == rejects)
            .map(|f| f.problem.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    [(REJECTED, join(true)), (WARNINGS, join(false))]
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::AnyValue;
    use crate::schema::LogKind;

    #[test]
    fn a_table_name_as_event_name_suggests_the_kind() {
        let problem = unknown_event("logbook.api_calls").unwrap();
        assert_eq!(
            problem.to_string(),
            "event.name: logbook.api_calls names no log kind (did you mean logbook.api_call?)"
        );
        assert!(problem.rejects());
        assert!(unknown_event("checkout.done").is_none());
        assert!(matches!(
            unknown_event("logbook.something_else_entirely"),
            Some(Problem::UnknownEvent { closest: None, .. })
        ));
    }

    #[test]
    fn misspelled_attributes_are_found_with_the_closest_name() {
        let table = crate::schema::ApiCall::TABLE;
        let attributes = [
            KeyValue {
                key: "logbook.duraton_ms",
                value: AnyValue::Int(5),
            },
            KeyValue {
                key: "logbook.bot.name",
                value: AnyValue::String("b"),
            },
            KeyValue {
                key: "logbook.id",
                value: AnyValue::String("x"),
            },
            KeyValue {
                key: "custom.thing",
                value: AnyValue::Int(1),
            },
        ];
        let found = unknown_attributes(table, &attributes);
        assert_eq!(
            found,
            vec![Problem::UnknownAttribute {
                table: "api_calls",
                name: "logbook.duraton_ms".into(),
                closest: Some("logbook.duration_ms"),
            }]
        );
        assert!(!found[0].rejects());
    }
}
