//! The `[notify]` section: how emails are delivered, and (under `[notify.rules]`) the
//! defaults of the notification settings, which the `settings` table may override.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::config::Secret;

/// Severity names, lowest first, with the OpenTelemetry number each starts at.
pub const SEVERITIES: &[(&str, u8)] = &[
    ("trace", 1),
    ("debug", 5),
    ("info", 9),
    ("warning", 13),
    ("error", 17),
    ("critical", 21),
];

pub fn severity_number(name: &str) -> Option<u8> {
    SEVERITIES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Run the notifier on this replica when `smtp_url` is set. Several replicas may run it:
    /// each email is claimed in ClickHouse before it is sent, so it goes out once.
    pub enabled: bool,
    /// SMTP server: `smtp://host:25` (plain, or STARTTLS when the server offers it),
    /// `smtp://host:587?tls=required` (STARTTLS required), `smtps://host:465` (implicit TLS);
    /// a user name may precede the host (`smtps://alerts@host:465`). Empty: no emails.
    pub smtp_url: String,
    /// SMTP password (secret: a string, `{ env = "VAR" }` or `{ file = "/path" }`); never in
    /// `smtp_url`.
    pub smtp_password: Secret,
    /// Sender address of the emails.
    pub from: String,
    /// Recipients for tenants with none of their own (and for platform-wide events):
    /// a list, or one comma-separated string.
    #[serde(deserialize_with = "comma_list")]
    pub owners: Vec<String>,
    /// How often the rules are evaluated.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Rows whose time is up to this much older than the last evaluation are still seen
    /// (senders' clocks and logbook's batching delay rows); older late rows are not notified.
    #[serde(with = "humantime_serde")]
    pub lateness: Duration,
    /// Timeout of one SMTP conversation.
    #[serde(with = "humantime_serde")]
    pub smtp_timeout: Duration,
    /// Attempts to send one email before it is recorded as failed.
    pub attempts: u32,
    /// Wait before the second attempt; doubles for each further one, up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Emails sent per minute at most, all recipients together; beyond it they wait for the
    /// next evaluation.
    pub max_per_minute: u32,
    /// Emails one recipient receives per hour at most; beyond it they are left out.
    pub max_per_recipient_per_hour: u32,
    /// Base URL of Grafana, for the links in emails.
    pub dashboard_url: String,
    /// Base URL of logbook's HTTP API, for the links in emails.
    pub api_url: String,
    /// Defaults of the notification settings (docs/notifications.md); a value stored in the
    /// `settings` table under the same key (e.g. `notify.rules.paused`) wins.
    pub rules: NotifyRules,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            smtp_url: String::new(),
            smtp_password: Secret::default(),
            from: "logbook@localhost".into(),
            owners: Vec::new(),
            interval: Duration::from_secs(10),
            lateness: Duration::from_secs(60),
            smtp_timeout: Duration::from_secs(10),
            attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_per_minute: 30,
            max_per_recipient_per_hour: 20,
            dashboard_url: "http://127.0.0.1:3000".into(),
            api_url: "http://127.0.0.1:8080".into(),
            rules: NotifyRules::default(),
        }
    }
}

