//! logbook's own email notifications (docs/notifications.md): the first error of each bot,
//! integrations whose sync error rate crosses a threshold, and monitoring events at or above a
//! minimum severity, with snoozes per severity and a pause switch.
//!
//! Every `notify.interval`, each rule reads what arrived in ClickHouse since its watermark
//! (`rules/`), compares it with the stored state of each entity (`ledger.rs`), and yields
//! candidates. A candidate is claimed in ClickHouse first, so that when several replicas run
//! the notifier each email goes out once; then it is recorded as suppressed (paused, snoozed,
//! toggled off), or rate limited and left for the next evaluation, or rendered
//! (`templates.rs`) and sent with retries (`deliver.rs`). The outcome is written to
//! `notifications` and the entity's state moves on. State lives in ClickHouse only: a
//! restart neither re-sends nor forgets.

pub mod clock;
pub mod config;
pub mod deliver;
pub mod ledger;
pub mod metrics;
pub mod rules;
pub mod settings;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use clock::Clock;
use config::{NotifyConfig, NotifyRules};
use deliver::{Admission, Limits, Mailer};
use ledger::{EntityState, Ledger, Record};
use metrics::NotifyMetrics;
use rules::{Candidate, RuleContext};
use templates::Links;

use crate::settings::SettingsStore;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("smtp configuration: {0}")]
    Smtp(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rules, in evaluation order.
pub const RULES: &[&str] = &[
    rules::first_error::RULE,
    rules::error_rate::RULE,
    rules::monitoring::RULE,
];

/// After a long stop, rows older than this are not notified.
const MAX_CATCH_UP: Duration = Duration::from_secs(24 * 3600);

/// What one candidate came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// Another replica claimed it.
    Elsewhere,
    /// Rate limited: decided again at the next evaluation.
    Deferred,
}

pub struct Notifier {
    client: clickhouse::Client,
    timeout: Duration,
    config: NotifyConfig,
    settings: Arc<SettingsStore>,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    mailer: Mailer,
    limits: Limits,
    metrics: NotifyMetrics,
    links: Links,
}

