//! The simulated backend: what each service does, as typed rows of the log kinds. Seeded, so
//! a run is reproducible; outcomes that tests rely on (the degraded integration's error rate)
//! follow fixed patterns rather than chance.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::schema::{
    AccessLog, ApiCall, AuditActivity, AutomationRun, BulkMailCampaign, EventLogEntry,
    IntegrationError, IntegrationRequest, IntegrationState, IntegrationSyncRun, MailMessage,
    MonitoringEvent, RowId, ScheduleOccurrence, ServerLog, TaskSchedulerRun, Ts, TypedRow,
    WebhookFailure,
};

/// Integrations synced by the integrator. The third is degraded (45% of its runs fail); the
/// last is disabled and never runs.
pub const INTEGRATIONS: &[&str] = &[
    "Azure AD",
    "NinjaOne",
    "Xero",
    "Salesforce",
    "Zendesk",
    "Google Sheets",
];
pub const DEGRADED: &str = "Xero";
pub const DISABLED: &str = "Google Sheets";

/// Every secret the demo puts in bodies starts with this, so a test can prove none is stored.
pub const SECRET_MARK: &str = "demo-secret-";

const BOTS: &[&str] = &[
    "helpdesk-bot",
    "billing-bot",
    "onboarding-bot",
    "survey-bot",
];
const APPS: &[&str] = &[
    "Salesforce",
    "Zendesk",
    "Google Sheets",
    "JSON API Node",
    "Twilio",
    "FreshDesk",
];
const MAILBOXES: &[&str] = &[
    "support@acme.example",
    "billing@acme.example",
    "noreply@acme.example",
];
const CATEGORIES: &[&str] = &[
    "application",
    "email",
    "database",
    "access",
    "scheduler",
    "crm",
];
const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin"];

/// One simulated event: a row of some kind, at some time.
pub struct Simulator {
    rng: StdRng,
    tenants: Vec<String>,
    emitted: u64,
    sync_runs: u64,
}

