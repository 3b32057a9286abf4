//! The sender's contract through a real logbook: a rejected record is findable by SQL from
//! its `otel_logs` row and counted by sending service; the dry run is authenticated like
//! ingest, answers per record and stores nothing.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use serde_json::Value as Json;

use crate::harness::test_db;
use crate::ingest::{FAST, api_call, count_where, kv, request, send_logs, wait_for};
use crate::logbook::{Logbook, Transport};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn rejected_records_are_listed_by_sql_and_counted_by_service() {
    let db = test_db("contract_rejected_records").await;
    let logbook = Logbook::start(&db, FAST).await;
    let mut seconds = api_call("late-bot", "u1");
    seconds.attributes.retain(|kv| kv.key != "url.full");
    seconds
        .attributes
        .push(kv("logbook.tenant", Value::StringValue("acme".into())));
    let mut wrong_name = api_call("late-bot", "u2");
    wrong_name.event_name = "logbook.api_calls".into();
    let mut typo = api_call("late-bot", "u3");
    typo.attributes
        .push(kv("logbook.duraton_ms", Value::IntValue(3)));
    let records = vec![seconds, wrong_name, typo, api_call("late-bot", "u4")];
    let status = send_logs(
        &logbook,
        Transport::HttpProtobuf,
        &request("billing", records),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        wait_for(&db, "otel_logs", "ServiceName = 'billing'", 4, WITHIN).await,
        4
    );
    let rejected: Vec<String> = db
        .client
        .query(
            "SELECT LogAttributes['logbook.rejected'] FROM otel_logs \
             WHERE LogAttributes['logbook.rejected'] != '' AND ServiceName = ? ORDER BY Body",
        )
        .bind("billing")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        rejected,
        [
            "api_calls.url: missing attribute url.full",
            "event.name: logbook.api_calls names no log kind (did you mean logbook.api_call?)",
        ]
    );
    let warned = count_where(
        &db,
        "otel_logs",
        "position(LogAttributes['logbook.warnings'], 'did you mean logbook.duration_ms') > 0",
    )
    .await;
    assert_eq!(warned, 1);
    // A batch's tables are inserted one after the other: wait for the typed rows too.
    assert_eq!(
        wait_for(&db, "api_calls", "bot = 'late-bot'", 2, WITHIN).await,
        2
    );
    // Counted by sending service, and reported where on-call people look.
    let metrics = logbook.metrics().await;
    for line in [
        r#"logbook_typed_rejected_records_total{column="url",service="billing",table="api_calls"} 1"#,
        r#"logbook_unknown_event_records_total{service="billing"} 1"#,
        r#"logbook_unknown_attributes_total{service="billing",table="api_calls"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    let reports = wait_for(
        &db,
        "monitoring_events",
        "log_type = 'logbook.router' AND position(message, 'from billing') > 0",
        3,
        WITHIN,
    )
    .await;
    assert_eq!(reports, 3);

    // The API lists them for the team that sent them, tenant-scoped, a page at a time.
    let findings = |token: String, query: Vec<(&'static str, String)>| {
        let url = format!("{}/api/v1/findings", logbook.api);
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .query(&query)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Json>().await.unwrap()
        }
    };
    let whys = |page: &Json| -> Vec<String> {
        let rows = page["rows"].as_array().unwrap();
        let mut out: Vec<String> = rows
            .iter()
            .map(|r| r["finding"].as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    };
    // Created before the first call: one token reload then knows them all.
    let owner = logbook.token("viewer", None, &[]);
    let (acme, other) = (
        logbook.token("viewer", Some("acme"), &[]),
        logbook.token("owner", Some("other"), &[]),
    );
    let billing = vec![("service", "billing".to_owned())];
    let all = findings(owner.clone(), billing.clone()).await;
    assert_eq!(whys(&all), rejected);
    assert!(
        all["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["service"] == "billing" && r["body"].as_str().unwrap().starts_with('u'))
    );
    let acme = findings(acme, billing.clone()).await;
    assert_eq!(whys(&acme), ["api_calls.url: missing attribute url.full"]);
    let other = findings(other, billing.clone()).await;
    assert_eq!(whys(&other), Vec::<String>::new());
    let mut by_kind = billing.clone();
    by_kind.push(("kind", "api_calls".into()));
    assert_eq!(whys(&findings(owner.clone(), by_kind).await), rejected[..1]);
    let mut warnings = billing.clone();
    warnings.push(("finding", "warnings".into()));
    let warned = whys(&findings(owner.clone(), warnings).await);
    assert_eq!(warned.len(), 1);
    assert!(
        warned[0].contains("did you mean logbook.duration_ms"),
        "{warned:?}"
    );
    let mut first = billing.clone();
    first.push(("limit", "1".into()));
    let page1 = findings(owner.clone(), first.clone()).await;
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    first.push(("cursor", cursor));
    let page2 = findings(owner, first).await;
    assert!(page2["next_cursor"].is_null());
    let mut both = [whys(&page1), whys(&page2)].concat();
    both.sort();
    assert_eq!(both, rejected);
}

#[tokio::test]
async fn the_dry_run_is_authenticated_answers_per_record_and_stores_nothing() {
    let db = test_db("contract_dry_run").await;
    let logbook = Logbook::start(
        &db,
        &format!("{FAST}[ingest.tokens]\nbilling = \"s3cret-token\"\n"),
    )
    .await;
    let mut late = api_call("dry-bot", "u1");
    late.attributes
        .push(kv("logbook.duration_ms", Value::DoubleValue(12.7)));
    let mut wrong = api_call("dry-bot", "u2");
    wrong
        .attributes
        .retain(|kv| kv.key != "http.request.method");
    let body = serde_json::to_vec(&request("billing", vec![late, wrong])).unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/dry-run/logs", logbook.http);
    let anonymous = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer s3cret-token")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let report: Json = response.json().await.unwrap();
    assert_eq!(report["rejected"], 1, "{report}");
    let first = &report["records"][0];
    assert_eq!(first["tables"][1]["table"], "api_calls", "{report}");
    assert_eq!(first["tables"][1]["columns"]["duration_ms"], 13, "{report}");
    assert_eq!(
        report["records"][1]["rejected"][0],
        "api_calls.method: missing attribute http.request.method"
    );
    // Nothing was queued or stored: a real request sent afterwards is all there is.
    let real = serde_json::to_vec(&request("billing", vec![api_call("real-bot", "u3")])).unwrap();
    let sent = client
        .post(format!("{}/v1/logs", logbook.http))
        .header("content-type", "application/json")
        .header("authorization", "Bearer s3cret-token")
        .body(real)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 200);
    assert_eq!(
        wait_for(&db, "api_calls", "bot = 'real-bot'", 1, WITHIN).await,
        1
    );
    // The batch's rows go to `api_calls` and `otel_logs` in separate inserts: either may be
    // visible first (in 1 of 3 suite runs `otel_logs` was still empty here).
    assert_eq!(wait_for(&db, "otel_logs", "1", 1, WITHIN).await, 1);
    assert_eq!(count_where(&db, "otel_logs", "1").await, 1);
    assert_eq!(count_where(&db, "api_calls", "1").await, 1);
}
