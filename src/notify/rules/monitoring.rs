//! Monitoring events at or above the minimum severity (backend-services-monitoring.txt),
//! grouped: at most one email per tenant per `monitoring_group_window`, listing what came
//! since the last one, so a burst of 500 events is one email (or a few).
//!
//! Reads `monitoring_events` by its sort key (severity_number, log_type, time). State per
//! tenant: `until` is the time events were covered to, `sent_at` the last email. Snoozed
//! severities are left out (and dropped); when only snoozed events came, that is recorded as
//! suppressed.

use std::time::Duration;

use serde::Deserialize;

use super::{Candidate, Evaluation, RuleContext, from_nanos, nanos};
use crate::notify::config::severity_number;
use crate::notify::templates::{Context, Sample};
use crate::store::{StoreError, bounded};

pub const RULE: &str = "monitoring";

/// Events listed in one email; the rest are counted.
const SAMPLES: u64 = 10;

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Seen {
    tenant: String,
    last: i64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Count {
    severity: String,
    n: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Event {
    at: i64,
    severity: String,
    log_type: String,
    message: String,
}

const RANGE: &str = "severity_number >= {min:UInt8} AND tenant = {tenant:String} \
                     AND time > fromUnixTimestamp64Nano({since:Int64}) \
                     AND time <= fromUnixTimestamp64Nano({hi:Int64})";

pub async fn evaluate(ctx: &RuleContext<'_>) -> Result<Evaluation, StoreError> {
    let min = severity_number(&ctx.rules.min_severity).unwrap_or(17);
    let group: Duration = ctx.rules.monitoring_group_window;
    // Events held back by the group window are older than the watermark when their email
    // is due: look back that much further.
    let lo = ctx.lo - group;
    let seen = ctx
        .client
        .query(
            "SELECT tenant, toUnixTimestamp64Nano(max(time)) AS last FROM monitoring_events \
             WHERE severity_number >= {min:UInt8} AND time > fromUnixTimestamp64Nano({lo:Int64}) \
             AND time <= fromUnixTimestamp64Nano({hi:Int64}) GROUP BY tenant",
        )
        .param("min", min)
        .param("lo", nanos(lo))
        .param("hi", nanos(ctx.hi));
    let seen = bounded(ctx.timeout, seen.fetch_all::<Seen>()).await?;
    let snoozed: Vec<String> = ctx
        .rules
        .snoozes
        .keys()
        .filter(|s| ctx.rules.snoozed_until(s, ctx.now).is_some())
        .cloned()
        .collect();
    let mut evaluation = Evaluation::default();
    for tenant in seen {
        let prior = ctx.state(&tenant.tenant);
        if from_nanos(tenant.last) <= prior.until {
            continue;
        }
        if !ctx.rules.paused && ctx.now < prior.sent_at + group {
            continue; // grouped into the next email
        }
        let since = prior.until.max(lo);
        let counts = ctx
            .client
            .query(&format!(
                "SELECT severity, count() AS n FROM monitoring_events WHERE {RANGE} \
                 GROUP BY severity ORDER BY min(severity_number)"
            ))
            .param("min", min)
            .param("tenant", &tenant.tenant)
            .param("since", nanos(since))
            .param("hi", nanos(ctx.hi));
        let counts = bounded(ctx.timeout, counts.fetch_all::<Count>()).await?;
        let (quiet, by_severity): (Vec<_>, Vec<_>) = counts
            .into_iter()
            .partition(|c| snoozed.contains(&c.severity));
        let total: u64 = by_severity.iter().map(|c| c.n).sum();
        let samples = ctx
            .client
            .query(&format!(
                "SELECT toUnixTimestamp64Nano(time) AS at, severity, log_type, message \
                 FROM monitoring_events WHERE {RANGE} AND severity NOT IN {{snoozed:Array(String)}} \
                 ORDER BY time LIMIT {SAMPLES}"
            ))
            .param("min", min)
            .param("tenant", &tenant.tenant)
            .param("since", nanos(since))
            .param("hi", nanos(ctx.hi))
            .param("snoozed", &snoozed);
        let samples = bounded(ctx.timeout, samples.fetch_all::<Event>()).await?;
        let from = samples.first().map_or(since, |e| from_nanos(e.at));
        let suppress = if ctx.rules.paused {
            Some("paused")
        } else if total == 0 && !quiet.is_empty() {
            Some("snoozed")
        } else {
            None
        };
        evaluation.candidates.push(Candidate {
            tenant: tenant.tenant.clone(),
            entity: tenant.tenant.clone(),
            on_sent: prior.next("ok", ctx.hi, ctx.now),
            suppress,
            // Paused or snoozed events are dropped, not sent later.
            on_suppressed: prior.next("ok", ctx.hi, prior.sent_at),
            prior,
            context: Context::Monitoring {
                tenant: tenant.tenant,
                total: if suppress.is_some() {
                    quiet.iter().map(|c| c.n).sum::<u64>() + total
                } else {
                    total
                },
                by_severity: by_severity.into_iter().map(|c| (c.severity, c.n)).collect(),
                samples: samples
                    .into_iter()
                    .map(|e| Sample {
                        time: from_nanos(e.at),
                        severity: e.severity,
                        log_type: e.log_type,
                        message: e.message,
                    })
                    .collect(),
                from,
                to: ctx.hi,
            },
        });
    }
    Ok(evaluation)
}
