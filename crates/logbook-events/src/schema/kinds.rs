//! Every log kind of the reference documents, each defined once.
//!
//! A column line reads: `name: RustType = "ClickHouse type", source, presence, role`, with an
//! optional `one_of [...]` for enumerations, `renamed_from [...]` for attribute names it was
//! read from before and `old_values ["old" => "new"]` for old spellings of its values (both
//! still accepted, counted as deprecated). A kind also says how its typed events read in a
//! log viewer: `summary` (the one-line body the emitter sends) and `severity` (from the
//! row's outcome). Attribute names follow the OpenTelemetry semantic
//! conventions where one exists (`http.request.method`, `url.full`, `user.name`,
//! `exception.message`, …) and the `logbook.*` namespace otherwise (docs/schema.md lists them).

use super::{
    ColumnDef, ERROR, ErrorMapping, FieldValue, INFO, INSERTED_TABLE_SETTINGS, LabelValue, LogKind,
    MetricLabel, Presence, RecordView, Rejection, Role, RowId, Source, TableDef, Ts, WARN, attr,
    days, encode,
};

/// A label of a kind's counter: a column (`bot`) or a value derived from one
/// (`status_class(status_code)`).
macro_rules! metric_label {
    ($column:ident) => {
        MetricLabel {
            name: stringify!($column),
            column: stringify!($column),
            value: LabelValue::Column,
        }
    };
    (status_class, $column:ident) => {
        MetricLabel {
            name: "status_class",
            column: stringify!($column),
            value: LabelValue::StatusClass,
        }
    };
}

macro_rules! log_kind {
    (
        $(#[doc = $kdoc:literal])*
        $name:ident {
            table: $table:literal,
            event: $event:literal,
            reference: $reference:literal,
            ttl: $ttl:expr,
            order_by: $order_by:literal,
            errors: $errors:expr,
            summary: $summary:expr,
            severity: $severity:expr,
            labels: [$($label:ident $(($label_column:ident))?),* $(,)?] $(,)?
        }
        columns {
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $ty:ty = $ch:literal, $source:expr, $presence:ident, $role:ident
                    $(, one_of [$($allowed:literal),* $(,)?])?
                    $(, renamed_from [$($old_name:literal),* $(,)?])?
                    $(, old_values [$($old_value:literal => $new_value:literal),* $(,)?])?;
            )*
        }
    ) => {
        $(#[doc = $kdoc])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "clickhouse", derive(clickhouse::Row))]
        pub struct $name {
            pub id: RowId,
            pub time: Ts,
            pub tenant: String,
            pub service: String,
            pub environment: String,
            pub trace_id: String,
            pub span_id: String,
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl LogKind for $name {
            const TABLE: &'static TableDef = &TableDef {
                name: $table,
                doc: concat!($($kdoc),*),
                reference: $reference,
                event_name: Some($event),
                common_columns: true,
                columns: &[$(ColumnDef {
                    name: stringify!($field),
                    ch_type: $ch,
                    doc: concat!($($doc),*),
                    source: Some($source),
                    presence: Presence::$presence,
                    role: Role::$role,
                    one_of: &[$($($allowed),*)?],
                    renamed_from: &[$($($old_name),*)?],
                    old_values: &[$($(($old_value, $new_value)),*)?],
                }),*],
                indexes: &[],
                engine: "MergeTree",
                partition_by: "toDate(time)",
                primary_key: None,
                order_by: $order_by,
                ttl_from: "toDateTime(time)",
                default_ttl: $ttl,
                settings: INSERTED_TABLE_SETTINGS,
                errors: $errors,
                metric_labels: &[$(metric_label!($label $(, $label_column)?)),*],
            };

            fn summary(&self) -> String {
                let summary: fn(&Self) -> String = $summary;
                summary(self)
            }

            fn severity(&self) -> u8 {
                let severity: fn(&Self) -> u8 = $severity;
                severity(self)
            }

            fn encode_record(record: &dyn RecordView, out: &mut Vec<u8>) -> Result<(), Rejection> {
                let table = Self::TABLE;
                let start = out.len();
                // Columns are written in declaration order, the order of all_columns().
                let mut columns = table.all_columns();
                let mut next = || columns.next().expect("one column per field");
                let mut fields = || -> Result<(), Rejection> {
                    encode::<RowId>(record, table, next(), out)?;
                    encode::<Ts>(record, table, next(), out)?;
                    encode::<String>(record, table, next(), out)?;
                    encode::<String>(record, table, next(), out)?;
                    encode::<String>(record, table, next(), out)?;
                    encode::<String>(record, table, next(), out)?;
                    encode::<String>(record, table, next(), out)?;
                    $( encode::<$ty>(record, table, next(), out)?; )*
                    Ok(())
                };
                let result = fields();
                if result.is_err() {
                    out.truncate(start);
                }
                result
            }

            fn write_row(&self, out: &mut Vec<u8>) {
                self.id.write(out);
                self.time.write(out);
                self.tenant.write(out);
                self.service.write(out);
                self.environment.write(out);
                self.trace_id.write(out);
                self.span_id.write(out);
                $( self.$field.write(out); )*
            }

            fn read_row(input: &mut &[u8]) -> Option<Self> {
                Some($name {
                    id: FieldValue::read(input)?,
                    time: FieldValue::read(input)?,
                    tenant: FieldValue::read(input)?,
                    service: FieldValue::read(input)?,
                    environment: FieldValue::read(input)?,
                    trace_id: FieldValue::read(input)?,
                    span_id: FieldValue::read(input)?,
                    $( $field: FieldValue::read(input)?, )*
                })
            }
        }
    };
}

macro_rules! registry {
    ($($kind:ident),* $(,)?) => {
        /// Every log kind's table, in the order of docs/schema.md.
        pub const KINDS: &[&TableDef] = &[$(<$kind as LogKind>::TABLE),*];

        /// A row of any log kind, as the router hands it on.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TypedRow { $($kind($kind)),* }

        /// Each kind's `encode_record`, in the order of [`KINDS`].
        const ENCODERS: &[fn(&dyn RecordView, &mut Vec<u8>) -> Result<(), Rejection>] =
            &[$(<$kind as LogKind>::encode_record),*];

        impl TypedRow {
            /// The columns every kind shares, for changing them whatever the kind.
            pub fn common_mut(&mut self) -> CommonMut<'_> {
                match self {
                    $(TypedRow::$kind(r) => CommonMut {
                        id: &mut r.id,
                        time: &mut r.time,
                        tenant: &mut r.tenant,
                        trace_id: &mut r.trace_id,
                        span_id: &mut r.span_id,
                    }),*
                }
            }

            /// Hands the row, as its kind's struct, to `visitor`.
            pub fn visit(&self, visitor: &mut impl RowVisitor) {
                match self { $(TypedRow::$kind(row) => visitor.visit(row)),* }
            }

            pub fn table(&self) -> &'static TableDef {
                match self { $(TypedRow::$kind(_) => <$kind as LogKind>::TABLE),* }
            }

            /// Appends the row as RowBinary.
            pub fn write(&self, out: &mut Vec<u8>) {
                match self { $(TypedRow::$kind(row) => row.write_row(out)),* }
            }

            /// The kind (its position in [`KINDS`]) a record's `event.name` routes to, if any.
            pub fn kind_of(event: &str) -> Option<usize> {
                KINDS.iter().position(|t| t.event_name == Some(event))
            }

            /// Takes one row of kind `kind` off the front of `input`.
            pub fn read(kind: usize, input: &mut &[u8]) -> Option<TypedRow> {
                const READERS: &[fn(&mut &[u8]) -> Option<TypedRow>] =
                    &[$(|input| <$kind as LogKind>::read_row(input).map(TypedRow::$kind)),*];
                READERS.get(kind)?(input)
            }

            /// Appends the RowBinary row of kind `kind` (see [`TypedRow::kind_of`]) that
            /// `record` makes, or its rejection.
            pub fn encode(kind: usize, record: &dyn RecordView, out: &mut Vec<u8>) -> Result<(), Rejection> {
                ENCODERS[kind](record, out)
            }

            /// The kind a record's `event.name` selects, built from the record; `None` when
            /// the name is not a log kind's.
            pub fn route(event: &str, record: &dyn RecordView) -> Option<Result<TypedRow, Rejection>> {
                $(
                    if <$kind as LogKind>::TABLE.event_name == Some(event) {
                        return Some(<$kind as LogKind>::from_record(record).map(TypedRow::$kind));
                    }
                )*
                None
            }
        }
    };
}

