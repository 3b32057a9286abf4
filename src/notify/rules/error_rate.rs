//! Integration error rate (integration-health.txt): an email when the share of failed sync
//! runs over the window reaches the threshold, with enough runs; another only after it
//! recovered and crossed again, or after the repeat interval; a toggle per integration.
//!
//! Only integrations with finished runs since the watermark, and those above the threshold
//! before, are evaluated: their rate comes from `integration_sync_runs` filtered on its sort
//! key's leading `integration` column. State: `ok`, `firing` (notified) or `suppressed`
//! (above the threshold but paused or toggled off, recorded once).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Candidate, Evaluation, RuleContext, entity, nanos};
use crate::notify::templates::Context;
use crate::schema::{IntegrationSyncRun, LogKind};
use crate::store::{StoreError, bounded};

pub const RULE: &str = "error_rate";

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Seen {
    tenant: String,
    integration: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Rate {
    tenant: String,
    integration: String,
    failed: u64,
    finished: u64,
    last_error: String,
}

pub async fn evaluate(ctx: &RuleContext<'_>) -> Result<Evaluation, StoreError> {
    let table = IntegrationSyncRun::TABLE.name;
    let seen = ctx
        .client
        .query(&format!(
            "SELECT DISTINCT tenant, integration FROM {table} \
             WHERE status IN ('completed', 'error') \
             AND time > fromUnixTimestamp64Nano({{lo:Int64}}) \
             AND time <= fromUnixTimestamp64Nano({{hi:Int64}})"
        ))
        .param("lo", nanos(ctx.lo))
        .param("hi", nanos(ctx.hi));
    let seen = bounded(ctx.timeout, seen.fetch_all::<Seen>()).await?;
    // (tenant, integration) of every candidate: new runs, or not `ok` before.
    let mut candidates: BTreeSet<(String, String)> = seen
        .into_iter()
        .map(|s| (s.tenant, s.integration))
        .collect();
    for (key, state) in ctx.states {
        if let Some((tenant, name)) = key.split_once('/')
            && state.status != "ok"
        {
            candidates.insert((tenant.to_owned(), name.to_owned()));
        }
    }
    if candidates.is_empty() {
        return Ok(Evaluation::default());
    }
    let names: BTreeSet<&str> = candidates.iter().map(|(_, n)| n.as_str()).collect();
    let rules = &ctx.rules.error_rate;
    let rates = ctx
        .client
        .query(&format!(
            "SELECT tenant, integration, countIf(status = 'error') AS failed, count() AS finished, \
             argMaxIf(error_message, time, status = 'error') AS last_error FROM {table} \
             WHERE integration IN {{names:Array(String)}} AND status IN ('completed', 'error') \
             AND time > fromUnixTimestamp64Nano({{from:Int64}}) \
             AND time <= fromUnixTimestamp64Nano({{hi:Int64}}) GROUP BY tenant, integration"
        ))
        .param("names", names.into_iter().collect::<Vec<_>>())
        .param("from", nanos(ctx.hi - rules.window))
        .param("hi", nanos(ctx.hi));
    let rates: BTreeMap<(String, String), Rate> = bounded(ctx.timeout, rates.fetch_all::<Rate>())
        .await?
        .into_iter()
        .map(|r| ((r.tenant.clone(), r.integration.clone()), r))
        .collect();

    let mut evaluation = Evaluation::default();
    for (tenant, integration) in candidates {
        let entity = entity(&tenant, &integration);
        let prior = ctx.state(&entity);
        let (failed, finished, last_error) = rates
            .get(&(tenant.clone(), integration.clone()))
            .map(|r| (r.failed, r.finished, r.last_error.clone()))
            .unwrap_or_default();
        let above = finished > 0
            && finished >= rules.min_volume
            && failed as f64 >= rules.threshold * finished as f64 - 1e-9;
        if !above {
            if prior.status != "ok" {
                let recovered = prior.next("ok", prior.until, prior.sent_at);
                evaluation.transitions.push((entity, recovered));
            }
            continue;
        }
        let suppress = if !rules.enabled_for(&integration) {
            Some("disabled")
        } else if ctx.rules.paused {
            Some("paused")
        } else {
            None
        };
        let due = match (suppress, prior.status.as_str()) {
            (Some(_), status) => status != "suppressed",
            (None, "firing") => ctx.now >= prior.sent_at + rules.repeat_interval,
            (None, _) => true,
        };
        if !due {
            continue;
        }
        evaluation.candidates.push(Candidate {
            tenant: tenant.clone(),
            entity,
            on_sent: prior.next("firing", prior.until, ctx.now),
            suppress,
            on_suppressed: prior.next("suppressed", prior.until, prior.sent_at),
            prior,
            context: Context::ErrorRate {
                tenant,
                integration,
                failed,
                finished,
                threshold: rules.threshold,
                window: rules.window,
                last_error,
                since: ctx.hi - rules.window,
            },
        });
    }
    Ok(evaluation)
}