/// The notification settings: what is notified, to whom, and what is held back.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyRules {
    /// Pause all notifications. Nothing is sent while paused and nothing is sent later for
    /// what happened meanwhile; an integration still above its threshold is notified once on
    /// resume.
    pub paused: bool,
    /// Monitoring events at or above this severity are notified: trace, debug, info,
    /// warning, error or critical.
    pub min_severity: String,
    /// Snoozed severities: monitoring events of a severity are not notified until its date
    /// (RFC 3339), e.g. `{ warning = "2026-12-24T00:00:00Z" }`.
    #[serde(with = "snoozes")]
    pub snoozes: BTreeMap<String, OffsetDateTime>,
    /// After the email for a bot's first error, nothing more for that bot until this much
    /// time has passed.
    #[serde(with = "humantime_serde")]
    pub first_error_window: Duration,
    /// The integration error-rate rule.
    pub error_rate: ErrorRateRules,
    /// Monitoring events are grouped: at most one email per tenant per this much time.
    #[serde(with = "humantime_serde")]
    pub monitoring_group_window: Duration,
    /// Roles whose addresses receive notifications (owners by default; others opt in).
    pub roles: Vec<String>,
    /// Addresses per tenant and role, e.g. `[notify.rules.recipients.acme] owner = ["a@acme.test"]`.
    pub recipients: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Default for NotifyRules {
    fn default() -> Self {
        NotifyRules {
            paused: false,
            min_severity: "error".into(),
            snoozes: BTreeMap::new(),
            first_error_window: Duration::from_secs(24 * 3600),
            error_rate: ErrorRateRules::default(),
            monitoring_group_window: Duration::from_secs(120),
            roles: vec!["owner".into()],
            recipients: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateRules {
    /// Notify when this share of an integration's finished sync runs failed (0.3 = 30%).
    pub threshold: f64,
    /// Only with at least this many finished runs in the window.
    pub min_volume: u64,
    /// The window the rate is computed over.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// While the rate stays above the threshold, notify again after this long.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// Whether integrations not listed in `integrations` are notified.
    pub default_enabled: bool,
    /// The per-integration toggle, e.g. `{ Xero = false }`.
    pub integrations: BTreeMap<String, bool>,
}

impl Default for ErrorRateRules {
    fn default() -> Self {
        ErrorRateRules {
            threshold: 0.3,
            min_volume: 10,
            window: Duration::from_secs(24 * 3600),
            repeat_interval: Duration::from_secs(24 * 3600),
            default_enabled: true,
            integrations: BTreeMap::new(),
        }
    }
}

impl ErrorRateRules {
    pub fn enabled_for(&self, integration: &str) -> bool {
        self.integrations
            .get(integration)
            .copied()
            .unwrap_or(self.default_enabled)
    }
}

impl NotifyRules {
    /// Checks what serde cannot: ranges and names.
    pub fn validate(&self) -> Result<(), String> {
        if severity_number(&self.min_severity).is_none() {
            return Err(format!(
                "min_severity {:?} is not one of trace, debug, info, warning, error, critical",
                self.min_severity
            ));
        }
        if let Some(s) = self.snoozes.keys().find(|s| severity_number(s).is_none()) {
            return Err(format!("snoozes: {s:?} is not a severity"));
        }
        let rate = &self.error_rate;
        if !(rate.threshold > 0.0 && rate.threshold <= 1.0) {
            return Err("error_rate.threshold must be above 0 and at most 1".into());
        }
        if rate.window.is_zero() || self.first_error_window.is_zero() {
            return Err("windows must be above zero".into());
        }
        let addresses = self.recipients.values().flat_map(|r| r.values()).flatten();
        if let Some(bad) = addresses
            .into_iter()
            .find(|a| a.parse::<lettre::Address>().is_err())
        {
            return Err(format!("recipients: {bad:?} is not an email address"));
        }
        Ok(())
    }

    /// The addresses that receive notifications about `tenant`: its own for the configured
    /// roles, or `owners` when it has none.
    pub fn recipients_of(&self, tenant: &str, owners: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .recipients
            .get(tenant)
            .map(|by_role| {
                self.roles
                    .iter()
                    .filter_map(|role| by_role.get(role))
                    .flatten()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if out.is_empty() {
            out = owners.to_vec();
        }
        out.sort();
        out.dedup();
        out
    }

    /// The date until which `severity` is snoozed, if it is at `now`.
    pub fn snoozed_until(&self, severity: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.snoozes
            .get(severity)
            .copied()
            .filter(|until| *until > now)
    }
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.smtp_url.is_empty() {
            let url = url::Url::parse(&self.smtp_url)
                .map_err(|e| ("notify.smtp_url", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "smtp" | "smtps") {
                return Err((
                    "notify.smtp_url",
                    "must start with smtp:// or smtps://".into(),
                ));
            }
            if url.password().is_some() {
                return Err((
                    "notify.smtp_url",
                    "must not contain a password; use notify.smtp_password".into(),
                ));
            }
        }
        for address in self.owners.iter().chain([&self.from]) {
            if address.parse::<lettre::Address>().is_err() {
                return Err((
                    "notify.owners",
                    format!("{address:?} is not an email address"),
                ));
            }
        }
        if self.interval.is_zero() || self.attempts == 0 {
            return Err((
                "notify.interval",
                "interval and attempts must be above zero".into(),
            ));
        }
        if self.max_per_minute == 0 || self.max_per_recipient_per_hour == 0 {
            return Err((
                "notify.max_per_minute",
                "rate limits must be above zero".into(),
            ));
        }
        self.rules.validate().map_err(|e| ("notify.rules", e))
    }

    /// Whether `serve` runs the notifier.
    pub fn active(&self) -> bool {
        self.enabled && !self.smtp_url.is_empty()
    }
}

/// A list given as a TOML list or as one comma-separated string (the environment's form).
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Form::deserialize(d)? {
        Form::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Form::Many(list) => list,
    })
}

/// Snooze dates as RFC 3339 strings.
mod snoozes {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut out = BTreeMap::new();
        for (k, v) in map {
            out.insert(k, v.format(&Rfc3339).map_err(S::Error::custom)?);
        }
        s.collect_map(out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, OffsetDateTime>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                OffsetDateTime::parse(&v, &Rfc3339)
                    .map(|t| (k.clone(), t))
                    .map_err(|e| serde::de::Error::custom(format!("{k}: {v:?}: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_read_from_a_comma_separated_string_or_a_list() {
        let config: NotifyConfig = toml::from_str(r#"owners = "a@x.test, b@x.test""#).unwrap();
        assert_eq!(config.owners, ["a@x.test", "b@x.test"]);
        let config: NotifyConfig = toml::from_str(r#"owners = ["c@x.test"]"#).unwrap();
        assert_eq!(config.owners, ["c@x.test"]);
    }

    #[test]
    fn a_password_in_the_smtp_url_is_refused() {
        let config = NotifyConfig {
            smtp_url: "smtps://me:hunter2@mail.test:465".into(),
            ..NotifyConfig::default()
        };
        let (key, message) = config.validate().unwrap_err();
        assert_eq!(key, "notify.smtp_url");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn recipients_are_the_tenants_roles_or_the_owners() {
        let mut rules = NotifyRules::default();
        rules.recipients.insert(
            "acme".into(),
            BTreeMap::from([
                ("owner".into(), vec!["o@acme.test".into()]),
                ("supervisor".into(), vec!["s@acme.test".into()]),
            ]),
        );
        let owners = vec!["ops@logbook.test".to_owned()];
        assert_eq!(rules.recipients_of("acme", &owners), ["o@acme.test"]);
        assert_eq!(rules.recipients_of("other", &owners), ["ops@logbook.test"]);
        rules.roles.push("supervisor".into());
        assert_eq!(
            rules.recipients_of("acme", &owners),
            ["o@acme.test", "s@acme.test"]
        );
    }
}
