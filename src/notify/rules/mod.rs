//! The rules. Each reads the rows that arrived since its watermark (by the tables' sort keys
//! and time), compares them with the stored state of each entity, and returns candidates:
//! notifications to claim and send (or record as suppressed), with the state each outcome
//! leaves behind.

pub mod error_rate;
pub mod first_error;
pub mod monitoring;

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::config::NotifyRules;
use super::ledger::EntityState;
use super::templates::Context;

/// What a rule evaluation sees.
pub struct RuleContext<'a> {
    pub client: &'a clickhouse::Client,
    pub timeout: Duration,
    pub rules: &'a NotifyRules,
    pub states: &'a HashMap<String, EntityState>,
    /// The notifier's clock, read once per evaluation.
    pub now: OffsetDateTime,
    /// Rows with `lo < time <= hi` are new.
    pub lo: OffsetDateTime,
    pub hi: OffsetDateTime,
}

impl RuleContext<'_> {
    pub fn state(&self, entity: &str) -> EntityState {
        self.states.get(entity).cloned().unwrap_or_default()
    }
}

/// A notification a rule wants.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub tenant: String,
    /// The state row it is about (`tenant/bot`, `tenant/integration`, or the tenant).
    pub entity: String,
    pub prior: EntityState,
    /// The state once it is sent (or failed after its attempts).
    pub on_sent: EntityState,
    /// Set when it must not be sent: the reason (paused, disabled, snoozed).
    pub suppress: Option<&'static str>,
    /// The state once it is recorded as suppressed.
    pub on_suppressed: EntityState,
    pub context: Context,
}

/// A rule's answer: notifications, and state changes that notify nobody (recoveries).
#[derive(Debug, Default)]
pub struct Evaluation {
    pub candidates: Vec<Candidate>,
    pub transitions: Vec<(String, EntityState)>,
}

/// Time as the query parameter `{name:Int64}` expects (see `clock::nanos`).
pub use super::clock::{from_nanos, nanos};

/// The smallest time after `t` (the DateTime64(9) step).
pub fn just_after(t: OffsetDateTime) -> OffsetDateTime {
    t + time::Duration::nanoseconds(1)
}

/// `entity` of the state row for a tenant's named thing.
pub fn entity(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}
