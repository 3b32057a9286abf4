//! What the notifier keeps in ClickHouse: the state per rule and entity, the claims that make
//! one replica send each email, and the history of every notification.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::clock::{from_nanos, nanos};
use crate::store::{StoreError, bounded};

/// The stored state of one entity of a rule (a bot, an integration, a tenant), or of the rule
/// itself (entity `""`: its watermark in `until`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityState {
    pub status: String,
    pub version: u64,
    pub until: OffsetDateTime,
    pub sent_at: OffsetDateTime,
}

impl Default for EntityState {
    fn default() -> Self {
        EntityState {
            status: "ok".into(),
            version: 0,
            until: OffsetDateTime::UNIX_EPOCH,
            sent_at: OffsetDateTime::UNIX_EPOCH,
        }
    }
}

impl EntityState {
    /// The state that follows this one, with the version moved on.
    pub fn next(&self, status: &str, until: OffsetDateTime, sent_at: OffsetDateTime) -> Self {
        EntityState {
            status: status.to_owned(),
            version: self.version + 1,
            until,
            sent_at,
        }
    }
}

/// One notification's outcome, as recorded in `notifications`.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub time: OffsetDateTime,
    pub rule: &'a str,
    pub tenant: &'a str,
    pub entity: &'a str,
    pub key: &'a str,
    pub recipients: &'a [String],
    pub subject: &'a str,
    pub result: &'a str,
    pub reason: &'a str,
    pub error: &'a str,
    pub attempts: u32,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct StateRow {
    entity: String,
    status: String,
    version: u64,
    until_ns: i64,
    sent_ns: i64,
}

pub struct Ledger {
    client: clickhouse::Client,
    timeout: Duration,
    /// This notifier's name in claims and history.
    replica: String,
}

impl Ledger {
    pub fn new(client: clickhouse::Client, timeout: Duration, replica: String) -> Ledger {
        Ledger {
            client,
            timeout,
            replica,
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Every entity's state for `rule`.
    pub async fn states(&self, rule: &str) -> Result<HashMap<String, EntityState>, StoreError> {
        let query = self
            .client
            .query(
                "SELECT entity, status, version, toUnixTimestamp64Nano(until) AS until_ns, \
                 toUnixTimestamp64Nano(sent_at) AS sent_ns \
                 FROM notify_state FINAL WHERE rule = {rule:String}",
            )
            .param("rule", rule);
        let rows = bounded(self.timeout, query.fetch_all::<StateRow>()).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let state = EntityState {
                    status: r.status,
                    version: r.version,
                    until: from_nanos(r.until_ns),
                    sent_at: from_nanos(r.sent_ns),
                };
                (r.entity, state)
            })
            .collect())
    }

    pub async fn set_state(
        &self,
        rule: &str,
        entity: &str,
        state: &EntityState,
    ) -> Result<(), StoreError> {
        let query = self
            .client
            .query(
                "INSERT INTO notify_state (rule, entity, status, version, until, sent_at) VALUES \
                 ({rule:String}, {entity:String}, {status:String}, {version:UInt64}, \
                 fromUnixTimestamp64Nano({until:Int64}), fromUnixTimestamp64Nano({sent:Int64}))",
            )
            .param("rule", rule)
            .param("entity", entity)
            .param("status", &state.status)
            .param("version", state.version)
            .param("until", nanos(state.until))
            .param("sent", nanos(state.sent_at));
        bounded(self.timeout, query.execute()).await
    }

    /// Claims the notification `key` for this replica. ClickHouse keeps only the first insert
    /// of a deduplication token, so of several replicas claiming one key, all read back the
    /// same owner; `true` when that is this one (also when it claimed the key before).
    pub async fn claim(&self, key: &str) -> Result<bool, StoreError> {
        let insert = self
            .client
            .query("INSERT INTO notify_claims (key, owner) VALUES ({key:String}, {owner:String})")
            .param("key", key)
            .param("owner", &self.replica)
            .with_setting("insert_deduplication_token", key);
        bounded(self.timeout, insert.execute()).await?;
        let owner = self
            .client
            .query("SELECT argMin(owner, claimed_at) FROM notify_claims WHERE key = {key:String}")
            .param("key", key);
        let owner = bounded(self.timeout, owner.fetch_one::<String>()).await?;
        Ok(owner == self.replica)
    }

    pub async fn record(&self, record: &Record<'_>) -> Result<(), StoreError> {
        let query = self
            .client
            .query(
                "INSERT INTO notifications (time, rule, tenant, entity, key, recipients, subject, \
                 result, reason, error, attempts, replica) VALUES \
                 (fromUnixTimestamp64Nano({time:Int64}), {rule:String}, {tenant:String}, \
                 {entity:String}, {key:String}, {recipients:Array(String)}, {subject:String}, \
                 {result:String}, {reason:String}, {error:String}, {attempts:UInt8}, \
                 {replica:String})",
            )
            .param("time", nanos(record.time))
            .param("rule", record.rule)
            .param("tenant", record.tenant)
            .param("entity", record.entity)
            .param("key", record.key)
            .param("recipients", record.recipients)
            .param("subject", record.subject)
            .param("result", record.result)
            .param("reason", record.reason)
            .param("error", record.error)
            .param("attempts", u8::try_from(record.attempts).unwrap_or(u8::MAX))
            .param("replica", &self.replica);
        bounded(self.timeout, query.execute()).await
    }
}