impl Simulator {
    pub fn new(seed: u64, tenants: usize) -> Simulator {
        Simulator {
            rng: StdRng::seed_from_u64(seed),
            tenants: (1..=tenants.max(1))
                .map(|i| format!("tenant-{i:02}"))
                .collect(),
            emitted: 0,
            sync_runs: 0,
        }
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn tenant(&mut self) -> String {
        let i = self.rng.random_range(0..self.tenants.len());
        self.tenants[i].clone()
    }

    fn id(&mut self, time: Ts) -> RowId {
        let millis = u64::try_from(time.0 / 1_000_000).unwrap_or(0);
        let random: [u8; 10] = self.rng.random();
        RowId(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// The rows of the next event at `time`. The first sixteen events cycle through every
    /// kind, so even a short run fills every table; then the mix is weighted.
    pub fn next(&mut self, time: Ts) -> Vec<TypedRow> {
        let slot = if self.emitted < 16 {
            self.emitted
        } else {
            // Weights: API calls and server logs are the bulk, as in production.
            const WEIGHTS: [u64; 16] = [30, 6, 3, 4, 1, 10, 4, 4, 2, 1, 4, 2, 5, 1, 20, 1];
            let mut roll = self.rng.random_range(0..WEIGHTS.iter().sum::<u64>());
            WEIGHTS
                .iter()
                .position(|w| {
                    let hit = roll < *w;
                    roll = roll.saturating_sub(*w);
                    hit
                })
                .unwrap_or(0) as u64
        };
        self.emitted += 1;
        let tenant = self.tenant();
        let mut rows = match slot {
            0 => vec![self.api_call(time)],
            1 => self.sync_run(time),
            2 => vec![self.integration_error(time)],
            3 => vec![self.integration_request(time)],
            4 => vec![self.scheduler_run(time)],
            5 => self.mail(time),
            6 => vec![self.event(time)],
            7 => vec![self.automation(time)],
            8 => vec![self.schedule_occurrence(time)],
            9 => vec![self.bulk_mail(time)],
            10 => self.monitoring(time),
            11 => vec![self.audit(time)],
            12 => vec![self.access(time)],
            13 => vec![self.webhook_failure(time)],
            14 => vec![self.server_log(time)],
            _ => vec![self.integration_state(time)],
        };
        for row in &mut rows {
            *row.common_mut().tenant = tenant.clone();
        }
        rows
    }

    fn api_call(&mut self, time: Ts) -> TypedRow {
        let bot = self.pick(BOTS).to_owned();
        let failed = self.rng.random_bool(0.08);
        let status_code = if failed {
            [400, 401, 404, 429, 500, 502, 503][self.rng.random_range(0..7)]
        } else {
            [200, 200, 200, 201, 204][self.rng.random_range(0..5)]
        };
        let user = self.pick(USERS);
        let with_secret = self.rng.random_bool(0.3);
        let request_body = if with_secret {
            format!(
                "curl -X POST https://api.example.com/v2/tickets -H 'Authorization: Bearer {SECRET_MARK}{:08x}' \
                 -d '{{\"user\":\"{user}\",\"password\":\"{SECRET_MARK}pw{:04}\"}}'",
                self.rng.random::<u32>(),
                self.rng.random_range(0..10_000)
            )
        } else {
            format!("{{\"query\":\"status:open\",\"user\":\"{user}\"}}")
        };
        TypedRow::ApiCall(ApiCall {
            id: self.id(time),
            time,
            bot,
            application: self.pick(APPS).to_owned(),
            source: format!(
                "flow/{}/node-{}",
                self.pick(&["welcome", "billing", "handover"]),
                self.rng.random_range(1..20)
            ),
            end_user: user.to_owned(),
            method: self.pick(&["GET", "POST", "PUT", "DELETE"]).to_owned(),
            url: format!(
                "https://api.example.com/v2/tickets?page={}&token={SECRET_MARK}{}",
                self.rng.random_range(1..9),
                self.rng.random::<u16>()
            ),
            status_code,
            outcome: if failed { "error" } else { "success" }.to_owned(),
            duration_ms: self.rng.random_range(20..2_000),
            request_body,
            response_body: if failed {
                format!("{{\"error\":\"upstream returned {status_code}\"}}")
            } else {
                "{\"ok\":true,\"items\":3}".to_owned()
            },
            error_message: if failed {
                format!("HTTP {status_code}")
            } else {
                String::new()
            },
            ..ApiCall::default()
        })
    }

    /// A run through created → pending → running → completed or error. The integration
    /// rotates; the degraded one fails 9 runs in 20, the others 1 in 20.
    fn sync_run(&mut self, time: Ts) -> Vec<TypedRow> {
        let active: Vec<&str> = INTEGRATIONS
            .iter()
            .copied()
            .filter(|i| *i != DISABLED)
            .collect();
        let integration = active[(self.sync_runs % active.len() as u64) as usize];
        let round = self.sync_runs / active.len() as u64;
        self.sync_runs += 1;
        let fails = if integration == DEGRADED {
            round % 20 < 9
        } else {
            round % 20 == 19
        };
        let entity = self.pick(&["agents", "users", "devices", "licences", "invoices"]);
        let found = self.rng.random_range(1..200u32);
        let failed = if fails {
            found.min(self.rng.random_range(1..20))
        } else {
            0
        };
        let run_id = self.id(time).0;
        let mut rows = Vec::new();
        for (step, status) in [
            "created",
            "pending",
            "running",
            if fails { "error" } else { "completed" },
        ]
        .into_iter()
        .enumerate()
        {
            let at = Ts(time.0 + step as i64 * 1_000_000_000);
            let done = step == 3;
            rows.push(TypedRow::IntegrationSyncRun(IntegrationSyncRun {
                id: self.id(at),
                time: at,
                integration: integration.to_owned(),
                integration_tenant: format!("{integration} tenant"),
                entity: entity.to_owned(),
                status: status.to_owned(),
                mappings_found: if done { 1 } else { 0 },
                found: if done { found } else { 0 },
                created: if done { (found - failed) / 3 } else { 0 },
                updated: if done {
                    found - failed - (found - failed) / 3
                } else {
                    0
                },
                failed: if done { failed } else { 0 },
                started_at: time,
                ended_at: if done { at } else { Ts(0) },
                log: format!("run {run_id}: {status} ({entity})"),
                error_message: if done && fails {
                    format!("{failed} {entity} failed: 401 from {integration} API")
                } else {
                    String::new()
                },
                ..IntegrationSyncRun::default()
            }));
        }
        rows
    }

    fn integration_error(&mut self, time: Ts) -> TypedRow {
        let integration = self.pick(&INTEGRATIONS[..5]).to_owned();
        TypedRow::IntegrationError(IntegrationError {
            id: self.id(time),
            time,
            integration,
            entity_type: self
                .pick(&["asset", "client", "user", "invoice"])
                .to_owned(),
            entity_id: format!("{}", self.rng.random_range(1000..9999)),
            failure_type: self
                .pick(&["timeout", "auth", "validation", "not_found"])
                .to_owned(),
            message: "field 'email' is required by the remote API".to_owned(),
            ..IntegrationError::default()
        })
    }

    fn integration_request(&mut self, time: Ts) -> TypedRow {
        let failed = self.rng.random_bool(0.1);
        let inbound = self.rng.random_bool(0.5);
        TypedRow::IntegrationRequest(IntegrationRequest {
            id: self.id(time),
            time,
            direction: if inbound { "inbound" } else { "outbound" }.to_owned(),
            integration: self.pick(&INTEGRATIONS[..5]).to_owned(),
            request_type: self.pick(&["invoice", "ticket", "contact"]).to_owned(),
            url: "https://hooks.example.com/xero/invoices".to_owned(),
            method: "POST".to_owned(),
            payload: format!(
                "{{\"invoice\":{},\"api_key\":\"{SECRET_MARK}k\"}}",
                self.rng.random_range(1..999)
            ),
            response: if failed {
                "{\"error\":\"rate limited\"}"
            } else {
                "{\"status\":\"DELETED\"}"
            }
            .to_owned(),
            status_code: if failed { 429 } else { 200 },
            status: if failed { "error" } else { "success" }.to_owned(),
            error_message: if failed {
                "rate limited".to_owned()
            } else {
                String::new()
            },
            ..IntegrationRequest::default()
        })
    }

    fn scheduler_run(&mut self, time: Ts) -> TypedRow {
        let tasks = vec![
            "scheduled tickets".to_owned(),
            "agreements".to_owned(),
            "outgoing mail".to_owned(),
        ];
        TypedRow::TaskSchedulerRun(TaskSchedulerRun {
            id: self.id(time),
            time,
            forced: self.rng.random_bool(0.1),
            tasks_queued: self.rng.random_range(0..30),
            log: tasks.join("\n"),
            tasks,
            ..TaskSchedulerRun::default()
        })
    }

    /// One mail, attempted up to three times.
    fn mail(&mut self, time: Ts) -> Vec<TypedRow> {
        let outgoing = self.rng.random_bool(0.6);
        let attempts_failing = if self.rng.random_bool(0.15) {
            self.rng.random_range(1..=3)
        } else {
            0
        };
        self.mail_attempts(time, outgoing, attempts_failing)
    }

    /// The attempts at one mail, of which the first `attempts_failing` (up to 3) fail.
    fn mail_attempts(&mut self, time: Ts, outgoing: bool, attempts_failing: u8) -> Vec<TypedRow> {
        let mailbox = self.pick(MAILBOXES).to_owned();
        let message_id = format!("<{}@acme.example>", self.rng.random::<u32>());
        let mut rows = Vec::new();
        for attempt in 1..=3u8 {
            let failed = attempt <= attempts_failing;
            let at = Ts(time.0 + i64::from(attempt - 1) * 60_000_000_000);
            rows.push(TypedRow::MailMessage(MailMessage {
                id: self.id(at),
                time: at,
                direction: if outgoing { "outbound" } else { "inbound" }.to_owned(),
                mailbox: mailbox.clone(),
                message_id: message_id.clone(),
                from: if outgoing {
                    mailbox.clone()
                } else {
                    format!("{}@customer.example", self.pick(USERS))
                },
                to: if outgoing {
                    format!("{}@customer.example", self.pick(USERS))
                } else {
                    mailbox.clone()
                },
                subject: format!("Ticket #{} updated", self.rng.random_range(1000..9999)),
                status: match (failed, outgoing) {
                    (true, _) => "error",
                    (false, true) => "sent",
                    (false, false) => "processed",
                }
                .to_owned(),
                attempt,
                error_message: if failed {
                    "550 5.1.1 mailbox unavailable".to_owned()
                } else {
                    String::new()
                },
                ..MailMessage::default()
            }));
            if !failed {
                break;
            }
        }
        rows
    }

    fn event(&mut self, time: Ts) -> TypedRow {
        let notifications: Vec<String> = (0..self.rng.random_range(0..3))
            .map(|i| format!("{}", 10 + i))
            .collect();
        let webhooks: Vec<String> = (0..self.rng.random_range(0..3))
            .map(|_| format!("xx{:02x}", self.rng.random::<u8>()))
            .collect();
        TypedRow::EventLogEntry(EventLogEntry {
            id: self.id(time),
            time,
            event_type: self
                .pick(&[
                    "document uploaded to ticket",
                    "invoice updated",
                    "ticket closed",
                ])
                .to_owned(),
            description: "conditions met".to_owned(),
            creation_count: (notifications.len() + webhooks.len()) as u32,
            log: format!(
                "EscMsg records to create={}",
                notifications.len() + webhooks.len()
            ),
            notification_ids: notifications,
            webhook_ids: webhooks,
            ..EventLogEntry::default()
        })
    }

    fn automation(&mut self, time: Ts) -> TypedRow {
        let failed = self.rng.random_bool(0.07);
        TypedRow::AutomationRun(AutomationRun {
            id: self.id(time),
            time,
            action: self
                .pick(&[
                    "SLA auto-release",
                    "Add note",
                    "Send acknowledgement",
                    "Runbook: reset MFA",
                ])
                .to_owned(),
            workflow_id: format!("wf-{}", self.rng.random_range(1..30)),
            step_id: format!("step-{}", self.rng.random_range(1..8)),
            ticket_ref: format!("T{}", self.rng.random_range(10_000..99_999)),
            status: if failed { "error" } else { "completed" }.to_owned(),
            payload: "{\"action_id\":31}".to_owned(),
            error_message: if failed {
                "ticket is closed".to_owned()
            } else {
                String::new()
            },
            ..AutomationRun::default()
        })
    }

    fn schedule_occurrence(&mut self, time: Ts) -> TypedRow {
        let failed = self.rng.random_bool(0.05);
        TypedRow::ScheduleOccurrence(ScheduleOccurrence {
            id: self.id(time),
            time,
            entity_type: self
                .pick(&["ticket", "report", "automated_ticket"])
                .to_owned(),
            description: "Monthly maintenance check".to_owned(),
            source_id: format!("S{}", self.rng.random_range(1..50)),
            created_id: if failed {
                String::new()
            } else {
                format!("T{}", self.rng.random_range(10_000..99_999))
            },
            status: if failed { "error" } else { "created" }.to_owned(),
            error_message: if failed {
                "template not found".to_owned()
            } else {
                String::new()
            },
            ..ScheduleOccurrence::default()
        })
    }

    fn bulk_mail(&mut self, time: Ts) -> TypedRow {
        let total = self.rng.random_range(50..500);
        let failed = if self.rng.random_bool(0.2) {
            self.rng.random_range(1..10)
        } else {
            0
        };
        TypedRow::BulkMailCampaign(BulkMailCampaign {
            id: self.id(time),
            time,
            campaign_id: format!("campaign-{}", self.rng.random_range(1..6)),
            mailbox: "news@acme.example".to_owned(),
            reply_to: "support@acme.example".to_owned(),
            recipients_total: total,
            sent: total - failed,
            failed,
            ..BulkMailCampaign::default()
        })
    }

    /// A monitoring event and the failed row it is about, which its `related_log_id` names
    /// (as the product links an event to the mail or scheduler run that failed).
    fn monitoring(&mut self, time: Ts) -> Vec<TypedRow> {
        let (severity, number) = [
            ("info", 9u8),
            ("warning", 13),
            ("warning", 13),
            ("error", 17),
            ("critical", 21),
        ][self.rng.random_range(0..5)];
        let log_type = self.pick(&["outgoing_mail", "task_scheduler", "incoming_mail"]);
        let (mut rows, message) = match log_type {
            "task_scheduler" => {
                let mut run = self.scheduler_run(time);
                if let TypedRow::TaskSchedulerRun(run) = &mut run {
                    run.log.push_str("\nerror: outgoing mail task timed out");
                }
                (vec![run], "a scheduled task has failed".to_owned())
            }
            mail => (
                self.mail_attempts(time, mail == "outgoing_mail", 3),
                "an email has failed to process 3 times".to_owned(),
            ),
        };
        let failed = rows.last_mut().expect("at least one row").common_mut().id.0;
        let event = TypedRow::MonitoringEvent(MonitoringEvent {
            id: self.id(time),
            time,
            severity: severity.to_owned(),
            severity_number: number,
            message,
            log_type: log_type.to_owned(),
            related_log_id: failed.to_string(),
            ..MonitoringEvent::default()
        });
        rows.push(event);
        rows
    }

    fn audit(&mut self, time: Ts) -> TypedRow {
        let user = self.pick(USERS);
        TypedRow::AuditActivity(AuditActivity {
            id: self.id(time),
            time,
            actor_name: user.to_owned(),
            actor_email: format!("{user}@acme.example"),
            category: self
                .pick(&["general settings", "email", "roles", "integrations"])
                .to_owned(),
            event_type: self.pick(&["modify", "add", "delete"]).to_owned(),
            summary: "changed the default SLA".to_owned(),
            before: "{\"sla\":\"8h\"}".to_owned(),
            after: "{\"sla\":\"4h\"}".to_owned(),
            ..AuditActivity::default()
        })
    }

    fn access(&mut self, time: Ts) -> TypedRow {
        let user = self.pick(USERS);
        TypedRow::AccessLog(AccessLog {
            id: self.id(time),
            time,
            user_name: user.to_owned(),
            user_email: format!("{user}@acme.example"),
            ip: format!("203.0.113.{}", self.rng.random_range(1..255)),
            category: self
                .pick(&["login", "login", "logout", "impersonation", "login_failed"])
                .to_owned(),
            portal: self.pick(&["agent", "customer", "admin"]).to_owned(),
            brand: self.pick(&["Acme", "Acme Support"]).to_owned(),
            login_source: self.pick(&["form", "Google", "Microsoft"]).to_owned(),
            path: "/portal/login".to_owned(),
            ..AccessLog::default()
        })
    }

    /// An integration's configuration as the service reports it: the disabled one disabled,
    /// the others enabled and synced hourly (devices, users), Salesforce daily.
    fn integration_state(&mut self, time: Ts) -> TypedRow {
        let integration = self.pick(INTEGRATIONS);
        let enabled = integration != DISABLED;
        TypedRow::IntegrationState(IntegrationState {
            id: self.id(time),
            time,
            integration: integration.to_owned(),
            change: if enabled { "reconfigured" } else { "disabled" }.to_owned(),
            enabled,
            sync_interval_s: if integration == "Salesforce" {
                86_400
            } else {
                3_600
            },
            actor: "admin".to_owned(),
            ..IntegrationState::default()
        })
    }

    fn webhook_failure(&mut self, time: Ts) -> TypedRow {
        TypedRow::WebhookFailure(WebhookFailure {
            id: self.id(time),
            time,
            webhook_name: self.pick(&["invoice-sync", "crm-push"]).to_owned(),
            webhook_id: format!("xx{:02x}", self.rng.random::<u8>()),
            url: "https://hooks.example.com/in".to_owned(),
            status_code: self.pick(&["500", "502", "0"]).parse().unwrap_or(0),
            attempt: self.rng.random_range(1..=3),
            payload: format!("{{\"secret\":\"{SECRET_MARK}wh\"}}"),
            error_message: "connection reset by peer".to_owned(),
            ..WebhookFailure::default()
        })
    }

    fn server_log(&mut self, time: Ts) -> TypedRow {
        let (level, number) = [
            ("debug", 5u8),
            ("info", 9),
            ("info", 9),
            ("info", 9),
            ("warning", 13),
            ("error", 17),
        ][self.rng.random_range(0..6)];
        let category = self.pick(CATEGORIES);
        TypedRow::ServerLog(ServerLog {
            id: self.id(time),
            time,
            category: category.to_owned(),
            level: level.to_owned(),
            severity_number: number,
            logger: format!("app.{category}"),
            message: format!(
                "{category} worker processed batch {}",
                self.rng.random_range(1..10_000)
            ),
            fields: vec![(
                "worker".to_owned(),
                format!("{}", self.rng.random_range(1..8)),
            )],
            ..ServerLog::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let mut a = Simulator::new(7, 3);
        let mut b = Simulator::new(7, 3);
        for i in 0..200 {
            assert_eq!(a.next(Ts(i)), b.next(Ts(i)));
        }
    }

    #[test]
    fn first_events_cover_every_kind() {
        let mut sim = Simulator::new(1, 2);
        let mut tables: Vec<_> = (0..16)
            .flat_map(|i| sim.next(Ts(i)))
            .map(|r| r.table().name)
            .collect();
        tables.sort();
        tables.dedup();
        assert_eq!(tables.len(), crate::schema::KINDS.len());
    }

    #[test]
    fn a_monitoring_event_names_a_failed_row_of_its_own_event() {
        let mut sim = Simulator::new(5, 4);
        let mut seen = 0;
        for i in 0..2_000 {
            let mut rows = sim.next(Ts(i));
            let Some(TypedRow::MonitoringEvent(event)) = rows.pop() else {
                continue;
            };
            seen += 1;
            let index = rows
                .iter_mut()
                .position(|r| r.common_mut().id.0.to_string() == event.related_log_id)
                .unwrap_or_else(|| panic!("{} names no row of its event", event.related_log_id));
            let related = &mut rows[index];
            assert_eq!(*related.common_mut().tenant, event.tenant);
            match related {
                TypedRow::MailMessage(mail) => {
                    assert_eq!(mail.status, "error");
                    let direction = if event.log_type == "outgoing_mail" {
                        "outbound"
                    } else {
                        "inbound"
                    };
                    assert_eq!(mail.direction, direction);
                }
                TypedRow::TaskSchedulerRun(run) => {
                    assert_eq!(event.log_type, "task_scheduler");
                    assert!(run.log.contains("error"), "{}", run.log);
                }
                other => panic!("a monitoring event about a {}", other.table().name),
            }
        }
        assert!(seen > 20, "{seen} monitoring events");
    }

    #[test]
    fn only_the_degraded_integration_fails_30_percent_or_more() {
        let mut sim = Simulator::new(3, 1);
        let mut runs = std::collections::BTreeMap::<String, (u32, u32)>::new();
        for _ in 0..500 {
            for row in sim.sync_run(Ts(0)) {
                if let TypedRow::IntegrationSyncRun(run) = row
                    && (run.status == "completed" || run.status == "error")
                {
                    let entry = runs.entry(run.integration).or_default();
                    entry.0 += u32::from(run.status == "error");
                    entry.1 += 1;
                }
            }
        }
        assert!(!runs.contains_key(DISABLED));
        for (integration, (errors, total)) in runs {
            let rate = f64::from(errors) / f64::from(total);
            assert_eq!(
                rate >= 0.3,
                integration == DEGRADED,
                "{integration}: {rate}"
            );
        }
    }
}