/// Mutable access to the shared columns of a row of any kind (see [`TypedRow::common_mut`]).
pub struct CommonMut<'a> {
    pub id: &'a mut RowId,
    pub time: &'a mut Ts,
    pub tenant: &'a mut String,
    pub trace_id: &'a mut String,
    pub span_id: &'a mut String,
}

/// Receives one row as its own type (see [`TypedRow::visit`]).
pub trait RowVisitor {
    fn visit<T: LogKind>(&mut self, row: &T);
}

/// Calls `$callback!(args…, ApiCall, IntegrationSyncRun, …)` with every log kind's struct
/// name: the one list of kinds, for code that must handle each kind as its own type.
#[macro_export]
macro_rules! for_each_kind {
    ($callback:ident $(, $arg:expr)* $(,)?) => {
        $callback! {
            $($arg,)*
            ApiCall,
            IntegrationSyncRun,
            IntegrationError,
            IntegrationRequest,
            TaskSchedulerRun,
            MailMessage,
            EventLogEntry,
            AutomationRun,
            ScheduleOccurrence,
            BulkMailCampaign,
            MonitoringEvent,
            AuditActivity,
            AccessLog,
            WebhookFailure,
            ServerLog,
            IntegrationState
        }
    };
}

for_each_kind!(registry);

// Attributes several kinds share: one name and one value set for one meaning.
const ERROR_MESSAGE: &str = "exception.message";
/// A kind's lifecycle or outcome; a failure is `error` in every kind.
const STATUS: &str = "logbook.status";
/// `inbound` or `outbound` in every kind.
const DIRECTION: &str = "logbook.direction";
/// Delivery attempt number, from 1.
const ATTEMPT: &str = "logbook.attempt";

/// A status code in a summary; 0 is no answer.
fn answer(status_code: u16) -> String {
    match status_code {
        0 => "no answer".to_owned(),
        code => code.to_string(),
    }
}

/// `: <error message>`, or nothing without one.
fn because(error_message: &str) -> String {
    match error_message {
        "" => String::new(),
        message => format!(": {message}"),
    }
}

