//! The example emails of docs/notifications.md are captured, not written: this test triggers
//! each rule, receives the emails with aiosmtpd, normalizes what changes from run to run, and
//! compares them with the doc's blocks. `LOGBOOK_UPDATE_DOCS=1` writes them into the doc
//! instead (then review the diff).

use std::collections::BTreeMap;
use std::time::Duration;

use logbook::notify::clock::Clock;
use logbook::schema::{self, RowId, Ts};
use regex::{Captures, Regex};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use crate::notify::{Fixture, fixture, insert};
use crate::smtp::{Received, SinkOptions};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/notifications.md");

/// The examples show the clock as if the test had started at this time.
const SHOWN_START: OffsetDateTime = datetime!(2026-11-30 12:00 UTC);

/// What an email shows that differs from run to run, made stable: every time (RFC 3339,
/// also URL-encoded, and Grafana's epoch milliseconds) is moved by the same offset, as if the
/// clock had started at [`SHOWN_START`]; line ends are `\n`. Host names are the fixture's
/// (`grafana.test`, `logbook.test`) and emails carry no ids, so nothing else varies.
struct Normalizer {
    offset: time::Duration,
    rfc3339: Regex,
    millis: Regex,
}

impl Normalizer {
    fn new(started: OffsetDateTime) -> Normalizer {
        Normalizer {
            offset: started - SHOWN_START,
            rfc3339: Regex::new(
                r"\d{4}-\d{2}-\d{2}T\d{2}(?::|%3A)\d{2}(?::|%3A)\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}(?::|%3A)\d{2})",
            )
            .unwrap(),
            millis: Regex::new(r"\bfrom=(\d{13})\b").unwrap(),
        }
    }

    fn apply(&self, text: &str) -> String {
        // Line ends depend on the transfer encoding lettre picks for the part.
        let text = text.replace("\r\n", "\n");
        let text = self.rfc3339.replace_all(&text, |c: &Captures| {
            let found = &c[0];
            let encoded = found.contains("%3A");
            let at = OffsetDateTime::parse(&found.replace("%3A", ":"), &Rfc3339).unwrap();
            let shown = (at - self.offset).format(&Rfc3339).unwrap();
            if encoded {
                shown.replace(':', "%3A")
            } else {
                shown
            }
        });
        let offset_ms = self.offset.whole_milliseconds();
        self.millis
            .replace_all(&text, |c: &Captures| {
                let ms: i128 = c[1].parse().unwrap();
                format!("from={}", ms - offset_ms)
            })
            .into_owned()
    }

    fn email(&self, email: &Received) -> String {
        self.apply(&format!(
            "Subject: {}\nTo: {}\n\n{}",
            email.subject,
            email.to.join(", "),
            email.text
        ))
    }
}

/// The rows that make each rule send one email, and the emails as received, by example name.
async fn capture(f: &Fixture) -> BTreeMap<&'static str, Received> {
    let notifier = f.notifier();
    let mut emails = BTreeMap::new();

    f.api_error("acme", "order-bot", "upstream said 502").await;
    notifier.evaluate_once().await.unwrap();
    emails.insert("first_error", f.emails_now(1).await.remove(0));

    f.advance(Duration::from_secs(5));
    f.sync_runs("Zendesk", 7, 3).await;
    notifier.evaluate_once().await.unwrap();
    emails.insert("error_rate", f.emails_now(2).await.remove(1));

    // A burst of twelve monitoring events, a second apart: ten are listed.
    f.advance(Duration::from_secs(15));
    let now = f.clock.now();
    let rows: Vec<_> = (0..12)
        .map(|i| {
            let (severity, number) = if i < 9 {
                ("error", 17)
            } else {
                ("critical", 21)
            };
            schema::MonitoringEvent {
                id: RowId(uuid::Uuid::now_v7()),
                time: Ts::from(now - Duration::from_secs(13 - i)),
                tenant: "acme".into(),
                severity: severity.into(),
                severity_number: number,
                message: format!("outgoing mail {i}: SMTP 550 mailbox unavailable"),
                log_type: "outgoing_mail".into(),
                ..Default::default()
            }
        })
        .collect();
    insert(&f.db, &rows).await;
    notifier.evaluate_once().await.unwrap();
    emails.insert("monitoring", f.emails_now(3).await.remove(2));
    emails
}

/// The fenced block after each `<!-- example: NAME -->` line of the doc: name → byte range of
/// its content.
fn blocks(doc: &str) -> BTreeMap<String, std::ops::Range<usize>> {
    let marker = Regex::new(r"(?m)^<!-- example: ([a-z_]+) -->\n```[a-z]*\n").unwrap();
    marker
        .captures_iter(doc)
        .map(|c| {
            let start = c.get(0).unwrap().end();
            let rest = &doc[start..];
            let end = match rest.starts_with("```\n") {
                true => start,
                false => start + rest.find("\n```\n").expect("a closed block") + 1,
            };
            (c[1].to_owned(), start..end)
        })
        .collect()
}

