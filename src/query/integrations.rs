//! Integration health (integration-health.txt): each integration's status — Active, Error or
//! Disabled — and when its next scheduled sync run is due, computed from ClickHouse.
//!
//! The rule:
//! - **Disabled**: the integration's latest `integration_states` row says `enabled = false`.
//!   Silence cannot tell a disabled integration from a broken one, so services emit that
//!   event when an integration is enabled, disabled or reconfigured.
//! - **Error**: not disabled, and its last finished sync run (`completed` or `error`) ended in
//!   error; or it has a schedule and no run completed within twice its interval (counted from
//!   its last successful run, or from its latest state when it never succeeded).
//! - **Active**: otherwise.
//!
//! The next run is due one interval (`integration_states.sync_interval_s`) after the latest
//! activity of its runs (or its latest state when it never ran); unscheduled (interval 0) and
//! disabled integrations have none.
//!
//! [`health`] serves every caller (the metrics job below, the HTTP API); [`export`] runs on
//! every replica and sets `logbook_integration_status` and
//! `logbook_integration_next_run_timestamp_seconds`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Error,
    Disabled,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Active, Status::Error, Status::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Error => "error",
            Status::Disabled => "disabled",
        }
    }
}

/// One integration's health at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrationHealth {
    pub integration: String,
    pub status: Status,
    /// Status of its last finished run (`completed` or `error`), if any.
    pub last_outcome: Option<String>,
    /// Last successful run, Unix seconds.
    pub last_success: Option<i64>,
    /// Seconds between scheduled runs, when it has a schedule.
    pub sync_interval_s: Option<u32>,
    /// When its next run is expected, Unix seconds.
    pub next_run: Option<i64>,
}

/// What ClickHouse knows of an integration (times in Unix seconds, 0 for never).
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct Observed {
    pub integration: String,
    pub has_state: u8,
    pub enabled: bool,
    pub interval_s: u32,
    pub changed_s: u32,
    pub last_outcome: String,
    pub last_success_s: u32,
    pub last_run_s: u32,
}

const QUERY: &str = "\
WITH runs AS (
    SELECT integration,
        argMaxIf(status, time, status IN ('completed', 'error')) AS last_outcome,
        toUnixTimestamp(maxIf(time, status = 'completed')) AS last_success_s,
        toUnixTimestamp(max(time)) AS last_run_s
    FROM integration_sync_runs
    WHERE time <= fromUnixTimestamp64Nano({now:Int64}) AND ({all:Bool} OR tenant = {tenant:String})
    GROUP BY integration
), states AS (
    SELECT integration,
        argMax(enabled, time) AS enabled,
        argMax(sync_interval_s, time) AS interval_s,
        toUnixTimestamp(max(time)) AS changed_s
    FROM integration_states
    WHERE time <= fromUnixTimestamp64Nano({now:Int64}) AND ({all:Bool} OR tenant = {tenant:String})
    GROUP BY integration
)
SELECT if(runs.integration = '', states.integration, runs.integration) AS integration,
    states.integration != '' AS has_state,
    states.enabled AS enabled,
    states.interval_s AS interval_s,
    states.changed_s AS changed_s,
    runs.last_outcome AS last_outcome,
    runs.last_success_s AS last_success_s,
    runs.last_run_s AS last_run_s
FROM runs FULL OUTER JOIN states ON runs.integration = states.integration
ORDER BY integration
SETTINGS join_use_nulls = 0";

/// Every integration's health at `now`, across tenants.
pub async fn health(
    client: &clickhouse::Client,
    now: OffsetDateTime,
) -> Result<Vec<IntegrationHealth>, QueryError> {
    observe(client, None, now).await
}

/// The health of one tenant's integrations at `now`.
pub async fn tenant_health(
    client: &clickhouse::Client,
    tenant: &str,
    now: OffsetDateTime,
) -> Result<Vec<IntegrationHealth>, QueryError> {
    observe(client, Some(tenant), now).await
}