fn failure(failed: bool) -> u8 {
    if failed { ERROR } else { INFO }
}

log_kind! {
    /// Calls a bot or application made to an external API, with request and response.
    ApiCall {
        table: "api_calls",
        event: "logbook.api_call",
        reference: "api-call-logs.txt: Call Logs (status, bot, source, user, application, bodies; 7-day retention)",
        ttl: days(7),
        order_by: "(bot, outcome, time)",
        errors: Some(ErrorMapping { when: "outcome = 'error'", source: "bot", code: "toString(status_code)", message: "if(error_message = '', response_body, error_message)", severity: "'error'" }),
        summary: |r| format!("{} {} → {} ({})", r.method, r.url, answer(r.status_code), r.bot),
        severity: |r| failure(r.outcome == "error"),
        labels: [bot, method, status_class(status_code), outcome],
    }
    columns {
        /// Bot (or other caller) that made the call.
        bot: String = "LowCardinality(String)", attr("logbook.bot.name"), Required, Filter;
        /// Application or integration called (Salesforce, Zendesk, Google Sheets, JSON API node, …).
        application: String = "LowCardinality(String)", attr("logbook.application"), Optional, Filter;
        /// Where the call was made: the node path in the bot flow, or the agent trying it out.
        source: String = "String CODEC(ZSTD(1))", attr("logbook.source"), Optional, Plain;
        /// End user the bot was serving (`user.user_name`).
        end_user: String = "String CODEC(ZSTD(1))", attr("user.name"), Optional, Filter;
        /// HTTP method (GET, POST, PUT, DELETE, C2E, …).
        method: String = "LowCardinality(String)", attr("http.request.method"), Required, Filter;
        /// Full URL called; secrets in its query string are redacted.
        url: String = "String CODEC(ZSTD(1))", attr("url.full"), Required, Search;
        /// HTTP response status code; 0 when the server never answered.
        status_code: u16 = "UInt16", attr("http.response.status_code"), Optional, Filter;
        /// Response status: success or error.
        outcome: String = "LowCardinality(String)", attr("logbook.outcome"), Required, Filter, one_of ["success", "error"];
        /// Call duration in milliseconds.
        duration_ms: u32 = "UInt32", attr("logbook.duration_ms"), Optional, Plain;
        /// Request (as curl or body), redacted and size-limited.
        request_body: String = "String CODEC(ZSTD(3))", attr("logbook.request.body"), Optional, Search;
        /// Response body, redacted and size-limited.
        response_body: String = "String CODEC(ZSTD(3))", attr("logbook.response.body"), Optional, Search;
        /// Error text, including a script node's error and variables.
        error_message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Optional, Search;
    }
}

log_kind! {
    /// One run of the integrator for one integration: lifecycle, counts and the run's log.
    IntegrationSyncRun {
        table: "integration_sync_runs",
        event: "logbook.integration.sync_run",
        reference: "integration-health.txt: Sync Logs; backend-services-monitoring.txt: Halo Integrator Log",
        ttl: days(30),
        order_by: "(integration, status, time)",
        errors: Some(ErrorMapping { when: "status = 'error'", source: "integration", code: "entity", message: "error_message", severity: "'error'" }),
        summary: |r| format!("{} {} sync {}: {} found, {} created, {} updated, {} failed{}", r.integration, r.entity, r.status, r.found, r.created, r.updated, r.failed, because(&r.error_message)),
        severity: |r| if r.status == "error" { ERROR } else if r.failed > 0 { WARN } else { INFO },
        labels: [integration, status],
    }
    columns {
        /// Integration synced (Azure AD, NinjaOne, Xero, …).
        integration: String = "LowCardinality(String)", attr("logbook.integration.name"), Required, Filter;
        /// Tenant inside the integration being processed.
        integration_tenant: String = "String CODEC(ZSTD(1))", attr("logbook.integration.tenant"), Optional, Filter;
        /// Entity synced (agents, users, devices, licences, …).
        entity: String = "LowCardinality(String)", attr("logbook.integration.entity"), Optional, Filter;
        /// Lifecycle state: created → pending → running → completed, or error.
        status: String = "LowCardinality(String)", attr(STATUS), Required, Filter, one_of ["created", "pending", "running", "completed", "error"], old_values ["executing" => "running"];
        /// Mappings found for the entity.
        mappings_found: u32 = "UInt32", attr("logbook.sync.mappings_found"), Optional, Plain;
        /// Records found at the source.
        found: u32 = "UInt32", attr("logbook.sync.found"), Optional, Plain;
        /// Records created.
        created: u32 = "UInt32", attr("logbook.sync.created"), Optional, Plain;
        /// Records updated.
        updated: u32 = "UInt32", attr("logbook.sync.updated"), Optional, Plain;
        /// Records that failed to sync.
        failed: u32 = "UInt32", attr("logbook.sync.failed"), Optional, Plain;
        /// Records deactivated.
        deactivated: u32 = "UInt32", attr("logbook.sync.deactivated"), Optional, Plain;
        /// When the run started (0 when unknown).
        started_at: Ts = "DateTime64(9, 'UTC')", attr("logbook.sync.started_at"), Optional, Plain;
        /// When the run ended (0 while running).
        ended_at: Ts = "DateTime64(9, 'UTC')", attr("logbook.sync.ended_at"), Optional, Plain;
        /// The run's log lines.
        log: String = "String CODEC(ZSTD(3))", attr("logbook.log"), Optional, Search;
        /// Why the run failed.
        error_message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Optional, Search;
    }
}