impl Notifier {
    /// `client` is bound to logbook's database; `settings` is refreshed by its own job.
    pub fn new(
        client: clickhouse::Client,
        timeout: Duration,
        config: &NotifyConfig,
        settings: Arc<SettingsStore>,
        clock: Arc<dyn Clock>,
        metrics: NotifyMetrics,
    ) -> Result<Notifier, NotifyError> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "logbook".into());
        let replica = format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Ok(Notifier {
            ledger: Ledger::new(client.clone(), timeout, replica),
            client,
            timeout,
            mailer: Mailer::new(config)?,
            limits: Limits::new(config.max_per_minute, config.max_per_recipient_per_hour),
            links: Links {
                dashboard_url: config.dashboard_url.clone(),
                api_url: config.api_url.clone(),
            },
            config: config.clone(),
            settings,
            clock,
            metrics,
        })
    }

    /// Evaluates every `notify.interval` until `stop`. Failures are logged and counted; the
    /// next evaluation starts from the same watermark.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(
            replica = self.ledger.replica(),
            interval = ?self.config.interval,
            "notifier running"
        );
        loop {
            let _ = self.evaluate_once().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// One evaluation of every rule. Returns the first error, after trying every rule.
    pub async fn evaluate_once(&self) -> Result<(), NotifyError> {
        let rules = settings::resolve(&self.config.rules, &self.settings);
        let now = self.clock.now();
        let mut first_error = None;
        for rule in RULES {
            if let Err(error) = self.evaluate(rule, &rules, now).await {
                tracing::warn!(rule, %error, "notification rule evaluation failed");
                self.metrics
                    .evaluation_errors
                    .with_label_values(&[rule])
                    .inc();
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn evaluate(
        &self,
        rule: &'static str,
        rules: &NotifyRules,
        now: OffsetDateTime,
    ) -> Result<(), NotifyError> {
        let states = self.ledger.states(rule).await?;
        let watermark = states.get("").cloned();
        let lo = match &watermark {
            Some(w) => (w.until - self.config.lateness).max(now - MAX_CATCH_UP),
            None => now - self.config.lateness,
        };
        let ctx = RuleContext {
            client: &self.client,
            timeout: self.timeout,
            rules,
            states: &states,
            now,
            lo,
            hi: now,
        };
        let evaluation = match rule {
            rules::first_error::RULE => rules::first_error::evaluate(&ctx).await?,
            rules::error_rate::RULE => rules::error_rate::evaluate(&ctx).await?,
            _ => rules::monitoring::evaluate(&ctx).await?,
        };
        for (entity, state) in &evaluation.transitions {
            self.ledger.set_state(rule, entity, state).await?;
        }
        let mut deferred = false;
        for candidate in &evaluation.candidates {
            deferred |= self.decide(rule, rules, now, candidate).await? == Outcome::Deferred;
        }
        // A deferred notification must still be seen next time: keep the watermark.
        if !deferred {
            let watermark = watermark.unwrap_or_default();
            let next = watermark.next("ok", now, watermark.sent_at);
            self.ledger.set_state(rule, "", &next).await?;
        }
        Ok(())
    }

    async fn decide(
        &self,
        rule: &'static str,
        rules: &NotifyRules,
        now: OffsetDateTime,
        candidate: &Candidate,
    ) -> Result<Outcome, NotifyError> {
        let key = format!("{rule}/{}/{}", candidate.entity, candidate.prior.version);
        if !self.ledger.claim(&key).await? {
            tracing::debug!(rule, %key, "notification claimed by another replica");
            return Ok(Outcome::Elsewhere);
        }
        let email = templates::render(&candidate.context, &self.links);
        let recipients = rules.recipients_of(&candidate.tenant, &self.config.owners);
        let base = Record {
            time: now,
            rule,
            tenant: &candidate.tenant,
            entity: &candidate.entity,
            key: &key,
            recipients: &recipients,
            subject: &email.subject,
            result: "suppressed",
            reason: "",
            error: "",
            attempts: 0,
        };
        let suppress = candidate
            .suppress
            .or(recipients.is_empty().then_some("no_recipients"));
        if let Some(reason) = suppress {
            self.ledger.record(&Record { reason, ..base }).await?;
            self.count_suppressed(rule, reason);
            self.finish(rule, candidate, &candidate.on_suppressed)
                .await?;
            return Ok(Outcome::Done);
        }
        let allowed = match self.limits.admit(&recipients) {
            Admission::Refused => {
                tracing::info!(rule, %key, "notification rate limited; trying again next time");
                self.count_suppressed(rule, "rate_limited");
                return Ok(Outcome::Deferred);
            }
            Admission::Send { allowed, refused } => {
                if refused > 0 {
                    tracing::info!(rule, %key, refused, "recipients over their hourly limit left out");
                    self.metrics
                        .suppressed
                        .with_label_values(&[rule, "rate_limited"])
                        .inc();
                }
                allowed
            }
        };
        let outcome = self.mailer.send(&allowed, &email).await;
        let result = if outcome.delivered { "sent" } else { "failed" };
        let error = outcome.error.as_deref().unwrap_or_default();
        if outcome.delivered {
            tracing::info!(rule, %key, attempts = outcome.attempts, "notification sent");
        } else {
            tracing::error!(rule, %key, attempts = outcome.attempts, error, "notification failed");
        }
        let record = Record {
            result,
            error,
            attempts: outcome.attempts,
            recipients: &allowed,
            ..base
        };
        // Counted before the ledger row: the email went (or failed) whether or not the row
        // can be written, and whoever sees the row sees the count too.
        self.metrics
            .notifications
            .with_label_values(&[rule, result])
            .inc();
        self.ledger.record(&record).await?;
        self.finish(rule, candidate, &candidate.on_sent).await?;
        Ok(Outcome::Done)
    }

    async fn finish(
        &self,
        rule: &str,
        candidate: &Candidate,
        state: &EntityState,
    ) -> Result<(), NotifyError> {
        Ok(self
            .ledger
            .set_state(rule, &candidate.entity, state)
            .await?)
    }

    fn count_suppressed(&self, rule: &str, reason: &str) {
        self.metrics
            .notifications
            .with_label_values(&[rule, "suppressed"])
            .inc();
        self.metrics
            .suppressed
            .with_label_values(&[rule, reason])
            .inc();
    }
}
