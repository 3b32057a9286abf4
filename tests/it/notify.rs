//! The notifier on the real engine with a real SMTP server (aiosmtpd): the acceptance tests of
//! docs/notifications.md. Rules are evaluated by calling `evaluate_once` with an injected
//! clock; rows are inserted straight into the typed tables (their `errors` views included).

use std::sync::Arc;
use std::time::Duration;

use logbook::config::Config;
use logbook::notify::Notifier;
use logbook::notify::clock::{Clock, ManualClock};
use logbook::notify::metrics::NotifyMetrics;
use logbook::schema::{self, LogKind, RowId, Ts};
use logbook::settings::SettingsStore;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::harness::TestDb;
use crate::ingest::{FAST, api_call_numbered, request, send_logs, wait_for};
use crate::logbook::{Logbook, Transport};
use crate::schema::migrated;
use crate::smtp::{Received, SinkOptions, SmtpSink};

const OWNER: &str = "owner@acme.test";
const WAIT: Duration = Duration::from_secs(20);

pub(crate) struct Fixture {
    pub db: TestDb,
    pub config: Config,
    pub smtp: SmtpSink,
    pub clock: Arc<ManualClock>,
    pub settings: Arc<SettingsStore>,
    pub metrics: NotifyMetrics,
}

/// A notifier over a fresh database with an SMTP sink, its clock starting now to the whole
/// second (so that times in emails have no fraction).
pub(crate) async fn fixture(name: &str, sink: SinkOptions, extra: &str) -> Fixture {
    let smtp = SmtpSink::start(sink);
    let toml = format!(
        "[notify]\nsmtp_url = {:?}\nowners = {OWNER:?}\ninitial_backoff = \"20ms\"\n\
         max_backoff = \"100ms\"\ndashboard_url = \"http://grafana.test\"\n\
         api_url = \"http://logbook.test\"\n{extra}",
        smtp.url()
    );
    let (db, config) = migrated(name, &toml).await;
    let settings = Arc::new(SettingsStore::new(
        db.client.clone(),
        Duration::from_secs(10),
    ));
    settings.refresh().await.unwrap();
    Fixture {
        clock: Arc::new(ManualClock::new(
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        )),
        metrics: NotifyMetrics::new(&prometheus::Registry::new()),
        db,
        config,
        smtp,
        settings,
    }
}

impl Fixture {
    /// A notifier as a fresh logbook process would make it: nothing in memory.
    pub(crate) fn notifier(&self) -> Notifier {
        Notifier::new(
            self.db.client.clone(),
            Duration::from_secs(10),
            &self.config.notify,
            self.settings.clone(),
            self.clock.clone(),
            self.metrics.clone(),
        )
        .unwrap()
    }