log_kind! {
    /// A failure importing or exporting one entity with a third-party application.
    IntegrationError {
        table: "integration_errors",
        event: "logbook.integration.error",
        reference: "backend-services-monitoring.txt: Integration Errors; audit-logs.txt: Integration failure logs",
        ttl: days(30),
        order_by: "(integration, entity_type, time)",
        errors: Some(ErrorMapping { when: "1", source: "integration", code: "failure_type", message: "message", severity: "'error'" }),
        summary: |r| format!("{} {} {} failed: {}", r.integration, r.entity_type, r.entity_id, r.message),
        severity: |_| ERROR,
        labels: [integration, entity_type],
    }
    columns {
        /// Integration module the error is for.
        integration: String = "LowCardinality(String)", attr("logbook.integration.name"), Required, Filter;
        /// Kind of entity that failed (asset, client, user, invoice, …).
        entity_type: String = "LowCardinality(String)", attr("logbook.integration.entity"), Optional, Filter;
        /// Id of the entity that failed, to open its profile.
        entity_id: String = "String CODEC(ZSTD(1))", attr("logbook.integration.entity_id"), Optional, Filter;
        /// Failure type (`error.type`: timeout, auth, validation, …).
        failure_type: String = "LowCardinality(String)", attr("error.type"), Optional, Filter;
        /// Error message.
        message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Required, Search;
    }
}

log_kind! {
    /// A webhook request an integration sent in, or a request logbook's services sent out.
    IntegrationRequest {
        table: "integration_requests",
        event: "logbook.integration.request",
        reference: "backend-services-monitoring.txt: Integration Inbound Requests / Integration Outbound Requests",
        ttl: days(30),
        order_by: "(direction, integration, status, time)",
        errors: Some(ErrorMapping { when: "status = 'error'", source: "integration", code: "toString(status_code)", message: "if(error_message = '', response, error_message)", severity: "'error'" }),
        summary: |r| format!("{} {} {} {} → {} ({}){}", r.direction, r.integration, r.method, r.url, answer(r.status_code), r.status, because(&r.error_message)),
        severity: |r| failure(r.status == "error"),
        labels: [direction, integration, status],
    }
    columns {
        /// inbound (webhook into the product) or outbound (post to the integration's API).
        direction: String = "LowCardinality(String)", attr(DIRECTION), Required, Filter, one_of ["inbound", "outbound"], old_values ["incoming" => "inbound", "outgoing" => "outbound"];
        /// Integration module.
        integration: String = "LowCardinality(String)", attr("logbook.integration.name"), Required, Filter;
        /// Type of sync or entity updated by the request.
        request_type: String = "LowCardinality(String)", attr("logbook.integration.request_type"), Optional, Filter;
        /// Where the request came from or went to.
        url: String = "String CODEC(ZSTD(1))", attr("url.full"), Optional, Search;
        /// HTTP method.
        method: String = "LowCardinality(String)", attr("http.request.method"), Optional, Filter;
        /// Request payload, redacted and size-limited.
        payload: String = "String CODEC(ZSTD(3))", attr("logbook.request.body"), Optional, Search;
        /// Response body, redacted and size-limited.
        response: String = "String CODEC(ZSTD(3))", attr("logbook.response.body"), Optional, Search;
        /// HTTP status code.
        status_code: u16 = "UInt16", attr("http.response.status_code"), Optional, Filter;
        /// Outcome: success or error.
        status: String = "LowCardinality(String)", attr(STATUS), Required, Filter, one_of ["success", "error"];
        /// Why the request failed.
        error_message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Optional, Search;
    }
}

log_kind! {
    /// One pass of the task scheduler, which queues automations, mail and scheduled work.
    TaskSchedulerRun {
        table: "task_scheduler_runs",
        event: "logbook.scheduler.run",
        reference: "backend-services-monitoring.txt: Task scheduler Log",
        ttl: days(30),
        order_by: "(forced, time)",
        errors: None,
        summary: |r| format!("task scheduler {} run: {} tasks queued", if r.forced { "forced" } else { "scheduled" }, r.tasks_queued),
        severity: |_| INFO,
        labels: [forced],
    }
    columns {
        /// Forced by "Run Task Scheduler Now" rather than scheduled.
        forced: bool = "Bool", attr("logbook.scheduler.forced"), Optional, Filter;
        /// Number of tasks queued.
        tasks_queued: u32 = "UInt32", attr("logbook.scheduler.tasks_queued"), Optional, Plain;
        /// Tasks and scans run.
        tasks: Vec<String> = "Array(LowCardinality(String))", attr("logbook.scheduler.tasks"), Optional, Plain;
        /// The run's log lines.
        log: String = "String CODEC(ZSTD(3))", attr("logbook.log"), Optional, Search;
    }
}

