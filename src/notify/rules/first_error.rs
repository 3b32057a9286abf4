//! First error per bot (api-call-logs.txt 3.4): the first failed API call of a bot is
//! emailed; nothing more for that bot until `first_error_window` has passed since that email.
//!
//! Reads `errors` (sorted by kind, source, time) for `kind = 'api_calls'`. The state's
//! `until` is the time before which the bot's errors are not notified: the end of the quiet
//! window after an email, or just after the errors already seen while paused.

use serde::Deserialize;

use super::{Candidate, Evaluation, RuleContext, entity, from_nanos, just_after, nanos};
use crate::notify::templates::Context;
use crate::schema::{ApiCall, LogKind};
use crate::store::{StoreError, bounded};

pub const RULE: &str = "first_error";

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Seen {
    tenant: String,
    bot: String,
    last: i64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct First {
    first: i64,
    code: String,
    message: String,
    errors: u64,
}

pub async fn evaluate(ctx: &RuleContext<'_>) -> Result<Evaluation, StoreError> {
    let kind = ApiCall::TABLE.name;
    let seen = ctx
        .client
        .query(
            "SELECT tenant, source AS bot, toUnixTimestamp64Nano(max(time)) AS last FROM errors \
             WHERE kind = {kind:String} AND time > fromUnixTimestamp64Nano({lo:Int64}) \
             AND time <= fromUnixTimestamp64Nano({hi:Int64}) GROUP BY tenant, bot",
        )
        .param("kind", kind)
        .param("lo", nanos(ctx.lo))
        .param("hi", nanos(ctx.hi));
    let seen = bounded(ctx.timeout, seen.fetch_all::<Seen>()).await?;
    let mut evaluation = Evaluation::default();
    for bot in seen {
        let entity = entity(&bot.tenant, &bot.bot);
        let prior = ctx.state(&entity);
        let last = from_nanos(bot.last);
        if last < prior.until {
            continue; // inside the quiet window, or already seen
        }
        let since = prior.until.max(ctx.lo);
        let first = ctx
            .client
            .query(
                "SELECT toUnixTimestamp64Nano(min(time)) AS first, argMin(code, time) AS code, \
                 argMin(message, time) AS message, count() AS errors FROM errors \
                 WHERE kind = {kind:String} AND source = {bot:String} AND tenant = {tenant:String} \
                 AND time >= fromUnixTimestamp64Nano({since:Int64}) \
                 AND time > fromUnixTimestamp64Nano({lo:Int64}) \
                 AND time <= fromUnixTimestamp64Nano({hi:Int64})",
            )
            .param("kind", kind)
            .param("bot", &bot.bot)
            .param("tenant", &bot.tenant)
            .param("since", nanos(since))
            .param("lo", nanos(ctx.lo))
            .param("hi", nanos(ctx.hi));
        let first = bounded(ctx.timeout, first.fetch_one::<First>()).await?;
        let window = ctx.rules.first_error_window;
        evaluation.candidates.push(Candidate {
            tenant: bot.tenant.clone(),
            entity,
            on_sent: prior.next("ok", (ctx.now + window).max(just_after(last)), ctx.now),
            suppress: ctx.rules.paused.then_some("paused"),
            // Paused: these errors are dropped, and the next one after them is a first error.
            on_suppressed: prior.next("ok", just_after(last), prior.sent_at),
            prior,
            context: Context::FirstError {
                tenant: bot.tenant,
                bot: bot.bot,
                time: from_nanos(first.first),
                code: first.code,
                message: first.message,
                errors: first.errors,
                window,
            },
        });
    }
    Ok(evaluation)
}
