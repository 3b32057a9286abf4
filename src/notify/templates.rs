//! The emails: a subject, a text body and an HTML body per rule, with links to the matching
//! Grafana dashboard and API query. docs/notifications.md shows them as received.

use std::fmt::Write;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Where the links point.
#[derive(Debug, Clone)]
pub struct Links {
    pub dashboard_url: String,
    pub api_url: String,
}

/// What an email is about, with everything its template shows.
#[derive(Debug, Clone)]
pub enum Context {
    FirstError {
        tenant: String,
        bot: String,
        time: OffsetDateTime,
        code: String,
        message: String,
        errors: u64,
        window: Duration,
    },
    ErrorRate {
        tenant: String,
        integration: String,
        failed: u64,
        finished: u64,
        threshold: f64,
        window: Duration,
        last_error: String,
        since: OffsetDateTime,
    },
    Monitoring {
        tenant: String,
        total: u64,
        by_severity: Vec<(String, u64)>,
        samples: Vec<Sample>,
        from: OffsetDateTime,
        to: OffsetDateTime,
    },
}

/// One monitoring event shown in an email.
#[derive(Debug, Clone)]
pub struct Sample {
    pub time: OffsetDateTime,
    pub severity: String,
    pub log_type: String,
    pub message: String,
}

const MAX_MESSAGE_CHARS: usize = 500;

pub fn render(context: &Context, links: &Links) -> Email {
    let mut facts: Vec<(&str, String)> = Vec::new();
    let (subject, intro, dashboard, api) = match context {
        Context::FirstError {
            tenant,
            bot,
            time,
            code,
            message,
            errors,
            window,
        } => {
            facts.push(("Tenant", or_none(tenant)));
            facts.push(("Bot", bot.clone()));
            facts.push(("First error at", stamp(*time)));
            facts.push(("Code", or_none(code)));
            facts.push(("Message", clip(message)));
            facts.push(("Errors so far", errors.to_string()));
            let params = [
                ("tenant", tenant.as_str()),
                ("bot", bot.as_str()),
                ("outcome", "error"),
            ];
            (
                format!("[logbook] First error of bot {bot}"),
                format!(
                    "Bot {bot} failed an API call. You will not be told about this bot's \
                     errors again for {}.",
                    span(*window)
                ),
                dashboard_link(links, "logbook-api-calls", &params, *time),
                api_link(links, "api_calls", &params, *time),
            )
        }
        Context::ErrorRate {
            tenant,
            integration,
            failed,
            finished,
            threshold,
            window,
            last_error,
            since,
        } => {
            let rate = percent(*failed, *finished);
            facts.push(("Tenant", or_none(tenant)));
            facts.push(("Integration", integration.clone()));
            facts.push((
                "Error rate",
                format!("{rate} ({failed} of {finished} sync runs)"),
            ));
            facts.push(("Threshold", format!("{:.0}%", threshold * 100.0)));
            facts.push(("Window", span(*window)));
            facts.push(("Last error", clip(last_error)));
            let params = [
                ("tenant", tenant.as_str()),
                ("integration", integration.as_str()),
            ];
            (
                format!("[logbook] Integration {integration}: {rate} of sync runs failed"),
                format!(
                    "{rate} of {integration}'s sync runs failed in the last {}.",
                    span(*window)
                ),
                dashboard_link(links, "logbook-integrations", &params, *since),
                api_link(
                    links,
                    "integration_sync_runs",
                    &[params[0], params[1], ("status", "error")],
                    *since,
                ),
            )
        }
        Context::Monitoring {
            tenant,
            total,
            by_severity,
            samples,
            from,
            to,
        } => {
            facts.push(("Tenant", or_none(tenant)));
            facts.push(("Events", total.to_string()));
            let counts: Vec<String> = by_severity
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            facts.push(("By severity", counts.join(", ")));
            facts.push(("From", stamp(*from)));
            facts.push(("To", stamp(*to)));
            let worst = by_severity
                .last()
                .map(|(s, _)| s.as_str())
                .unwrap_or("error");
            // The dashboard and the API list from the least severe event emailed up (the
            // dashboard's own default may hide it).
            let least = by_severity
                .first()
                .and_then(|(s, _)| super::config::severity_number(s))
                .unwrap_or(1)
                .to_string();
            let mut intro = String::from("The backend services reported:\n");
            for sample in samples {
                let _ = writeln!(
                    intro,
                    "- {} {} [{}] {}",
                    stamp(sample.time),
                    sample.severity,
                    sample.log_type,
                    clip(&sample.message)
                );
            }
            if *total > samples.len() as u64 {
                let _ = writeln!(intro, "- … and {} more", total - samples.len() as u64);
            }
            (
                format!(
                    "[logbook] {total} monitoring event{} ({worst}){}",
                    if *total == 1 { "" } else { "s" },
                    if tenant.is_empty() {
                        String::new()
                    } else {
                        format!(" for {tenant}")
                    }
                ),
                intro,
                dashboard_link(
                    links,
                    "logbook-backend-services",
                    &[
                        ("tenant", tenant.as_str()),
                        ("min_severity", least.as_str()),
                    ],
                    *from,
                ),
                api_link(
                    links,
                    "monitoring_events",
                    &[
                        ("tenant", tenant.as_str()),
                        ("severity_number_min", least.as_str()),
                    ],
                    *from,
                ),
            )
        }
    };
    let intro = intro.trim_end();
    let mut text = format!("{intro}\n\n");
    for (name, value) in &facts {
        let _ = writeln!(text, "{name}: {value}");
    }
    let _ = write!(text, "\nDashboard: {dashboard}\nAPI: {api}\n");
    let mut html = format!(
        "<html><body>\n<p>{}</p>\n<table>\n",
        escape(intro).replace('\n', "<br>\n")
    );
    for (name, value) in &facts {
        let _ = writeln!(
            html,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    let _ = write!(
        html,
        "</table>\n<p><a href=\"{}\">Open the dashboard</a> · <a href=\"{}\">API query</a></p>\n</body></html>\n",
        escape(&dashboard),
        escape(&api)
    );
    Email {
        subject,
        text,
        html,
    }
}

fn percent(failed: u64, finished: u64) -> String {
    if finished == 0 {
        return "0%".into();
    }
    format!("{:.0}%", failed as f64 * 100.0 / finished as f64)
}

/// A window as people say it: "24 hours", "90 minutes".
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        3600 => "1 hour".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        _ => humantime::format_duration(d).to_string(),
    }
}