log_kind! {
    /// One processing attempt of an incoming or outgoing mail (up to three attempts).
    MailMessage {
        table: "mail_messages",
        event: "logbook.mail",
        reference: "backend-services-monitoring.txt: Incoming Log / Outgoing Log",
        ttl: days(30),
        order_by: "(direction, mailbox, status, time)",
        errors: Some(ErrorMapping { when: "status = 'error'", source: "mailbox", code: "concat(direction, ' attempt ', toString(attempt))", message: "error_message", severity: "if(attempt >= 3, 'error', 'warning')" }),
        summary: |r| format!("{} mail {} attempt {}: {} \"{}\"{}", r.direction, r.mailbox, r.attempt, r.status, r.subject, because(&r.error_message)),
        severity: |r| match (r.status.as_str(), r.attempt) { ("error", 3..) => ERROR, ("error", _) => WARN, _ => INFO },
        labels: [direction, status],
    }
    columns {
        /// inbound (received) or outbound (sent).
        direction: String = "LowCardinality(String)", attr(DIRECTION), Required, Filter, one_of ["inbound", "outbound"], old_values ["incoming" => "inbound", "outgoing" => "outbound"];
        /// Mailbox received into or sent from.
        mailbox: String = "LowCardinality(String)", attr("logbook.mail.mailbox"), Required, Filter;
        /// The mail's id (searchable from schedule occurrences and bulk mail).
        message_id: String = "String CODEC(ZSTD(1))", attr("logbook.mail.message_id"), Optional, Filter;
        /// Sender address.
        from: String = "String CODEC(ZSTD(1))", attr("logbook.mail.from"), Optional, Search;
        /// Recipient addresses, comma separated.
        to: String = "String CODEC(ZSTD(1))", attr("logbook.mail.to"), Optional, Search;
        /// Subject line.
        subject: String = "String CODEC(ZSTD(1))", attr("logbook.mail.subject"), Optional, Search;
        /// pending, processed (inbound), sent (outbound) or error.
        status: String = "LowCardinality(String)", attr(STATUS), Required, Filter, one_of ["pending", "processed", "sent", "error"], old_values ["failed" => "error"];
        /// Attempt number, 1 to 3.
        attempt: u8 = "UInt8", attr(ATTEMPT), Optional, Filter, renamed_from ["logbook.mail.attempt"];
        /// Mail campaign this mail belongs to, if any.
        campaign_id: String = "String CODEC(ZSTD(1))", attr("logbook.mail.campaign_id"), Optional, Filter;
        /// How the mail was processed, step by step.
        log: String = "String CODEC(ZSTD(3))", attr("logbook.log"), Optional, Search;
        /// Why processing failed.
        error_message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Optional, Search;
    }
}

log_kind! {
    /// An event and the notifications and webhooks it created.
    EventLogEntry {
        table: "event_log",
        event: "logbook.event",
        reference: "backend-services-monitoring.txt: Event Log",
        ttl: days(30),
        order_by: "(event_type, time)",
        errors: None,
        summary: |r| format!("{}: {} ({} created)", r.event_type, r.description, r.creation_count),
        severity: |_| INFO,
        labels: [event_type],
    }
    columns {
        /// Kind of event (document uploaded, invoice updated, …).
        event_type: String = "LowCardinality(String)", attr("logbook.event.type"), Required, Filter;
        /// Description of what happened.
        description: String = "String CODEC(ZSTD(1))", attr("logbook.event.description"), Optional, Search;
        /// Ids of notifications created.
        notification_ids: Vec<String> = "Array(String)", attr("logbook.event.notification_ids"), Optional, Plain;
        /// Ids of webhooks created and posted.
        webhook_ids: Vec<String> = "Array(String)", attr("logbook.event.webhook_ids"), Optional, Plain;
        /// Number of notification and webhook records created.
        creation_count: u32 = "UInt32", attr("logbook.event.creation_count"), Optional, Plain;
        /// The processing log (conditions checked, records to create).
        log: String = "String CODEC(ZSTD(3))", attr("logbook.log"), Optional, Search;
    }
}

log_kind! {
    /// A workflow automation, runbook, scheduled system action or other automation run.
    AutomationRun {
        table: "automation_runs",
        event: "logbook.automation",
        reference: "backend-services-monitoring.txt: Automation Log",
        ttl: days(30),
        order_by: "(action, status, time)",
        errors: Some(ErrorMapping { when: "status = 'error'", source: "action", code: "workflow_id", message: "error_message", severity: "'error'" }),
        summary: |r| format!("{} {}{}", r.action, r.status, because(&r.error_message)),
        severity: |r| failure(r.status == "error"),
        labels: [status],
    }
    columns {
        /// Action automated (name of the custom action, SLA release, …).
        action: String = "LowCardinality(String)", attr("logbook.automation.action"), Required, Filter;
        /// Workflow the automation runs on.
        workflow_id: String = "String CODEC(ZSTD(1))", attr("logbook.automation.workflow_id"), Optional, Filter;
        /// Step of the workflow holding the action.
        step_id: String = "String CODEC(ZSTD(1))", attr("logbook.automation.step_id"), Optional, Plain;
        /// Runbook processing the automation, if any.
        runbook_id: String = "String CODEC(ZSTD(1))", attr("logbook.automation.runbook_id"), Optional, Filter;
        /// Ticket the automation ran for.
        ticket_ref: String = "String CODEC(ZSTD(1))", attr("logbook.ticket.id"), Optional, Filter;
        /// queued, running, completed or error.
        status: String = "LowCardinality(String)", attr(STATUS), Required, Filter, one_of ["queued", "running", "completed", "error"], old_values ["failed" => "error"];
        /// The automation's payload, redacted and size-limited.
        payload: String = "String CODEC(ZSTD(3))", attr("logbook.request.body"), Optional, Search;
        /// How it was processed.
        log: String = "String CODEC(ZSTD(3))", attr("logbook.log"), Optional, Search;
        /// Why it failed.
        error_message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Optional, Search;
    }
}

