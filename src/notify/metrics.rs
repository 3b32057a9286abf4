//! The notifier's metrics (docs/operations.md).

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct NotifyMetrics {
    /// Notifications by rule and result: sent, failed, suppressed.
    pub notifications: IntCounterVec,
    /// Suppressed notifications by rule and reason: paused, snoozed, disabled,
    /// rate_limited, no_recipients.
    pub suppressed: IntCounterVec,
    /// Rule evaluations that failed (ClickHouse unreachable, …), by rule.
    pub evaluation_errors: IntCounterVec,
}

impl NotifyMetrics {
    pub fn new(registry: &Registry) -> NotifyMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        NotifyMetrics {
            notifications: counter(
                "logbook_notifications_total",
                "logbook's own notifications, by rule and result (sent, failed, suppressed)",
                &["rule", "result"],
            ),
            suppressed: counter(
                "logbook_notifications_suppressed_total",
                "notifications not sent, by rule and reason",
                &["rule", "reason"],
            ),
            evaluation_errors: counter(
                "logbook_notify_evaluation_errors_total",
                "rule evaluations that failed, by rule",
                &["rule"],
            ),
        }
    }
}