fn stamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "(none)".into()
    } else {
        text.to_owned()
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn query(params: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().filter(|(_, v)| !v.is_empty()))
        .finish()
}

/// A Grafana dashboard (by uid) with its variables set, from `since` to now.
fn dashboard_link(
    links: &Links,
    uid: &str,
    params: &[(&str, &str)],
    since: OffsetDateTime,
) -> String {
    let vars: Vec<(String, &str)> = params
        .iter()
        .map(|(k, v)| (format!("var-{k}"), *v))
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let from = (since.unix_timestamp_nanos() / 1_000_000 - 3_600_000).to_string();
    let mut all = vars;
    all.push(("from", from.as_str()));
    all.push(("to", "now"));
    format!(
        "{}/d/{uid}?{}",
        links.dashboard_url.trim_end_matches('/'),
        query(&all)
    )
}

/// The API query for the same rows: the log kind's list route, `/api/v1/logs/<kind>`, with
/// its filters as query parameters (the notify_docs test checks each against the OpenAPI
/// document and a running API).
fn api_link(links: &Links, table: &str, params: &[(&str, &str)], since: OffsetDateTime) -> String {
    let from = stamp(since - time::Duration::hours(1));
    let mut all = params.to_vec();
    all.push(("from", from.as_str()));
    format!(
        "{}/api/v1/logs/{table}?{}",
        links.api_url.trim_end_matches('/'),
        query(&all)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn links() -> Links {
        Links {
            dashboard_url: "http://grafana.test/".into(),
            api_url: "http://logbook.test".into(),
        }
    }

    #[test]
    fn first_error_email_names_the_bot_error_and_links() {
        let email = render(
            &Context::FirstError {
                tenant: "acme".into(),
                bot: "Order <bot>".into(),
                time: datetime!(2026-11-30 12:00 UTC),
                code: "500".into(),
                message: "upstream failed".into(),
                errors: 3,
                window: Duration::from_secs(86_400),
            },
            &links(),
        );
        assert_eq!(email.subject, "[logbook] First error of bot Order <bot>");
        assert!(email.text.contains("Code: 500"), "{}", email.text);
        assert!(email.text.contains("Message: upstream failed"));
        assert!(email.text.contains("again for 24 hours."), "{}", email.text);
        assert!(email.text.contains(
            "API: http://logbook.test/api/v1/logs/api_calls?tenant=acme&bot=Order+%3Cbot%3E&outcome=error&from=2026-11-30T11%3A00%3A00Z"
        ), "{}", email.text);
        assert!(email.text.contains("Dashboard: http://grafana.test/d/logbook-api-calls?var-tenant=acme&var-bot=Order+%3Cbot%3E"));
        assert!(email.html.contains("Order &lt;bot&gt;"), "{}", email.html);
        assert!(!email.html.contains("Order <bot>"));
    }

    #[test]
    fn error_rate_email_states_the_rate_and_counts() {
        let email = render(
            &Context::ErrorRate {
                tenant: String::new(),
                integration: "Xero".into(),
                failed: 3,
                finished: 10,
                threshold: 0.3,
                window: Duration::from_secs(86_400),
                last_error: "token expired".into(),
                since: datetime!(2026-11-30 12:00 UTC),
            },
            &links(),
        );
        assert_eq!(
            email.subject,
            "[logbook] Integration Xero: 30% of sync runs failed"
        );
        assert!(
            email.text.contains("Error rate: 30% (3 of 10 sync runs)"),
            "{}",
            email.text
        );
        assert!(email.text.contains("Tenant: (none)"));
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "x".repeat(2000);
        assert_eq!(clip(&long).chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