log_kind! {
    /// An entity created on a schedule: scheduled or automated ticket, scheduled report.
    ScheduleOccurrence {
        table: "schedule_occurrences",
        event: "logbook.schedule.occurrence",
        reference: "backend-services-monitoring.txt: Schedule Occurrence Log",
        ttl: days(30),
        order_by: "(entity_type, status, time)",
        errors: Some(ErrorMapping { when: "status = 'error'", source: "entity_type", code: "source_id", message: "error_message", severity: "'error'" }),
        summary: |r| format!("{} {}: {}{}", r.entity_type, r.status, r.description, because(&r.error_message)),
        severity: |r| failure(r.status == "error"),
        labels: [status],
    }
    columns {
        /// What was created: ticket, automated_ticket, report, appointment, ….
        entity_type: String = "LowCardinality(String)", attr("logbook.schedule.entity_type"), Required, Filter;
        /// Description of the entity.
        description: String = "String CODEC(ZSTD(1))", attr("logbook.schedule.description"), Optional, Search;
        /// The source ticket or report the entity was created from.
        source_id: String = "String CODEC(ZSTD(1))", attr("logbook.schedule.source_id"), Optional, Filter;
        /// Id of what was created (ticket id, or the outgoing mail id for a report).
        created_id: String = "String CODEC(ZSTD(1))", attr("logbook.schedule.created_id"), Optional, Filter;
        /// created or error.
        status: String = "LowCardinality(String)", attr(STATUS), Required, Filter, one_of ["created", "error"], old_values ["failed" => "error"];
        /// Why creation failed.
        error_message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Optional, Search;
    }
}

log_kind! {
    /// A bulk mail sent as part of a mail campaign, with its delivery counts.
    BulkMailCampaign {
        table: "bulk_mail_campaigns",
        event: "logbook.bulk_mail",
        reference: "backend-services-monitoring.txt: Bulk Email",
        ttl: days(30),
        order_by: "(campaign_id, time)",
        errors: Some(ErrorMapping { when: "failed > 0", source: "mailbox", code: "campaign_id", message: "concat(toString(failed), ' of ', toString(recipients_total), ' recipients failed')", severity: "if(sent = 0, 'error', 'warning')" }),
        summary: |r| format!("campaign {}: {} of {} sent, {} failed", r.campaign_id, r.sent, r.recipients_total, r.failed),
        severity: |r| match (r.failed, r.sent) { (0, _) => INFO, (_, 0) => ERROR, _ => WARN },
        labels: [],
    }
    columns {
        /// Mail campaign the bulk mail was created by.
        campaign_id: String = "LowCardinality(String)", attr("logbook.mail.campaign_id"), Required, Filter;
        /// Mailbox it was sent from.
        mailbox: String = "LowCardinality(String)", attr("logbook.mail.mailbox"), Optional, Filter;
        /// Reply address.
        reply_to: String = "String CODEC(ZSTD(1))", attr("logbook.mail.reply_to"), Optional, Plain;
        /// Recipients the mail was to be sent to.
        recipients_total: u32 = "UInt32", attr("logbook.bulk_mail.recipients_total"), Required, Plain;
        /// Recipients it reached.
        sent: u32 = "UInt32", attr("logbook.bulk_mail.sent"), Optional, Plain;
        /// Recipients it failed for (see mail_messages for why).
        failed: u32 = "UInt32", attr("logbook.bulk_mail.failed"), Optional, Plain;
    }
}

log_kind! {
    /// An error or warning raised by the backend services themselves.
    MonitoringEvent {
        table: "monitoring_events",
        event: "logbook.monitoring",
        reference: "backend-services-monitoring.txt: Monitoring events (severity, message, log type, related log id)",
        ttl: days(30),
        order_by: "(severity_number, log_type, time)",
        errors: Some(ErrorMapping { when: "severity_number >= 17", source: "log_type", code: "severity", message: "message", severity: "severity" }),
        summary: |r| r.message.clone(),
        severity: |r| r.severity_number,
        labels: [severity, log_type],
    }
    columns {
        /// Severity: trace, debug, info, warning, error or critical (from the record's severity).
        severity: String = "LowCardinality(String)", Source::SeverityText, Required, Filter, one_of ["trace", "debug", "info", "warning", "error", "critical"];
        /// OpenTelemetry severity number 1–24: filter "at or above" with it.
        severity_number: u8 = "UInt8", Source::SeverityNumber, Required, Filter;
        /// What went wrong (the record's body).
        message: String = "String CODEC(ZSTD(1))", Source::Body, Required, Search;
        /// Which log to look in (task_scheduler, incoming_mail, …).
        log_type: String = "LowCardinality(String)", attr("logbook.monitoring.log_type"), Optional, Filter;
        /// Id of the most recent log row that triggered the event.
        related_log_id: String = "String CODEC(ZSTD(1))", attr("logbook.monitoring.related_log_id"), Optional, Filter;
    }
}