    /// A second before the notifier's now: a row the next evaluation sees as new.
    pub(crate) fn recent(&self) -> Ts {
        Ts::from(self.clock.now() - Duration::from_secs(1))
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub(crate) async fn emails_now(&self, n: usize) -> Vec<Received> {
        let messages = self.smtp.wait_for(n, WAIT).await;
        assert_eq!(messages.len(), n, "{messages:#?}");
        messages
    }

    async fn notifications(&self, condition: &str) -> Vec<NotificationRow> {
        self.db
            .client
            .query(&format!(
                "SELECT entity, result, reason, error, attempts, recipients \
                 FROM notifications WHERE {condition} ORDER BY time, entity"
            ))
            .fetch_all()
            .await
            .unwrap()
    }

    pub(crate) async fn api_error(&self, tenant: &str, bot: &str, message: &str) {
        let row = schema::ApiCall {
            id: RowId(uuid::Uuid::now_v7()),
            time: self.recent(),
            tenant: tenant.into(),
            bot: bot.into(),
            method: "POST".into(),
            url: "https://api.test/orders".into(),
            status_code: 502,
            outcome: "error".into(),
            error_message: message.into(),
            ..Default::default()
        };
        insert(&self.db, &[row]).await;
    }

    pub(crate) async fn sync_runs(&self, integration: &str, completed: usize, failed: usize) {
        let run = |status: &str| schema::IntegrationSyncRun {
            id: RowId(uuid::Uuid::now_v7()),
            time: self.recent(),
            tenant: "acme".into(),
            integration: integration.into(),
            status: status.into(),
            error_message: if status == "error" {
                "401 token expired".into()
            } else {
                String::new()
            },
            ..Default::default()
        };
        let rows: Vec<_> = (0..completed)
            .map(|_| run("completed"))
            .chain((0..failed).map(|_| run("error")))
            .collect();
        insert(&self.db, &rows).await;
    }

    pub(crate) async fn monitoring(&self, severity: &str, n: usize) {
        let number = logbook::notify::config::severity_number(severity).unwrap();
        let rows: Vec<_> = (0..n)
            .map(|i| schema::MonitoringEvent {
                id: RowId(uuid::Uuid::now_v7()),
                time: self.recent(),
                tenant: "acme".into(),
                severity: severity.into(),
                severity_number: number,
                message: format!("{i} emails failed to process"),
                log_type: "outgoing_mail".into(),
                ..Default::default()
            })
            .collect();
        insert(&self.db, &rows).await;
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct NotificationRow {
    entity: String,
    result: String,
    reason: String,
    error: String,
    attempts: u8,
    recipients: Vec<String>,
}

pub(crate) async fn insert<T: LogKind + clickhouse::RowOwned + clickhouse::RowWrite>(
    db: &TestDb,
    rows: &[T],
) {
    let mut insert = db.client.insert::<T>(T::TABLE.name).await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

#[tokio::test]
async fn first_error_of_each_bot_is_emailed_once_per_window_across_a_restart() {
    let f = fixture("notify_first_error", SinkOptions::default(), "").await;
    let notifier = f.notifier();
    f.api_error("acme", "order-bot", "upstream said 502").await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(1).await;
    assert_eq!(emails[0].subject, "[logbook] First error of bot order-bot");
    assert_eq!(emails[0].to, [OWNER]);
    assert!(emails[0].text.contains("Code: 502"), "{}", emails[0].text);
    assert!(emails[0].text.contains("Message: upstream said 502"));
    assert!(emails[0].text.contains(
        "API: http://logbook.test/api/v1/logs/api_calls?tenant=acme&bot=order-bot&outcome=error"
    ));
    assert!(
        emails[0]
            .html
            .contains("<a href=\"http://grafana.test/d/logbook-api-calls?")
    );

    // More errors of the same bot inside the window: nothing.
    f.advance(Duration::from_secs(5));
    f.api_error("acme", "order-bot", "again").await;
    f.api_error("acme", "order-bot", "and again").await;
    notifier.evaluate_once().await.unwrap();
    f.emails_now(1).await;

    // A restart: a new notifier with nothing in memory. Bot B's first error is emailed, A's
    // errors are not again.
    drop(notifier);
    let notifier = f.notifier();
    f.advance(Duration::from_secs(5));
    f.api_error("acme", "billing-bot", "card declined").await;
    f.api_error("acme", "order-bot", "still failing").await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(2).await;
    assert_eq!(
        emails[1].subject,
        "[logbook] First error of bot billing-bot"
    );

    // After the window (24 h by the injected clock), the next error of A is a first error.
    f.advance(Duration::from_secs(24 * 3600));
    notifier.evaluate_once().await.unwrap();
    f.emails_now(2).await;
    f.api_error("acme", "order-bot", "broken tomorrow too")
        .await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(3).await;
    assert_eq!(emails[2].subject, "[logbook] First error of bot order-bot");
    assert!(emails[2].text.contains("broken tomorrow too"));

    let rows = f.notifications("rule = 'first_error'").await;
    let entities: Vec<_> = rows
        .iter()
        .map(|r| (r.entity.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(
        entities,
        [
            ("acme/order-bot", "sent"),
            ("acme/billing-bot", "sent"),
            ("acme/order-bot", "sent")
        ]
    );
    let sent = f
        .metrics
        .notifications
        .with_label_values(&["first_error", "sent"]);
    assert_eq!(sent.get(), 3);
}

#[tokio::test]
async fn integration_error_rate_crosses_once_respects_its_toggle_and_crosses_again_after_recovery()
{
    let f = fixture("notify_error_rate", SinkOptions::default(), "").await;
    let notifier = f.notifier();
    f.settings
        .put(
            "notify.rules.error_rate.integrations",
            json!({"Jira": false}),
            "test",
        )
        .await
        .unwrap();
    f.sync_runs("Xero", 71, 29).await; // 29%: below
    f.sync_runs("Zendesk", 7, 3).await; // 30% with the minimum volume of 10
    f.sync_runs("Slack", 0, 5).await; // 100% but only 5 runs
    f.sync_runs("Jira", 5, 5).await; // 50%, toggled off
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(1).await;
    assert_eq!(
        emails[0].subject,
        "[logbook] Integration Zendesk: 30% of sync runs failed"
    );
    assert!(
        emails[0]
            .text
            .contains("Error rate: 30% (3 of 10 sync runs)"),
        "{}",
        emails[0].text
    );
    assert!(emails[0].text.contains("Last error: 401 token expired"));
    let jira = f.notifications("entity = 'acme/Jira'").await;
    assert_eq!(
        (jira.len(), jira[0].result.as_str(), jira[0].reason.as_str()),
        (1, "suppressed", "disabled")
    );

    // Still above: no second email (the repeat interval is a day).
    f.advance(Duration::from_secs(5));
    f.sync_runs("Zendesk", 0, 1).await;
    notifier.evaluate_once().await.unwrap();
    f.emails_now(1).await;

    // Recovery (4 of 21 failed), then crossing again (14 of 31).
    f.advance(Duration::from_secs(5));
    f.sync_runs("Zendesk", 10, 0).await;
    notifier.evaluate_once().await.unwrap();
    f.emails_now(1).await;
    f.advance(Duration::from_secs(5));
    f.sync_runs("Zendesk", 0, 10).await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(2).await;
    assert_eq!(
        emails[1].subject,
        "[logbook] Integration Zendesk: 45% of sync runs failed"
    );
    // Jira's toggle suppressed it once, not at every evaluation.
    assert_eq!(f.notifications("entity = 'acme/Jira'").await.len(), 1);
}

#[tokio::test]
async fn monitoring_events_respect_severity_snooze_grouping_and_pause() {
    let f = fixture("notify_monitoring", SinkOptions::default(), "").await;
    let notifier = f.notifier();
    let group = Duration::from_secs(180); // more than the 2-minute group window

    // Below the minimum severity (error): nothing. A burst of 500 criticals: one email.
    f.monitoring("warning", 5).await;
    f.monitoring("critical", 500).await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(1).await;
    assert_eq!(
        emails[0].subject,
        "[logbook] 500 monitoring events (critical) for acme"
    );
    assert!(
        emails[0].text.contains("… and 490 more"),
        "{}",
        emails[0].text
    );
    assert!(!emails[0].text.contains("warning"));

    // Critical snoozed until tomorrow: criticals are not sent; errors are.
    let tomorrow = f.clock.now() + Duration::from_secs(86_400);
    let tomorrow = tomorrow
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    f.settings
        .put(
            "notify.rules.snoozes",
            json!({"critical": tomorrow}),
            "test",
        )
        .await
        .unwrap();
    f.advance(group);
    f.monitoring("critical", 3).await;
    notifier.evaluate_once().await.unwrap();
    f.emails_now(1).await;
    let snoozed = f
        .notifications("rule = 'monitoring' AND reason = 'snoozed'")
        .await;
    assert_eq!(snoozed.len(), 1);
    f.advance(group);
    f.monitoring("error", 2).await;
    f.monitoring("critical", 2).await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(2).await;
    assert_eq!(
        emails[1].subject,
        "[logbook] 2 monitoring events (error) for acme"
    );

    // Paused: nothing, and nothing later for what came meanwhile.
    f.settings
        .put("notify.rules.paused", json!(true), "test")
        .await
        .unwrap();
    f.advance(group);
    f.monitoring("error", 7).await;
    notifier.evaluate_once().await.unwrap();
    f.settings
        .put("notify.rules.paused", json!(false), "test")
        .await
        .unwrap();
    f.advance(group);
    notifier.evaluate_once().await.unwrap();
    f.emails_now(2).await;
    let paused = f
        .notifications("rule = 'monitoring' AND reason = 'paused'")
        .await;
    assert_eq!(paused.len(), 1);
    // After resuming, new events are notified again.
    f.monitoring("error", 1).await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(3).await;
    assert_eq!(
        emails[2].subject,
        "[logbook] 1 monitoring event (error) for acme"
    );
    let suppressed = |reason| {
        f.metrics
            .suppressed
            .with_label_values(&["monitoring", reason])
            .get()
    };
    assert_eq!((suppressed("snoozed"), suppressed("paused")), (1, 1));
}

#[tokio::test]
async fn an_email_refused_then_accepted_arrives_after_retries_and_the_failures_are_recorded() {
    let sink = SinkOptions {
        refuse: 2,
        ..SinkOptions::default()
    };
    let f = fixture("notify_retry", sink, "").await;
    f.api_error("acme", "order-bot", "boom").await;
    f.notifier().evaluate_once().await.unwrap();
    f.emails_now(1).await;
    let rows = f.notifications("1").await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].result.as_str(), rows[0].attempts), ("sent", 3));
    assert!(rows[0].error.contains("451"), "{:?}", rows[0].error);
    assert_eq!(rows[0].recipients, [OWNER]);
}

#[tokio::test]
async fn two_notifiers_over_one_clickhouse_send_each_email_once() {
    let f = fixture("notify_two_replicas", SinkOptions::default(), "").await;
    let (a, b) = (f.notifier(), f.notifier());
    for round in 0..3 {
        for bot in 0..4 {
            f.api_error("acme", &format!("bot-{round}-{bot}"), "x")
                .await;
        }
        let (ra, rb) = tokio::join!(a.evaluate_once(), b.evaluate_once());
        ra.unwrap();
        rb.unwrap();
        f.advance(Duration::from_secs(5));
    }
    let emails = f.emails_now(12).await;
    let mut subjects: Vec<_> = emails.iter().map(|e| e.subject.clone()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 12);
    assert_eq!(f.notifications("1").await.len(), 12);
}

#[tokio::test]
async fn the_per_recipient_limit_holds_back_a_storm() {
    let f = fixture(
        "notify_rate_limit",
        SinkOptions::default(),
        "max_per_recipient_per_hour = 2\n",
    )
    .await;
    for bot in 0..5 {
        f.api_error("acme", &format!("bot-{bot}"), "x").await;
    }
    f.notifier().evaluate_once().await.unwrap();
    f.emails_now(2).await;
    assert_eq!(f.notifications("1").await.len(), 2);
    let limited = f
        .metrics
        .suppressed
        .with_label_values(&["first_error", "rate_limited"]);
    assert_eq!(limited.get(), 3);
}

#[tokio::test]
async fn a_wrong_smtp_password_is_recorded_counted_and_logged_without_it_while_ingest_goes_on() {
    let smtp = SmtpSink::start(SinkOptions {
        auth: Some(("alerts".into(), "right-pass".into())),
        ..SinkOptions::default()
    });
    let db = crate::harness::test_db("notify_wrong_password").await;
    let password = "wr0ng-Pa55";
    let extra = format!(
        "{FAST}[notify]\nsmtp_url = \"smtp://alerts@127.0.0.1:{}\"\nsmtp_password = {password:?}\n\
         owners = {OWNER:?}\ninterval = \"200ms\"\nattempts = 2\ninitial_backoff = \"10ms\"\n",
        smtp.port
    );
    let logbook = Logbook::start(&db, &extra).await;
    let first = request("bots", vec![api_call_numbered("order-bot", 0)]);
    assert_eq!(
        send_logs(&logbook, Transport::HttpProtobuf, &first).await,
        200
    );
    let failed = wait_for(&db, "notifications", "result = 'failed'", 1, WAIT).await;
    assert_eq!(failed, 1, "{}", logbook.stderr());

    let errors: Vec<String> = db
        .client
        .query("SELECT error FROM notifications")
        .fetch_all()
        .await
        .unwrap();
    assert!(errors[0].contains("535"), "{errors:?}");
    assert!(!errors[0].contains(password));
    let metrics = logbook.metrics().await;
    assert!(
        metrics.contains("logbook_notifications_total{result=\"failed\",rule=\"first_error\"} 1"),
        "{metrics}"
    );
    let stderr = logbook.stderr();
    assert!(stderr.contains("notification failed"), "{stderr}");
    assert!(!stderr.contains(password), "{stderr}");
    assert!(smtp.messages().is_empty());

    // Ingest goes on.
    let more = request(
        "bots",
        (1..=4).map(|n| api_call_numbered("order-bot", n)).collect(),
    );
    assert_eq!(
        send_logs(&logbook, Transport::HttpProtobuf, &more).await,
        200
    );
    assert_eq!(wait_for(&db, "api_calls", "1", 5, WAIT).await, 5);
}

/// One minimum severity: a change written through one replica's settings store moves another
/// replica's `logbook_notify_min_severity_number` (the alert rules' threshold) and what its
/// notifier emails; a reset brings the file's value back for both.
#[tokio::test]
async fn a_min_severity_change_in_the_settings_store_moves_the_alert_gauge_and_the_emails() {
    use logbook::notify::settings::SeverityGauge;
    let f = fixture("notify_min_severity", SinkOptions::default(), "").await;
    let metrics = logbook::metrics::Metrics::new();
    let gauge = SeverityGauge {
        gauge: metrics.notify_min_severity.clone(),
        defaults: f.config.notify.rules.clone(),
        store: f.settings.clone(),
    };
    let scraped = || {
        gauge.observe();
        let text = metrics.encode().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("logbook_notify_min_severity_number "))
            .map(str::to_owned)
    };
    let notifier = f.notifier();
    let group = Duration::from_secs(180);

    // The file's default, error: warnings neither alert nor are emailed.
    assert_eq!(scraped().as_deref(), Some("17"));
    f.monitoring("warning", 2).await;
    notifier.evaluate_once().await.unwrap();
    // Once more after `notify.lateness`, so that these rows are behind the watermark.
    f.advance(group);
    notifier.evaluate_once().await.unwrap();
    assert!(f.smtp.messages().is_empty());

    // Another replica (its own store over the same table) lowers it to warning.
    let other = SettingsStore::new(f.db.client.clone(), Duration::from_secs(10));
    other
        .put("notify.rules.min_severity", json!("warning"), "api")
        .await
        .unwrap();
    assert_eq!(scraped().as_deref(), Some("17"), "not refreshed yet");
    f.settings.refresh().await.unwrap();
    assert_eq!(scraped().as_deref(), Some("13"));
    f.advance(group);
    f.monitoring("warning", 3).await;
    notifier.evaluate_once().await.unwrap();
    let emails = f.emails_now(1).await;
    assert_eq!(
        emails[0].subject,
        "[logbook] 3 monitoring events (warning) for acme"
    );

    // Reset: the file's value again for both.
    other
        .reset("notify.rules.min_severity", "api")
        .await
        .unwrap();
    f.settings.refresh().await.unwrap();
    assert_eq!(scraped().as_deref(), Some("17"));
    f.advance(group);
    f.monitoring("warning", 4).await;
    notifier.evaluate_once().await.unwrap();
    f.emails_now(1).await;
}