#[tokio::test]
async fn docs_notifications_md_shows_the_emails_as_received() {
    let f = fixture("notify_docs", SinkOptions::default(), "").await;
    let normalize = Normalizer::new(f.clock.now());
    let emails = capture(&f).await;
    let mut wanted: BTreeMap<String, String> = emails
        .iter()
        .map(|(name, email)| (name.to_string(), normalize.email(email)))
        .collect();
    wanted.insert(
        "first_error_html".into(),
        normalize.apply(&emails["first_error"].html),
    );

    let doc = std::fs::read_to_string(DOC).unwrap();
    let found = blocks(&doc);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        wanted.keys().collect::<Vec<_>>(),
        "docs/notifications.md must have one `<!-- example: NAME -->` block per example"
    );
    let stale: Vec<&String> = wanted
        .iter()
        .filter(|(name, text)| doc[found[*name].clone()] != ***text)
        .map(|(name, _)| name)
        .collect();
    if stale.is_empty() {
        return;
    }
    if std::env::var_os("LOGBOOK_UPDATE_DOCS").is_some() {
        let mut updated = doc.clone();
        // From the last block back, so that earlier ranges stay valid.
        let mut ranges: Vec<_> = found.iter().collect();
        ranges.sort_by_key(|(_, r)| std::cmp::Reverse(r.start));
        for (name, range) in ranges {
            updated.replace_range(range.clone(), &wanted[name]);
        }
        std::fs::write(DOC, updated).unwrap();
        return;
    }
    for name in &stale {
        eprintln!(
            "--- {name} in the doc:\n{}--- as received:\n{}",
            &doc[found[*name].clone()],
            wanted[*name]
        );
    }
    panic!(
        "docs/notifications.md shows {stale:?} not as received: run \
         `LOGBOOK_UPDATE_DOCS=1 cargo test --test it notify_docs` and review the diff"
    );
}

#[test]
fn normalizing_moves_every_time_by_the_same_offset() {
    let n = Normalizer::new(datetime!(2027-01-02 03:04:05 UTC));
    assert_eq!(
        n.apply("at 2027-01-02T03:04:04Z, from=2027-01-02T02%3A04%3A05Z&x=1 from=1798859045000&"),
        "at 2026-11-30T11:59:59Z, from=2026-11-30T11%3A00%3A00Z&x=1 from=1796040000000&"
    );
}

/// The links of an email's text part: (`Dashboard`, `API`).
fn links(email: &Received) -> (url::Url, url::Url) {
    let line = |name: &str| {
        let prefix = format!("{name}: ");
        let found = email.text.lines().find_map(|l| l.strip_prefix(&prefix));
        url::Url::parse(found.unwrap_or_else(|| panic!("no {name} link: {}", email.text))).unwrap()
    };
    (line("Dashboard"), line("API"))
}

/// Every link of every email works: the API link is a route of the OpenAPI document whose
/// query parameters it declares, and a GET with a valid token answers 200 with the rows the
/// email is about; the dashboard link names a dashboard of dashboards/ (by uid) and only
/// variables it defines.
#[tokio::test]
async fn every_link_in_the_emails_is_a_real_api_query_or_dashboard() {
    let f = fixture("notify_links", SinkOptions::default(), "").await;
    let emails = capture(&f).await;
    let logbook = crate::logbook::Logbook::start(&f.db, "").await;
    let token = logbook.token("owner", None, &[]);
    let http = reqwest::Client::new();
    let get = |url: String| http.get(url).bearer_auth(&token).send();
    let openapi: serde_json::Value = get(format!("{}/api/openapi.json", logbook.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dashboards: Vec<serde_json::Value> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect();

    for (name, email) in &emails {
        let (dashboard, api) = links(email);

        // The API link, against the OpenAPI document.
        assert_eq!(api.origin().ascii_serialization(), "http://logbook.test");
        let operation = &openapi["paths"][api.path()]["get"];
        assert!(
            operation.is_object(),
            "{name}: no GET {} in the OpenAPI document",
            api.path()
        );
        let declared: Vec<&str> = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for (key, _) in api.query_pairs() {
            assert!(
                declared.contains(&key.as_ref()),
                "{name}: {} declares no parameter {key} (only {declared:?})",
                api.path()
            );
        }
        // And against the running API: 200, with the rows the email is about.
        let mut real = url::Url::parse(&logbook.api)
            .unwrap()
            .join(api.path())
            .unwrap();
        real.set_query(api.query());
        let response = get(real.to_string()).await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::OK, "{name}: {real}: {body}");
        assert!(
            !body["rows"].as_array().unwrap().is_empty(),
            "{name}: {real} found no rows"
        );

        // The dashboard link, against dashboards/.
        assert_eq!(
            dashboard.origin().ascii_serialization(),
            "http://grafana.test"
        );
        let uid = dashboard.path().strip_prefix("/d/").unwrap();
        let board = dashboards
            .iter()
            .find(|d| d["uid"] == uid)
            .unwrap_or_else(|| panic!("{name}: no dashboard with uid {uid} in dashboards/"));
        let variables = board["templating"]["list"].as_array().unwrap();
        let names: Vec<&str> = variables
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        for (key, value) in dashboard.query_pairs() {
            match key.strip_prefix("var-") {
                Some(var) => {
                    let Some(variable) = variables.iter().find(|v| v["name"] == var) else {
                        panic!("{name}: dashboard {uid} has no variable {var} (only {names:?})");
                    };
                    // A custom variable takes only its options' values.
                    if variable["type"] == "custom" {
                        let options: Vec<&str> = variable["options"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|o| o["value"].as_str().unwrap())
                            .collect();
                        assert!(
                            options.contains(&value.as_ref()),
                            "{name}: {var}={value} is none of {options:?}"
                        );
                    }
                }
                None => assert!(["from", "to"].contains(&key.as_ref()), "{name}: {key}"),
            }
        }
    }
}
