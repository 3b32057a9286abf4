//! The ClickHouse schema: the log kinds of [`logbook_events::schema`] (defined once, shared
//! with the services that emit them), the OpenTelemetry tables (`otel.rs`), and what derives
//! from both: the DDL (`ddl.rs`) and the data dictionary (`dictionary.rs`, docs/schema.md).

pub mod auth;
pub mod ddl;
pub mod dictionary;
pub mod insert;
pub mod notify;
mod otel;
pub mod settings;

pub use logbook_events::schema::*;
pub use otel::{ERRORS, OTEL_LOGS, OTEL_TRACES, OTEL_TRACES_TRACE_ID_TS, OtelLogRow, OtelSpanRow};

/// Every table logbook owns, in creation order.
pub fn tables() -> impl Iterator<Item = &'static TableDef> {
    [&OTEL_LOGS, &OTEL_TRACES, &OTEL_TRACES_TRACE_ID_TS, &ERRORS]
        .into_iter()
        .chain(KINDS.iter().copied())
        .chain([
            &settings::SETTINGS,
            &notify::NOTIFICATIONS,
            &notify::NOTIFY_STATE,
            &notify::NOTIFY_CLAIMS,
            &auth::API_TOKENS,
        ])
}

/// Looks a table up by name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    tables().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otel_type_name_strips_codec() {
        assert_eq!(
            OTEL_LOGS.column("TimestampTime").unwrap().type_name(),
            "DateTime"
        );
    }

    #[test]
    fn table_and_event_names_are_unique() {
        let mut names: Vec<_> = tables().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), tables().count());
        let mut events: Vec<_> = tables().filter_map(|t| t.event_name).collect();
        events.sort();
        events.dedup();
        assert_eq!(events.len(), KINDS.len());
    }

    #[test]
    fn row_struct_fields_match_the_table_columns() {
        fn names<T: clickhouse::Row>() -> Vec<&'static str> {
            T::COLUMN_NAMES.to_vec()
        }
        let from_defs = |t: &TableDef| t.all_columns().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names::<ApiCall>(), from_defs(ApiCall::TABLE));
        assert_eq!(names::<ServerLog>(), from_defs(ServerLog::TABLE));
        assert_eq!(names::<MailMessage>(), from_defs(MailMessage::TABLE));
    }
}