log_kind! {
    /// A change made in the admin settings: who changed what, before and after.
    AuditActivity {
        table: "audit_activity",
        event: "logbook.audit",
        reference: "audit-logs.txt: Activity logs; system-logs.txt: Audit Logs",
        ttl: days(365),
        order_by: "(category, event_type, time)",
        errors: None,
        summary: |r| format!("{} {} {}: {}", r.actor_name, r.event_type, r.category, r.summary),
        severity: |_| INFO,
        labels: [category],
    }
    columns {
        /// Name of the user who acted.
        actor_name: String = "String CODEC(ZSTD(1))", attr("user.name"), Required, Filter;
        /// Their email address.
        actor_email: String = "String CODEC(ZSTD(1))", attr("user.email"), Optional, Filter;
        /// Event category (the settings module: general, email, roles, …).
        category: String = "LowCardinality(String)", attr("logbook.audit.category"), Required, Filter;
        /// Action type: add, delete, modify, query, ….
        event_type: String = "LowCardinality(String)", attr("logbook.audit.event_type"), Required, Filter;
        /// Summary of the change.
        summary: String = "String CODEC(ZSTD(1))", attr("logbook.audit.summary"), Optional, Search;
        /// Details before the change (JSON), redacted.
        before: String = "String CODEC(ZSTD(3))", attr("logbook.audit.before"), Optional, Plain;
        /// Details after the change (JSON), redacted.
        after: String = "String CODEC(ZSTD(3))", attr("logbook.audit.after"), Optional, Plain;
    }
}

log_kind! {
    /// A login, logout or impersonation in an agent, customer or admin portal.
    AccessLog {
        table: "access_logs",
        event: "logbook.access",
        reference: "audit-logs.txt: Access logs; system-logs.txt: Access Logs",
        ttl: days(365),
        order_by: "(category, portal, time)",
        errors: Some(ErrorMapping { when: "category = 'login_failed'", source: "portal", code: "category", message: "concat('failed login for ', user_name, ' from ', ip)", severity: "'warning'" }),
        summary: |r| format!("{} {} ({} portal) from {}", r.category, r.user_name, r.portal, r.ip),
        severity: |r| if r.category == "login_failed" { WARN } else { INFO },
        labels: [category],
    }
    columns {
        /// User name.
        user_name: String = "String CODEC(ZSTD(1))", attr("user.name"), Required, Filter;
        /// User's email address.
        user_email: String = "String CODEC(ZSTD(1))", attr("user.email"), Optional, Filter;
        /// Client IP address.
        ip: String = "String CODEC(ZSTD(1))", attr("client.address"), Optional, Filter;
        /// login, logout, impersonation, login_failed, or api_request (a call to logbook's own API).
        category: String = "LowCardinality(String)", attr("logbook.access.category"), Required, Filter, one_of ["login", "logout", "impersonation", "login_failed", "api_request"];
        /// agent, customer or admin portal.
        portal: String = "LowCardinality(String)", attr("logbook.access.portal"), Optional, Filter;
        /// Brand the user acted in.
        brand: String = "LowCardinality(String)", attr("logbook.access.brand"), Optional, Filter;
        /// Login type: form, or the social login's name.
        login_source: String = "LowCardinality(String)", attr("logbook.access.login_source"), Optional, Filter;
        /// Access path (URL path).
        path: String = "String CODEC(ZSTD(1))", attr("url.path"), Optional, Search;
        /// HTTP status answered (API requests); 0 when not recorded.
        status_code: u16 = "UInt16", attr("http.response.status_code"), Optional, Filter;
    }
}

log_kind! {
    /// A failed attempt to deliver a webhook.
    WebhookFailure {
        table: "webhook_failures",
        event: "logbook.webhook.failure",
        reference: "audit-logs.txt: Webhook failure logs",
        ttl: days(30),
        order_by: "(webhook_name, time)",
        errors: Some(ErrorMapping { when: "1", source: "webhook_name", code: "toString(status_code)", message: "error_message", severity: "'error'" }),
        summary: |r| format!("webhook {} {} → {} attempt {}: {}", r.webhook_name, r.url, answer(r.status_code), r.attempt, r.error_message),
        severity: |_| ERROR,
        labels: [webhook_name],
    }
    columns {
        /// Webhook name.
        webhook_name: String = "LowCardinality(String)", attr("logbook.webhook.name"), Required, Filter;
        /// Webhook id.
        webhook_id: String = "String CODEC(ZSTD(1))", attr("logbook.webhook.id"), Optional, Filter;
        /// Target URL.
        url: String = "String CODEC(ZSTD(1))", attr("url.full"), Optional, Search;
        /// HTTP status answered, 0 when unreachable.
        status_code: u16 = "UInt16", attr("http.response.status_code"), Optional, Filter;
        /// Attempt number.
        attempt: u8 = "UInt8", attr(ATTEMPT), Optional, Plain;
        /// Payload sent, redacted and size-limited.
        payload: String = "String CODEC(ZSTD(3))", attr("logbook.request.body"), Optional, Plain;
        /// Why delivery failed.
        error_message: String = "String CODEC(ZSTD(1))", attr(ERROR_MESSAGE), Required, Search;
    }
}