async fn observe(
    client: &clickhouse::Client,
    tenant: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<IntegrationHealth>, QueryError> {
    let now_ns = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let rows = client
        .query(QUERY)
        .param("now", now_ns)
        .param("all", tenant.is_none())
        .param("tenant", tenant.unwrap_or(""))
        .fetch_all::<Observed>()
        .await?;
    Ok(rows
        .iter()
        .map(|row| judge(row, now.unix_timestamp()))
        .collect())
}

/// The rule of the module docs, applied to what ClickHouse knows.
pub fn judge(o: &Observed, now: i64) -> IntegrationHealth {
    let seconds = |s: u32| (s > 0).then_some(i64::from(s));
    let interval = (o.has_state != 0 && o.interval_s > 0).then_some(o.interval_s);
    let disabled = o.has_state != 0 && !o.enabled;
    let last_success = seconds(o.last_success_s);
    let since = last_success.or(seconds(o.changed_s));
    let overdue = match (interval, since) {
        (Some(interval), Some(since)) => now - since > 2 * i64::from(interval),
        _ => false,
    };
    let status = if disabled {
        Status::Disabled
    } else if o.last_outcome == "error" || overdue {
        Status::Error
    } else {
        Status::Active
    };
    let next_run = match (disabled, interval) {
        (false, Some(interval)) => seconds(o.last_run_s)
            .or(seconds(o.changed_s))
            .map(|base| base + i64::from(interval)),
        _ => None,
    };
    IntegrationHealth {
        integration: o.integration.clone(),
        status,
        last_outcome: (!o.last_outcome.is_empty()).then(|| o.last_outcome.clone()),
        last_success,
        sync_interval_s: interval,
        next_run,
    }
}

/// Sets the integration gauges from [`health`] every `interval` until `stop`; at most
/// `max_integrations` integrations (the cardinality cap of the other labels), by name.
pub async fn export(
    client: clickhouse::Client,
    metrics: &Metrics,
    interval: Duration,
    max_integrations: usize,
    stop: CancellationToken,
) {
    let mut exported = BTreeSet::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let all = match health(&client, OffsetDateTime::now_utc()).await {
            Ok(all) => all,
            Err(error) => {
                tracing::warn!(%error, "cannot compute integration status");
                continue;
            }
        };
        if all.len() > max_integrations {
            tracing::warn!(
                integrations = all.len(),
                max_integrations,
                "more integrations than metrics.max_label_values; the rest get no status gauge"
            );
        }
        let current: BTreeSet<String> = all
            .iter()
            .take(max_integrations)
            .map(|h| h.integration.clone())
            .collect();
        for gone in exported.difference(&current) {
            for status in Status::ALL {
                let _ = metrics
                    .integration_status
                    .remove_label_values(&[gone, status.as_str()]);
            }
            let _ = metrics.integration_next_run.remove_label_values(&[gone]);
        }
        for h in all.iter().take(max_integrations) {
            for status in Status::ALL {
                metrics
                    .integration_status
                    .with_label_values(&[h.integration.as_str(), status.as_str()])
                    .set(i64::from(status == h.status));
            }
            match h.next_run {
                Some(next) => metrics
                    .integration_next_run
                    .with_label_values(&[h.integration.as_str()])
                    .set(next),
                None => {
                    let _ = metrics
                        .integration_next_run
                        .remove_label_values(&[h.integration.as_str()]);
                }
            }
        }
        exported = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u32 = 3600;
    const NOW: i64 = 1_000_000;

    fn observed() -> Observed {
        Observed {
            integration: "NinjaOne".into(),
            ..Observed::default()
        }
    }

    #[test]
    fn a_disabled_integration_is_disabled_whatever_its_runs_and_has_no_next_run() {
        let o = Observed {
            has_state: 1,
            enabled: false,
            interval_s: HOUR,
            last_outcome: "error".into(),
            last_run_s: 10,
            ..observed()
        };
        let h = judge(&o, NOW);
        assert_eq!((h.status, h.next_run), (Status::Disabled, None));
    }

    #[test]
    fn the_last_finished_run_decides_between_active_and_error() {
        let ok = Observed {
            last_outcome: "completed".into(),
            last_success_s: 999_000,
            last_run_s: 999_000,
            ..observed()
        };
        assert_eq!(judge(&ok, NOW).status, Status::Active);
        let failed = Observed {
            last_outcome: "error".into(),
            ..ok
        };
        assert_eq!(judge(&failed, NOW).status, Status::Error);
    }

    #[test]
    fn a_scheduled_integration_without_success_for_two_intervals_is_in_error() {
        let o = Observed {
            has_state: 1,
            enabled: true,
            interval_s: HOUR,
            last_outcome: "completed".into(),
            last_success_s: (NOW - 2 * i64::from(HOUR) - 1) as u32,
            last_run_s: (NOW - 100) as u32,
            ..observed()
        };
        let h = judge(&o, NOW);
        assert_eq!(h.status, Status::Error);
        assert_eq!(h.next_run, Some(NOW - 100 + i64::from(HOUR)));
        let recent = Observed {
            last_success_s: (NOW - 2 * i64::from(HOUR)) as u32,
            ..o
        };
        assert_eq!(judge(&recent, NOW).status, Status::Active);
    }

    #[test]
    fn a_new_scheduled_integration_counts_from_its_state_and_is_due_one_interval_later() {
        let o = Observed {
            has_state: 1,
            enabled: true,
            interval_s: 86_400,
            changed_s: (NOW - 10) as u32,
            ..observed()
        };
        let h = judge(&o, NOW);
        assert_eq!(h.status, Status::Active);
        assert_eq!(h.next_run, Some(NOW - 10 + 86_400));
        assert_eq!(h.last_outcome, None);
    }
}