log_kind! {
    /// A line of a backend server's log, by category, capped by total size rather than age.
    ServerLog {
        table: "server_logs",
        event: "logbook.server_log",
        reference: "system-logs.txt: Server Logs (application, email, database, access, scheduler, crm, …; ERROR..TRACE)",
        ttl: None,
        order_by: "(category, level, time)",
        errors: Some(ErrorMapping { when: "severity_number >= 17", source: "category", code: "logger", message: "message", severity: "level" }),
        summary: |r| r.message.clone(),
        severity: |r| r.severity_number,
        labels: [category, level],
    }
    columns {
        /// Log category (the file it would have gone to): application, email, database, access, scheduler, crm, ….
        category: String = "LowCardinality(String)", attr("logbook.server_log.category"), Required, Filter;
        /// Level: trace, debug, info, warning, error or critical.
        level: String = "LowCardinality(String)", Source::SeverityText, Required, Filter, one_of ["trace", "debug", "info", "warning", "error", "critical"];
        /// OpenTelemetry severity number 1–24.
        severity_number: u8 = "UInt8", Source::SeverityNumber, Required, Filter;
        /// Logger (module, class or function) that wrote the line.
        logger: String = "LowCardinality(String)", attr("code.function.name"), Optional, Filter, renamed_from ["code.namespace"];
        /// The log message.
        message: String = "String CODEC(ZSTD(1))", Source::Body, Required, Search;
        /// Every other attribute of the record, as text.
        fields: Vec<(String, String)> = "Map(LowCardinality(String), String) CODEC(ZSTD(1))", Source::OtherAttributes, Optional, Plain;
    }
}

log_kind! {
    /// An integration enabled, disabled or reconfigured, with its sync schedule. Services emit
    /// it on every such change (and may repeat it at start-up): silence cannot tell a disabled
    /// integration from a broken one, and the schedule says when the next run is due.
    IntegrationState {
        table: "integration_states",
        event: "logbook.integration.state",
        reference: "integration-health.txt: Configuration Status (Active / Error / Disabled), collection schedule",
        ttl: days(365),
        order_by: "(integration, time)",
        errors: None,
        summary: |r| format!("{} {} (sync every {} s) by {}", r.integration, r.change, r.sync_interval_s, r.actor),
        severity: |_| INFO,
        labels: [integration, change],
    }
    columns {
        /// Integration whose configuration changed.
        integration: String = "LowCardinality(String)", attr("logbook.integration.name"), Required, Filter;
        /// What happened: enabled, disabled or reconfigured.
        change: String = "LowCardinality(String)", attr("logbook.integration.change"), Required, Filter, one_of ["enabled", "disabled", "reconfigured"];
        /// Whether the integration is enabled after the change.
        enabled: bool = "Bool", attr("logbook.integration.enabled"), Required, Filter;
        /// Seconds between scheduled sync runs (3600: devices and users hourly; 86400: software daily); the shortest of its entities' when they differ; 0 when it syncs only on demand or by webhook.
        sync_interval_s: u32 = "UInt32", attr("logbook.integration.sync_interval_s"), Optional, Plain;
        /// Who made the change.
        actor: String = "String CODEC(ZSTD(1))", attr("user.name"), Optional, Filter;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Raw;
    use std::collections::HashMap;

    /// A record given as plain strings, for testing the generated `from_record`.
    struct Fake(HashMap<&'static str, Raw<'static>>);

    impl RecordView for Fake {
        fn get(&self, source: Source) -> Option<Raw<'_>> {
            match source {
                Source::Attr(name) => self.0.get(name).cloned(),
                Source::Body => self.0.get("@body").cloned(),
                _ => None,
            }
        }
    }

    fn api_call_attrs() -> HashMap<&'static str, Raw<'static>> {
        HashMap::from([
            ("logbook.bot.name", Raw::Str("helpdesk-bot".into())),
            ("http.request.method", Raw::Str("POST".into())),
            ("url.full", Raw::Str("https://api.example.com/x".into())),
            ("http.response.status_code", Raw::Int(502)),
            ("logbook.outcome", Raw::Str("error".into())),
        ])
    }

    #[test]
    fn routes_a_complete_record_by_event_name() {
        let row = TypedRow::route("logbook.api_call", &Fake(api_call_attrs()))
            .unwrap()
            .unwrap();
        let TypedRow::ApiCall(call) = row else {
            panic!("routed to {row:?}")
        };
        assert_eq!(call.bot, "helpdesk-bot");
        assert_eq!(call.status_code, 502);
        assert_eq!(call.outcome, "error");
        assert_eq!(call.request_body, "");
    }

    #[test]
    fn unknown_event_is_not_routed() {
        assert!(TypedRow::route("something.else", &Fake(api_call_attrs())).is_none());
    }

    #[test]
    fn missing_required_attribute_is_named() {
        let mut attrs = api_call_attrs();
        attrs.remove("logbook.bot.name");
        let err = ApiCall::from_record(&Fake(attrs)).unwrap_err();
        assert_eq!(err.column, "bot");
        assert!(err.reason.contains("logbook.bot.name"), "{err}");
    }

    #[test]
    fn wrong_type_and_unknown_enum_value_are_rejected() {
        let mut attrs = api_call_attrs();
        attrs.insert("http.response.status_code", Raw::Bool(true));
        assert_eq!(
            ApiCall::from_record(&Fake(attrs)).unwrap_err().column,
            "status_code"
        );
        let mut attrs = api_call_attrs();
        attrs.insert("logbook.outcome", Raw::Str("meh".into()));
        let err = ApiCall::from_record(&Fake(attrs)).unwrap_err();
        assert_eq!(err.column, "outcome");
        assert!(err.reason.contains("success, error"), "{err}");
    }
}
