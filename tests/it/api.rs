//! The HTTP API against a real `logbook serve` on the engine: filters, search, pagination,
//! detail, the auth matrix, SQL-injection strings, access logging and maintenance.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use logbook::schema::{ApiCall, LogKind, MailMessage, MonitoringEvent, RowId, Ts};
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{TestDb, test_db};
use crate::logbook::Logbook;

const NS: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * NS;

fn now_ns() -> i64 {
    Ts::now().0
}

async fn insert<T: clickhouse::RowOwned + clickhouse::RowWrite + logbook::schema::LogKind>(
    db: &TestDb,
    rows: &[T],
) {
    let mut insert = db.client.insert::<T>(T::TABLE.name).await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

/// A time as the API takes it (RFC 3339).
fn rfc3339(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns.into())
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn id() -> RowId {
    RowId(uuid::Uuid::now_v7())
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(logbook: &Logbook) -> Client {
        Client {
            base: logbook.api.clone(),
            http: reqwest::Client::new(),
        }
    }

    async fn get(
        &self,
        token: Option<&str>,
        path: &str,
        query: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base)).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// The rows of a list request that must succeed.
    async fn rows(&self, token: &str, kind: &str, query: &[(&str, &str)]) -> Vec<Value> {
        let (status, body) = self
            .get(Some(token), &format!("/api/v1/logs/{kind}"), query)
            .await;
        assert_eq!(status, StatusCode::OK, "{kind} {query:?}: {body}");
        body["rows"].as_array().unwrap().clone()
    }
}

fn call(time: i64, tenant: &str, bot: &str, outcome: &str, status: u16) -> ApiCall {
    ApiCall {
        id: id(),
        time: Ts(time),
        tenant: tenant.into(),
        bot: bot.into(),
        application: "Salesforce".into(),
        end_user: "alice".into(),
        method: "GET".into(),
        url: "https://api.example.com/v1/things".into(),
        status_code: status,
        outcome: outcome.into(),
        response_body: "{\"ok\":true}".into(),
        ..ApiCall::default()
    }
}

fn ids(rows: &[Value]) -> HashSet<String> {
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_filter_returns_exactly_the_matching_rows() {
    let db = test_db("api_filters").await;
    let logbook = Logbook::start(&db, "").await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &[]);
    let now = now_ns();
    let mut calls = vec![
        call(now - HOUR, "t1", "helpdesk", "success", 200),
        call(now - 2 * HOUR, "t1", "helpdesk", "error", 502),
        call(now - 3 * HOUR, "t2", "sales", "error", 404),
        call(now - 30 * HOUR, "t2", "sales", "success", 201),
    ];
    calls[1].method = "POST".into();
    calls[1].response_body = "upstream gateway timeout while calling zendesk".into();
    calls[2].application = "Zendesk".into();
    calls[3].end_user = "bob".into();
    // Past the list's preview length: search reads the whole column, not the preview.
    calls[3].response_body = format!("{}deepword", "padding ".repeat(40));
    insert(&db, &calls).await;
    let want = |picked: &[usize]| -> HashSet<String> {
        picked.iter().map(|&i| calls[i].id.0.to_string()).collect()
    };
    let from = rfc3339(now - 24 * HOUR);
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [usize]);
    let cases: &[Case] = &[
        (&[("outcome", "error")], &[1, 2]),
        (&[("outcome", "success")], &[0, 3]),
        (&[("method", "POST")], &[1]),
        (&[("status_code", "404")], &[2]),
        (&[("status_code_min", "400")], &[1, 2]),
        (&[("status_code", "200"), ("status_code", "201")], &[0, 3]),
        (&[("bot", "sales")], &[2, 3]),
        (&[("application", "Zendesk")], &[2]),
        (&[("end_user", "bob")], &[3]),
        (&[("tenant", "t1")], &[0, 1]),
        (&[("from", &from)], &[0, 1, 2]),
        (&[("q", "timeout")], &[1]),
        (&[("q", "gateway timeout")], &[1]),
        (&[("q", "zendesk"), ("outcome", "error")], &[1]),
        (&[("q", "nowhere")], &[]),
        (&[("q", "deepword")], &[3]),
        (
            &[("bot", "helpdesk"), ("outcome", "error"), ("from", &from)],
            &[1],
        ),
    ];
    for (query, expected) in cases {
        let rows = api.rows(&owner, "api_calls", query).await;
        assert_eq!(ids(&rows), want(expected), "{query:?}");
    }
    // Newest first, and list pages carry previews, not whole bodies.
    let rows = api.rows(&owner, "api_calls", &[]).await;
    let times: Vec<&str> = rows.iter().map(|r| r["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);

    // Mail: failed or pending only; monitoring: severity at or above.
    let mail = |status: &str| MailMessage {
        id: id(),
        time: Ts(now),
        direction: "outgoing".into(),
        mailbox: "support".into(),
        status: status.into(),
        ..MailMessage::default()
    };
    let mails = [mail("sent"), mail("failed"), mail("pending")];
    insert(&db, &mails).await;
    let rows = api
        .rows(
            &owner,
            "mail_messages",
            &[("status", "failed"), ("status", "pending")],
        )
        .await;
    assert_eq!(
        ids(&rows),
        [&mails[1], &mails[2]]
            .iter()
            .map(|m| m.id.0.to_string())
            .collect()
    );
    let event = |severity: &str, number: u8| MonitoringEvent {
        id: id(),
        time: Ts(now),
        severity: severity.into(),
        severity_number: number,
        message: format!("{severity} happened"),
        log_type: "incoming_mail".into(),
        ..MonitoringEvent::default()
    };
    let events = [event("info", 9), event("warning", 13), event("error", 17)];
    insert(&db, &events).await;
    let rows = api
        .rows(
            &owner,
            "monitoring_events",
            &[("severity_number_min", "13"), ("log_type", "incoming_mail")],
        )
        .await;
    assert_eq!(ids(&rows).len(), 2);

    // Bad input: a clear 422 naming the problem.
    for (query, needle) in [
        (&[("outcome", "meh")][..], "success, error"),
        (&[("nope", "1")][..], "unknown parameter"),
        (&[("status_code", "abc")][..], "whole number"),
        (&[("limit", "100000")][..], "limit"),
        (&[("from", "yesterday")][..], "RFC 3339"),
        (&[("cursor", "garbage")][..], "cursor"),
    ] {
        let (status, body) = api.get(Some(&owner), "/api/v1/logs/api_calls", query).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query:?}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
    }
    let (status, _) = api
        .get(Some(&owner), "/api/v1/logs/no_such_kind", &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Text that would change a statement it was pasted into.
const EVIL: [&str; 9] = [
    "x' OR '1'='1",
    "\\' OR 1=1 --",
    "{p0:String}",
    "a\\\\b",
    "/* comment */ bot",
    "'; DROP TABLE api_calls; --",
    "ünïcödé 日本語 😀",
    "tab\there\nnewline",
    "%' LIKE '%",
];

/// A list request's parameters.
type Query<'a> = Vec<(&'a str, &'a str)>;

/// Every filter `/api/v1/kinds` declares, on every kind: two rows that differ only in that
/// column (and in time), and each value, bound and range selects exactly its row. Text values
/// carry SQL-injection strings; other filters refuse them.
#[tokio::test]
async fn every_declared_filter_of_every_kind_selects_exactly_its_rows() {
    let db = test_db("api_every_filter").await;
    // Hundreds of requests from one token, as fast as they are answered.
    let logbook = Logbook::start(
        &db,
        "[api]\nrate_limit_per_second = 100000\nrate_limit_burst = 100000\n",
    )
    .await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &["view_audit_logs"]);
    let (status, kinds) = api.get(Some(&owner), "/api/v1/kinds", &[]).await;
    assert_eq!(status, StatusCode::OK, "{kinds}");
    let kinds = kinds.as_array().unwrap();
    assert!(kinds.len() >= 15, "{kinds:?}");
    let now = now_ns();
    let (older, newer) = (now - 2 * HOUR, now - HOUR);
    let between = rfc3339(now - 90 * 60 * NS);
    // Every query also says how far back to look: one time window besides the first.
    let since = rfc3339(now - 3 * HOUR);
    let mut cases = 0;
    for kind in kinds {
        let name = kind["name"].as_str().unwrap();
        let filters = kind["filters"].as_array().unwrap();
        assert!(!filters.is_empty(), "{name} has no filters");
        // Each filter's two rows: (tenant, filter, [value of the older row, of the newer]).
        let mut rows = Vec::new();
        let mut inserts = String::new();
        for (n, filter) in filters.iter().enumerate() {
            let column = filter["name"].as_str().unwrap();
            let one_of = filter["one_of"].as_array().unwrap();
            let values: [Value; 2] = match filter["type"].as_str().unwrap() {
                _ if one_of.len() >= 2 => [one_of[0].clone(), one_of[1].clone()],
                "bool" => [Value::Bool(false), Value::Bool(true)],
                "number" => [Value::from(1), Value::from(2)],
                "text" if column == "trace_id" => [
                    Value::from(format!("{n:032x}")),
                    Value::from(format!("{:032x}", n + 1000)),
                ],
                "text" => [
                    Value::from(format!("{} {column}{n}", EVIL[n % EVIL.len()])),
                    Value::from(format!("{} {column}{n}", EVIL[(n + 1) % EVIL.len()])),
                ],
                other => panic!("{name}.{column}: filter type {other}"),
            };
            let tenant = format!("case-{n}");
            let mut ids = Vec::new();
            for (value, time) in values.iter().zip([older, newer]) {
                let id = uuid::Uuid::now_v7().to_string();
                let mut row = serde_json::json!({
                    "id": id,
                    "time": rfc3339(time),
                    "tenant": tenant,
                });
                row[column] = value.clone();
                inserts.push_str(&format!("{row}\n"));
                ids.push(id);
            }
            let free_text = one_of.is_empty() && filter["type"] == "text";
            rows.push((tenant, column, values, ids, free_text));
        }
        db.client
            .query(&format!(
                "INSERT INTO `{name}` SETTINGS date_time_input_format = 'best_effort' \
                 FORMAT JSONEachRow\n{inserts}"
            ))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (tenant, column, values, row_ids, free_text) in &rows {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let (v0, v1) = (text(&values[0]), text(&values[1]));
            // Rows of the other filters' cases differ in tenant; the tenant filter's own rows
            // are told apart by their values alone.
            let scope: Vec<(&str, &str)> = if *column == "tenant" {
                Vec::new()
            } else {
                vec![("tenant", tenant.as_str())]
            };
            let mut expected: Vec<(Query, Vec<&str>)> = vec![
                (vec![(column, v0.as_str())], vec![&row_ids[0]]),
                (vec![(column, v1.as_str())], vec![&row_ids[1]]),
                (
                    vec![(column, v0.as_str()), (column, v1.as_str())],
                    vec![&row_ids[0], &row_ids[1]],
                ),
                (
                    vec![
                        (column, v0.as_str()),
                        (column, v1.as_str()),
                        ("to", &between),
                    ],
                    vec![&row_ids[0]],
                ),
                (
                    vec![
                        (column, v0.as_str()),
                        (column, v1.as_str()),
                        ("from", &between),
                    ],
                    vec![&row_ids[1]],
                ),
            ];
            if !free_text {
                // Not text: a string that is no value of the filter is refused, not run.
                let (status, body) = api
                    .get(
                        Some(&owner),
                        &format!("/api/v1/logs/{name}"),
                        &[(column, EVIL[0])],
                    )
                    .await;
                assert_eq!(
                    status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{name}.{column}: {body}"
                );
            }
            let (min, max) = (format!("{column}_min"), format!("{column}_max"));
            if values[0].is_number() {
                expected.push((vec![(min.as_str(), "2")], vec![&row_ids[1]]));
                expected.push((vec![(max.as_str(), "1")], vec![&row_ids[0]]));
            }
            for (mut query, want) in expected {
                query.extend(scope.iter().copied());
                if query.iter().all(|(key, _)| *key != "from") {
                    query.push(("from", &since));
                }
                let got = api.rows(&owner, name, &query).await;
                assert_eq!(
                    ids(&got),
                    want.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
                    "{name} {query:?}"
                );
                cases += 1;
            }
        }
    }
    assert!(cases > 200, "{cases} cases");
}

#[tokio::test]
async fn pagination_walks_100k_rows_once_each_while_rows_arrive() {
    let db = test_db("api_pagination").await;
    let logbook = Logbook::start(
        &db,
        "[api]\nrate_limit_per_second = 1000\nrate_limit_burst = 1000\n",
    )
    .await;
    let api = Client::new(&logbook);
    let token = logbook.token("bot_builder", None, &[]);
    let start = now_ns();
    // 100,000 rows over the last two days, many sharing a timestamp (ties broken by id).
    db.client
        .query(
            "INSERT INTO api_calls (id, time, tenant, bot, method, url, outcome) \
             SELECT generateUUIDv7(number), fromUnixTimestamp64Nano({start:Int64} - intDiv(number, 3) * 1700000000), \
             'acme', 'seed', 'GET', 'https://x.example', 'success' FROM numbers(100000)",
        )
        .param("start", start - HOUR)
        .execute()
        .await
        .unwrap();
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let rows: Vec<ApiCall> = (0..50)
                    .map(|_| call(now_ns(), "acme", "seed", "success", 200))
                    .collect();
                insert(&db, &rows).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("bot", "seed"), ("limit", "1000")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let (status, body) = api
            .get(Some(&token), "/api/v1/logs/api_calls", &query)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for row in body["rows"].as_array().unwrap() {
            let id = row["id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "row {id} seen twice");
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    writer.await.unwrap();
    assert!(pages >= 100, "{pages} pages of at most 1000");
    let (status, body) = api
        .get(
            Some(&token),
            "/api/v1/logs/api_calls",
            &[("bot", "seed"), ("limit", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let seeded: u64 = db
        .client
        .query("SELECT count() FROM api_calls WHERE time < fromUnixTimestamp64Nano({s:Int64})")
        .param("s", start)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(seeded, 100_000);
    // Every seeded row exactly once; rows that arrived during the walk may or may not be in it.
    let arrived = seen.len() - 100_000.min(seen.len());
    assert!(
        seen.len() >= 100_000 && arrived <= 1000,
        "{} rows seen",
        seen.len()
    );
    assert!(body["next_cursor"].is_string());
}

/// A page is read in time windows back from its newest time (half an hour, then growing by
/// what the rows found say is still needed): rows on both sides of the first windows' edges,
/// and pages that end inside a window, come out once each and in order, with and without
/// `from` and `to`.
#[tokio::test]
async fn pages_spanning_the_time_windows_list_every_row_once_in_order() {
    let db = test_db("api_windows").await;
    let logbook = Logbook::start(&db, "").await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &[]);
    let now = now_ns();
    let minute = 60 * NS;
    // Ages from the future (a sender's clock ahead) to five days, a row on each side of the
    // first window's edge (30 minutes): with pages of 1, 3 and 50 rows and `from`/`to`, the
    // windows after it start and end at many places between them.
    let ages = [
        -10 * minute,
        10 * minute,
        30 * minute - NS,
        30 * minute + NS,
        2 * HOUR,
        4 * HOUR + 29 * minute,
        4 * HOUR + 31 * minute,
        30 * HOUR,
        40 * HOUR + 29 * minute,
        40 * HOUR + 31 * minute,
        120 * HOUR,
    ];
    let mut calls: Vec<ApiCall> = ages
        .iter()
        .map(|age| call(now - age, "t1", "windows", "success", 200))
        .collect();
    // Two rows at the same time: the id breaks the tie, in ClickHouse's UUID order (second
    // half first), which these two ids' text order contradicts.
    calls.push(call(now - 2 * HOUR, "t1", "windows", "success", 200));
    let (first, tied) = (
        ages.iter().position(|&age| age == 2 * HOUR).unwrap(),
        ages.len(),
    );
    calls[first].id = RowId(uuid::Uuid::from_u64_pair(u64::MAX, 1));
    calls[tied].id = RowId(uuid::Uuid::from_u64_pair(1, u64::MAX));
    insert(&db, &calls).await;
    let mut newest_first: Vec<(i64, (u64, u64), String)> = calls
        .iter()
        .map(|c| {
            let (first, second) = c.id.0.as_u64_pair();
            (c.time.0, (second, first), c.id.0.to_string())
        })
        .collect();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    let expected = |keep: &dyn Fn(i64) -> bool| -> Vec<String> {
        newest_first
            .iter()
            .filter(|(t, _, _)| keep(*t))
            .map(|(_, _, id)| id.clone())
            .collect()
    };
    let (from, to) = (rfc3339(now - 100 * HOUR), rfc3339(now - HOUR + 30 * NS));
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<String>);
    let cases: Vec<Case> = vec![
        (vec![], expected(&|_| true)),
        (vec![("from", &from)], expected(&|t| t >= now - 100 * HOUR)),
        (vec![("to", &to)], expected(&|t| t < now - HOUR + 30 * NS)),
        (
            vec![("from", &from), ("to", &to)],
            expected(&|t| t >= now - 100 * HOUR && t < now - HOUR + 30 * NS),
        ),
    ];
    for (filters, want) in cases {
        for limit in ["1", "3", "50"] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query = filters.clone();
                query.extend([("bot", "windows"), ("limit", limit)]);
                if let Some(c) = &cursor {
                    query.push(("cursor", c));
                }
                let (status, body) = api
                    .get(Some(&owner), "/api/v1/logs/api_calls", &query)
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                for row in body["rows"].as_array().unwrap() {
                    seen.push(row["id"].as_str().unwrap().to_owned());
                }
                match body["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            assert_eq!(seen, want, "{filters:?} limit {limit}");
        }
    }
}

/// The engine here (ClickHouse 26.9) has `use_skip_indexes_on_data_read`, on by default, which
/// on tables with projections skips no granule, and `query_plan_direct_read_from_text_index`,
/// which keeps searches off the `by_time` projection: API queries turn both off.
/// The limits every API query carries hold on the engine: no writes, at most so many rows
/// returned or read; a request they stop answers 503 with a JSON error, not a 500.
#[tokio::test]
async fn queries_run_read_only_within_their_limits() {
    let db = test_db("api_limits").await;
    let limits = logbook::query::QueryLimits {
        max_result_rows: 5,
        ..Default::default()
    };
    let write = limits
        .apply(db.client.query("CREATE TABLE t (x UInt8) ENGINE = Memory"))
        .execute()
        .await
        .unwrap_err();
    assert!(write.to_string().contains("Code: 164."), "{write}");
    let rows = limits
        .apply(db.client.query("SELECT number FROM numbers(10)"))
        .fetch_all::<u64>()
        .await
        .unwrap_err();
    assert!(rows.to_string().contains("Code: 396."), "{rows}");
    let five = limits
        .apply(db.client.query("SELECT number FROM numbers(5)"))
        .fetch_all::<u64>()
        .await
        .unwrap();
    assert_eq!(five, [0, 1, 2, 3, 4]);

    let logbook = Logbook::start(&db, "[api.limits]\nmax_rows_to_read = 100\n").await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &[]);
    let now = now_ns();
    let calls: Vec<ApiCall> = (0..5000)
        .map(|i| call(now - i * NS, "t", "b", "success", 200))
        .collect();
    insert(&db, &calls).await;
    let (status, body) = api.get(Some(&owner), "/api/v1/logs/api_calls", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn queries_set_the_engines_index_settings_where_it_has_them() {
    let db = test_db("api_skip_indexes").await;
    let sql = "SELECT toBool(getSetting('use_skip_indexes_on_data_read')), \
               toBool(getSetting('query_plan_direct_read_from_text_index'))";
    let plain: (bool, bool) = db.client.query(sql).fetch_one().await.unwrap();
    assert_eq!(
        plain,
        (true, true),
        "the engine's defaults changed: the workarounds may be moot"
    );
    let query = db.client.query(sql);
    let set: (bool, bool) = logbook::query::index_settings(&db.client, query)
        .await
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(set, (false, false));
}

/// The search the API builds (`hasToken` over the searchable columns, values as bound
/// parameters, the API's index settings) is answered by the columns' `text` indexes on this
/// engine: a word no row has leaves no granule to read.
#[tokio::test]
async fn search_is_answered_by_the_text_indexes() {
    let (db, _) = crate::schema::migrated("api_text_index", "").await;
    let now = now_ns();
    for (i, body) in ["plain body", "needle7 in a body", "another body"]
        .iter()
        .enumerate()
    {
        let mut row = call(now - i as i64 * NS, "t1", "b", "success", 200);
        row.response_body = (*body).into();
        insert(&db, &[row]).await;
    }
    let search = |word: &str| {
        logbook::query::parse_list(
            ApiCall::TABLE,
            &[("q".to_owned(), word.to_owned())],
            None,
            50,
            1000,
        )
        .unwrap()
        .filters
    };
    let found = search("needle7");
    let sql = format!("SELECT count() FROM api_calls WHERE {}", found.sql());
    assert!(
        sql.contains("hasToken(`response_body`, {p0:String})"),
        "{sql}"
    );
    let query = found.apply(db.client.query(&sql));
    let count: u64 = logbook::query::index_settings(&db.client, query)
        .await
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, 1);
    let absent = search("absent");
    let sql = format!(
        "EXPLAIN indexes = 1 SELECT count() FROM api_calls WHERE {}",
        absent.sql()
    );
    let query = absent
        .apply(db.client.query(&sql))
        .with_setting("use_query_condition_cache", "0");
    let plan: Vec<String> = logbook::query::index_settings(&db.client, query)
        .await
        .fetch_all()
        .await
        .unwrap();
    let plan = plan.join("\n");
    for column in ["url", "request_body", "response_body", "error_message"] {
        assert!(plan.contains(&format!("text_{column}")), "{plan}");
    }
    let left = plan
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Granules: "))
        .next_back()
        .and_then(|g| g.split('/').next());
    assert_eq!(left, Some("0"), "{plan}");
}

#[tokio::test]
async fn search_injection_strings_are_literal_values() {
    let db = test_db("api_injection").await;
    let logbook = Logbook::start(
        &db,
        "[api]\nrate_limit_per_second = 1000\nrate_limit_burst = 1000\n",
    )
    .await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &[]);
    let evil = EVIL;
    let now = now_ns();
    let rows: Vec<ApiCall> = evil
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut row = call(now - i as i64 * NS, text, text, "success", 200);
            row.end_user = (*text).to_owned();
            row.application = (*text).to_owned();
            row.response_body = format!("marker{i} {text}");
            row
        })
        .collect();
    insert(&db, &rows).await;
    for (i, text) in evil.iter().enumerate() {
        let want: HashSet<String> = [rows[i].id.0.to_string()].into();
        for filter in ["bot", "application", "end_user", "tenant", "method"] {
            let (status, body) = api
                .get(Some(&owner), "/api/v1/logs/api_calls", &[(filter, text)])
                .await;
            assert_eq!(status, StatusCode::OK, "{filter}={text:?}: {body}");
            let got = ids(body["rows"].as_array().unwrap());
            let expected = if filter == "method" {
                HashSet::new()
            } else {
                want.clone()
            };
            assert_eq!(got, expected, "{filter}={text:?}");
        }
        let (status, body) = api
            .get(Some(&owner), "/api/v1/logs/api_calls", &[("q", text)])
            .await;
        if logbook::query::filter::words(text).is_empty() {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text:?}");
        } else {
            assert_eq!(status, StatusCode::OK, "q={text:?}: {body}");
            assert!(
                ids(body["rows"].as_array().unwrap()).contains(&rows[i].id.0.to_string()),
                "q={text:?}"
            );
        }
    }
    let count: u64 = db
        .client
        .query("SELECT count() FROM api_calls")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, evil.len() as u64, "the table is intact");
}

#[tokio::test]
async fn detail_returns_the_whole_row_related_rows_and_spans() {
    let db = test_db("api_detail").await;
    let logbook = Logbook::start(&db, "").await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &[]);
    let now = now_ns();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut failed = call(now, "t1", "helpdesk", "error", 500);
    failed.trace_id = trace.into();
    failed.response_body = format!("{}END", "x".repeat(5000));
    let mut sibling = call(now - NS, "t1", "helpdesk", "success", 200);
    sibling.trace_id = trace.into();
    insert(&db, &[failed.clone(), sibling.clone()]).await;
    let event = MonitoringEvent {
        id: id(),
        time: Ts(now),
        tenant: "t1".into(),
        severity: "error".into(),
        severity_number: 17,
        message: "calls failing".into(),
        related_log_id: failed.id.0.to_string(),
        ..MonitoringEvent::default()
    };
    insert(&db, std::slice::from_ref(&event)).await;
    db.client
        .query(
            "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, ServiceName, Duration) \
             VALUES (fromUnixTimestamp64Nano({t:Int64}), {trace:String}, 'a1b2c3d4e5f60718', 'POST /crm', 'bots', 1500)",
        )
        .param("t", now)
        .param("trace", trace)
        .execute()
        .await
        .unwrap();

    let (status, list) = api
        .get(
            Some(&owner),
            "/api/v1/logs/api_calls",
            &[("outcome", "error")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let preview = list["rows"][0]["response_body"].as_str().unwrap();
    assert!(preview.len() < 5000 && !preview.ends_with("END"));

    let path = format!("/api/v1/logs/api_calls/{}", failed.id.0);
    let (status, detail) = api.get(Some(&owner), &path, &[]).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert!(
        detail["row"]["response_body"]
            .as_str()
            .unwrap()
            .ends_with("END")
    );
    let related: Vec<(&str, &str)> = detail["related"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["id"].as_str().unwrap()))
        .collect();
    assert_eq!(related, [("api_calls", sibling.id.0.to_string().as_str())]);
    assert_eq!(detail["spans"][0]["name"], "POST /crm");

    let path = format!("/api/v1/logs/monitoring_events/{}", event.id.0);
    let (status, detail) = api.get(Some(&owner), &path, &[]).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["related"].as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(detail["related"][0]["relation"], "related_log_id");
    assert_eq!(detail["related"][0]["kind"], "api_calls");
    assert_eq!(detail["related"][0]["id"], failed.id.0.to_string());

    let (status, _) = api
        .get(
            Some(&owner),
            &format!("/api/v1/logs/api_calls/{}", uuid::Uuid::now_v7()),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .get(Some(&owner), "/api/v1/logs/api_calls/not-a-uuid", &[])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Every route × every kind of caller.
#[tokio::test]
async fn auth_matrix_every_route_and_caller() {
    let db = test_db("api_auth").await;
    let logbook = Logbook::start(
        &db,
        "[api]\nrate_limit_per_second = 1000\nrate_limit_burst = 1000\n",
    )
    .await;
    let api = Client::new(&logbook);
    let t1 = call(now_ns(), "t1", "b", "success", 200);
    let t2 = call(now_ns(), "t2", "b", "success", 200);
    insert(&db, &[t1.clone(), t2.clone()]).await;
    let owner = logbook.token("owner", None, &[]);
    let supervisor = logbook.token("supervisor", None, &[]);
    let bot_builder = logbook.token("bot_builder", None, &[]);
    let viewer = logbook.token("viewer", None, &[]);
    let auditor = logbook.token("viewer", None, &["view_audit_logs"]);
    let tenant = logbook.token("owner", Some("t1"), &["view_audit_logs"]);
    let revoked = logbook.token("owner", None, &[]);
    let list = String::from_utf8(logbook.cli(&["token", "list"]).stdout).unwrap();
    let revoked_id = list
        .lines()
        .rfind(|l| l.contains("owner-all"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        logbook
            .cli(&["token", "revoke", &revoked_id])
            .status
            .success()
    );
    assert!(
        !logbook
            .cli(&["token", "revoke", &revoked_id])
            .status
            .success()
    );
    assert!(!list.contains("lbk_"), "token list never shows secrets");

    use StatusCode as S;
    let (ok, unauth, forbidden) = (S::OK, S::UNAUTHORIZED, S::FORBIDDEN);
    let d1 = format!("/api/v1/logs/api_calls/{}", t1.id.0);
    let d2 = format!("/api/v1/logs/api_calls/{}", t2.id.0);
    // (route, [no token, viewer, bot_builder, supervisor, owner, tenant t1, revoked, auditor])
    let matrix: Vec<(&str, [S; 8])> = vec![
        (
            "/api/openapi.json",
            [unauth, ok, ok, ok, ok, ok, unauth, ok],
        ),
        ("/api/v1/kinds", [unauth, ok, ok, ok, ok, ok, unauth, ok]),
        ("/api/v1/findings", [unauth, ok, ok, ok, ok, ok, unauth, ok]),
        (
            "/api/v1/logs/api_calls",
            [unauth, forbidden, ok, ok, ok, ok, unauth, forbidden],
        ),
        (
            "/api/v1/logs/mail_messages",
            [unauth, ok, ok, ok, ok, ok, unauth, ok],
        ),
        (
            "/api/v1/logs/audit_activity",
            [
                unauth, forbidden, forbidden, forbidden, forbidden, ok, unauth, ok,
            ],
        ),
        (
            "/api/v1/logs/access_logs",
            [
                unauth, forbidden, forbidden, forbidden, forbidden, ok, unauth, ok,
            ],
        ),
        (&d1, [unauth, forbidden, ok, ok, ok, ok, unauth, forbidden]),
        (
            &d2,
            [
                unauth,
                forbidden,
                ok,
                ok,
                ok,
                S::NOT_FOUND,
                unauth,
                forbidden,
            ],
        ),
        (
            "/api/v1/maintenance/log-files",
            [
                unauth,
                forbidden,
                forbidden,
                forbidden,
                S::NOT_FOUND,
                forbidden,
                unauth,
                forbidden,
            ],
        ),
        (
            "/api/v1/nothing-here",
            [
                unauth,
                S::NOT_FOUND,
                S::NOT_FOUND,
                S::NOT_FOUND,
                S::NOT_FOUND,
                S::NOT_FOUND,
                unauth,
                S::NOT_FOUND,
            ],
        ),
    ];
    let callers = [
        None,
        Some(&viewer),
        Some(&bot_builder),
        Some(&supervisor),
        Some(&owner),
        Some(&tenant),
        Some(&revoked),
        Some(&auditor),
    ];
    // A revocation reaches the running server within api.token_refresh.
    let deadline = Instant::now() + Duration::from_secs(15);
    while api.get(Some(&revoked), "/api/v1/kinds", &[]).await.0 != unauth {
        assert!(Instant::now() < deadline, "revoked token still accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (route, expected) in &matrix {
        for (caller, want) in callers.iter().zip(expected) {
            let (status, body) = api.get(caller.map(|s| s.as_str()), route, &[]).await;
            assert_eq!(
                status,
                *want,
                "{route} as caller #{:?}: {body}",
                callers.iter().position(|c| c == caller)
            );
            if status != ok && route.starts_with("/api/") {
                assert!(body["error"].is_string(), "{route}: JSON error body");
            }
        }
    }
    // The routes that change things, and the rest: a caller allowed through gets the route's
    // own answer (a purge with a wrong confirmation: 422; no log file configured: 404).
    let (supervisors, owners) = (
        [
            unauth, forbidden, forbidden, ok, ok, forbidden, unauth, forbidden,
        ],
        [
            unauth, forbidden, forbidden, forbidden, ok, forbidden, unauth, forbidden,
        ],
    );
    let owners_get = |status: S| {
        let mut row = owners;
        row[4] = status;
        row
    };
    let changes: Vec<(reqwest::Method, &str, Option<Value>, [S; 8])> = vec![
        (
            reqwest::Method::GET,
            "/api/v1/integrations",
            None,
            [unauth, ok, ok, ok, ok, ok, unauth, ok],
        ),
        (reqwest::Method::GET, "/api/v1/settings", None, supervisors),
        (
            reqwest::Method::PUT,
            "/api/v1/settings/notify.rules.paused",
            Some(Value::Bool(false)),
            supervisors,
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/settings/notify.rules.paused",
            None,
            supervisors,
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/settings/log.level",
            Some(Value::from("info")),
            owners,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/maintenance/purge",
            Some(serde_json::json!({"kind": "api_calls", "tenant": "t9", "confirm": "no"})),
            owners_get(S::UNPROCESSABLE_ENTITY),
        ),
        (
            reqwest::Method::GET,
            "/api/v1/maintenance/log-files/logbook.log",
            None,
            owners_get(S::NOT_FOUND),
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/maintenance/log-files/logbook.log?confirm=logbook.log",
            None,
            owners_get(S::NOT_FOUND),
        ),
    ];
    for (method, route, body, expected) in &changes {
        for (caller, want) in callers.iter().zip(expected) {
            let mut request =
                reqwest::Client::new().request(method.clone(), format!("{}{route}", logbook.api));
            if let Some(token) = caller {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert_eq!(
                status,
                *want,
                "{method} {route} as caller #{:?}: {text}",
                callers.iter().position(|c| c == caller)
            );
            if status != ok {
                let error: Value = serde_json::from_str(&text).unwrap();
                assert!(error["error"].is_string(), "{route}: JSON error body");
            }
        }
    }

    // Open routes stay open.
    for route in ["/healthz", "/readyz", "/metrics"] {
        assert!(api.get(None, route, &[]).await.0 != unauth, "{route}");
    }
    // A tenant-bound token never sees another tenant's rows, whatever the filters say.
    let rows = api.rows(&tenant, "api_calls", &[("tenant", "t2")]).await;
    assert!(rows.is_empty());
    let rows = api.rows(&tenant, "api_calls", &[]).await;
    assert_eq!(ids(&rows), [t1.id.0.to_string()].into());

    // Every authenticated request is in access_logs: who, IP, route, status.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = api
            .rows(
                &auditor,
                "access_logs",
                &[
                    ("category", "api_request"),
                    ("status_code", "403"),
                    ("limit", "1000"),
                ],
            )
            .await;
        let hit = rows.iter().any(|r| {
            r["user_name"] == "viewer-all"
                && r["path"] == "GET /api/v1/logs/api_calls"
                && r["ip"] == "127.0.0.1"
        });
        if hit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access_logs row for the viewer's 403: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = api
        .rows(&auditor, "access_logs", &[("category", "login_failed")])
        .await;
    assert!(
        !failed.is_empty(),
        "unknown tokens are recorded as failed logins"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_per_token() {
    let db = test_db("api_rate_limit").await;
    let logbook = Logbook::start(
        &db,
        "[api]\nrate_limit_per_second = 1\nrate_limit_burst = 3\n",
    )
    .await;
    let api = Client::new(&logbook);
    let (a, b) = (
        logbook.token("viewer", None, &[]),
        logbook.token("viewer", None, &[]),
    );
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.get(Some(&a), "/api/v1/kinds", &[]).await.0);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        api.get(Some(&b), "/api/v1/kinds", &[]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn purge_deletes_a_tenants_rows_and_is_audited() {
    let db = test_db("api_purge").await;
    let logbook = Logbook::start(&db, "").await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &["view_audit_logs"]);
    let supervisor = logbook.token("supervisor", None, &[]);
    let now = now_ns();
    insert(
        &db,
        &[
            call(now, "gone", "b", "success", 200),
            call(now, "kept", "b", "success", 200),
        ],
    )
    .await;
    let purge = |token: &str, body: Value| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/maintenance/purge", logbook.api))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let body = serde_json::json!({"kind": "api_calls", "tenant": "gone", "confirm": "api_calls"});
    assert_eq!(
        purge(&supervisor, body.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let unconfirmed = serde_json::json!({"kind": "api_calls", "tenant": "gone", "confirm": "yes"});
    assert_eq!(
        purge(&owner, unconfirmed).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let response = purge(&owner, body).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["method"], "lightweight_delete");
    assert_eq!(result["rows"], 1);
    let rows = api.rows(&owner, "api_calls", &[]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["tenant"], "kept");
    let audit = api
        .rows(&owner, "audit_activity", &[("category", "maintenance")])
        .await;
    assert_eq!(audit.len(), 1);
    assert!(
        audit[0]["summary"]
            .as_str()
            .unwrap()
            .contains("purged 1 rows of api_calls")
    );
}

#[tokio::test]
async fn purge_of_whole_days_drops_their_partitions_and_a_time_range_deletes_rows() {
    let db = test_db("api_purge_days").await;
    let logbook = Logbook::start(&db, "").await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &[]);
    let day = 24 * HOUR;
    let today = now_ns() / day * day;
    let purged_day = today - 3 * day;
    // Error rows are also copied into `errors`, which a purge of their kind clears too.
    let rows = [
        call(purged_day + HOUR, "t1", "b", "success", 200),
        call(purged_day + 23 * HOUR, "t2", "b", "error", 500),
        call(purged_day + day + HOUR, "t1", "b", "error", 500),
        call(purged_day + day + 2 * HOUR, "t1", "b", "error", 500),
    ];
    let kept = rows[3].id.0.to_string();
    insert(&db, &rows).await;
    let purge = |body: Value| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/maintenance/purge", logbook.api))
            .bearer_auth(&owner)
            .json(&body)
            .send()
    };
    for (body, status) in [
        (
            serde_json::json!({"kind": "api_calls", "confirm": "api_calls"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            serde_json::json!({"kind": "api_calls", "from": rfc3339(today), "to": rfc3339(purged_day), "confirm": "api_calls"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            serde_json::json!({"kind": "api_calls", "from": "yesterday", "confirm": "api_calls"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            serde_json::json!({"kind": "no_such_kind", "tenant": "t1", "confirm": "no_such_kind"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = purge(body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
    assert_eq!(api.rows(&owner, "api_calls", &[]).await.len(), 4);

    // One whole UTC day, every tenant: its partition is dropped.
    let response = purge(serde_json::json!({
        "kind": "api_calls",
        "from": rfc3339(purged_day),
        "to": rfc3339(purged_day + day),
        "confirm": "api_calls",
    }))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["method"], "drop_partition");
    assert_eq!(
        (&result["rows"], &result["error_rows"]),
        (&2.into(), &1.into())
    );
    let partitions: Vec<String> = db
        .client
        .query(
            "SELECT DISTINCT partition_id FROM system.parts \
             WHERE database = currentDatabase() AND table = 'api_calls' AND active ORDER BY 1",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        partitions,
        [
            time::OffsetDateTime::from_unix_timestamp_nanos((purged_day + day).into())
                .unwrap()
                .date()
                .format(time::macros::format_description!("[year][month][day]"))
                .unwrap()
        ]
    );

    // Part of a day: a lightweight delete of that range only.
    let response = purge(serde_json::json!({
        "kind": "api_calls",
        "from": rfc3339(purged_day + day),
        "to": rfc3339(purged_day + day + 90 * 60 * NS),
        "confirm": "api_calls",
    }))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["method"], "lightweight_delete");
    assert_eq!(
        (&result["rows"], &result["error_rows"]),
        (&1.into(), &1.into())
    );
    let left = api.rows(&owner, "api_calls", &[]).await;
    assert_eq!(ids(&left), HashSet::from([kept.clone()]));
    let errors_left: Vec<String> = db
        .client
        .query("SELECT toString(related_id) FROM errors")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(errors_left, [kept]);
}

/// On a cluster a purge runs `ON CLUSTER` on the local tables, which the engine here refuses to
/// run (no replicated DDL); its parser takes the statements as the API makes them.
#[tokio::test]
async fn purge_statements_for_a_cluster_are_valid_clickhouse() {
    let db = test_db("api_purge_cluster").await;
    let ddl = logbook::schema::ddl::Ddl::on_cluster(&db.database, "logbook");
    for sql in [
        ddl.drop_partition("api_calls", "20261130"),
        ddl.delete_where(
            "api_calls",
            "time >= fromUnixTimestamp64Nano({p0:Int64}) AND tenant = {p1:String}",
        ),
    ] {
        let formatted: String = db
            .client
            .query("SELECT formatQuery({sql:String})")
            .param("sql", &sql)
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(
            formatted.contains(&format!(
                "{}.api_calls_local ON CLUSTER logbook",
                db.database
            )),
            "{sql} → {formatted}"
        );
    }
}

/// A compressed copy rotated before the newest rotation (`logbook.log.<time>[.<n>].gz`).
fn older_than_newest_rotation(files: &[Value]) -> Option<Value> {
    let time = |f: &Value| f["name"].as_str().unwrap()["logbook.log.".len()..][..19].to_owned();
    let copies: Vec<&Value> = files
        .iter()
        .filter(|f| f["name"].as_str().unwrap().ends_with(".gz"))
        .collect();
    let newest = copies.iter().map(|f| time(f)).max()?;
    copies.into_iter().find(|f| time(f) < newest).cloned()
}

#[tokio::test]
async fn log_files_are_listed_downloaded_and_deleted_by_owners() {
    use std::io::Read;

    let db = test_db("api_log_files").await;
    let logs = tempfile::tempdir().unwrap();
    let active = logs.path().join("logbook.log");
    std::fs::write(logs.path().join("notes.txt"), "not one of logbook's files").unwrap();
    // At debug level, every request logbook serves or sends fills a file of the smallest size
    // and rotates it into a compressed copy.
    let extra = format!(
        "[log]\nlevel = \"debug\"\n[log.file]\npath = {:?}\nmax_size = \"1 KiB\"\nkeep = 10000\n",
        active.display().to_string()
    );
    let logbook = Logbook::start(&db, &extra).await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &["view_audit_logs"]);
    let supervisor = logbook.token("supervisor", None, &["view_audit_logs"]);
    let route = "/api/v1/maintenance/log-files";

    let deadline = Instant::now() + Duration::from_secs(15);
    let (files, rotated) = loop {
        let (status, body) = api.get(Some(&owner), route, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let files = body.as_array().unwrap().clone();
        // A copy of the newest rotation (its millisecond) may still be being compressed; an
        // older one is whole.
        if let Some(whole) = older_than_newest_rotation(&files) {
            break (files, whole);
        }
        assert!(Instant::now() < deadline, "no rotated copy listed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(
        names.iter().all(|n| n.starts_with("logbook.log")),
        "{names:?}"
    );
    let actives: Vec<&Value> = files.iter().filter(|f| f["active"] == true).collect();
    assert_eq!(actives.len(), 1, "{files:?}");
    assert_eq!(actives[0]["name"], "logbook.log");
    let name = rotated["name"].as_str().unwrap();
    assert_eq!(rotated["active"], false);
    assert!(name.starts_with("logbook.log.20"), "{name}");

    let download = |token: &str, name: &str| {
        reqwest::Client::new()
            .get(format!("{}{route}/{name}", logbook.api))
            .bearer_auth(token)
            .send()
    };
    let response = download(&owner, name).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"{name}\"").as_str()
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, rotated["bytes"].as_u64().unwrap());
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.starts_with("20")
            && ["INFO", "WARN", "ERROR", "DEBUG"]
                .iter()
                .any(|l| text.contains(l)),
        "{text}"
    );
    for other in ["notes.txt", "..%2Flogbook.toml", "logbook.log.nothing"] {
        let response = download(&owner, other).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{other}");
    }
    assert_eq!(
        download(&supervisor, name).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let delete = |token: &str, name: &str, confirm: Option<&str>| {
        let mut request = reqwest::Client::new()
            .delete(format!("{}{route}/{name}", logbook.api))
            .bearer_auth(token);
        if let Some(confirm) = confirm {
            request = request.query(&[("confirm", confirm)]);
        }
        request.send()
    };
    for (token, target, confirm, status) in [
        (&supervisor, name, Some(name), StatusCode::FORBIDDEN),
        (&owner, name, None, StatusCode::UNPROCESSABLE_ENTITY),
        (
            &owner,
            name,
            Some("logbook.log"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &owner,
            "logbook.log",
            Some("logbook.log"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &owner,
            "notes.txt",
            Some("notes.txt"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = delete(token, target, confirm).await.unwrap();
        assert_eq!(response.status(), status, "{target} {confirm:?}");
    }
    assert!(logs.path().join(name).exists() && active.exists());
    assert!(logs.path().join("notes.txt").exists());

    let response = delete(&owner, name, Some(name)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!logs.path().join(name).exists());
    let (_, listed) = api.get(Some(&owner), route, &[]).await;
    assert!(
        listed.as_array().unwrap().iter().all(|f| f["name"] != name),
        "{listed}"
    );
    let audit = api
        .rows(&owner, "audit_activity", &[("category", "maintenance")])
        .await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        audit[0]["summary"].as_str().unwrap(),
        format!("deleted log file {name}")
    );
}

#[tokio::test]
async fn settings_change_is_audited_seen_by_a_second_replica_and_log_level_applies() {
    let db = test_db("api_settings").await;
    let extra = "[settings]\nrefresh_interval = \"200ms\"\n";
    let first = Logbook::start(&db, extra).await;
    let second = Logbook::start(&db, extra).await;
    let owner = first.token("owner", None, &["view_audit_logs"]);
    let supervisor = first.token("supervisor", None, &[]);
    let put = |base: &str, token: &str, key: &str, value: Value| {
        reqwest::Client::new()
            .put(format!("{base}/api/v1/settings/{key}"))
            .bearer_auth(token)
            .json(&value)
            .send()
    };
    // Supervisors change notification settings, not logbook's own log level.
    let response = put(&first.api, &supervisor, "log.level", Value::from("debug"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = put(
        &first.api,
        &owner,
        "notify.rules.min_severity",
        Value::from("nonsense"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = put(
        &first.api,
        &supervisor,
        "notify.rules.paused",
        Value::from(true),
    )
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap()
    );

    // The second replica sees it within seconds.
    let api = Client::new(&second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = api.get(Some(&owner), "/api/v1/settings", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let paused = body
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == "notify.rules.paused")
            .unwrap()["value"]
            .clone();
        if paused == Value::Bool(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second replica never saw the setting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // audit_activity has who, before and after.
    let audit = api
        .rows(&owner, "audit_activity", &[("category", "settings")])
        .await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["actor_name"], "supervisor-all");
    assert_eq!(audit[0]["before"], "{\"notify.rules.paused\":null}");
    assert_eq!(audit[0]["after"], "{\"notify.rules.paused\":true}");

    // The one minimum severity: set through the first replica, the second one's alert
    // threshold (`logbook_notify_min_severity_number`) follows within seconds.
    let gauge = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("logbook_notify_min_severity_number "))
            .map(str::to_owned)
    };
    assert_eq!(gauge(second.metrics().await).as_deref(), Some("17"));
    let response = put(
        &first.api,
        &supervisor,
        "notify.rules.min_severity",
        Value::from("warning"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(second.metrics().await).as_deref() != Some("13") {
        assert!(
            Instant::now() < deadline,
            "the second replica's gauge never moved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The log level changes on the other replica without a restart.
    assert!(
        !second.stderr().contains(" DEBUG "),
        "debug before the change"
    );
    let response = put(&first.api, &owner, "log.level", Value::from("debug"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !second.stderr().contains(" DEBUG ") {
        assert!(
            Instant::now() < deadline,
            "no debug line: {}",
            second.stderr()
        );
        // Requests make the replica log (its ClickHouse client logs at debug).
        let _ = api
            .get(Some(&owner), "/api/v1/logs/mail_messages", &[])
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn integration_health_lists_status_runs_and_toggle() {
    use logbook::schema::{IntegrationState, IntegrationSyncRun};
    let db = test_db("api_integrations").await;
    let logbook = Logbook::start(&db, "").await;
    let api = Client::new(&logbook);
    let viewer = logbook.token("viewer", None, &[]);
    let supervisor = logbook.token("supervisor", None, &[]);
    let now = now_ns();
    let run = |status: &str, minutes: i64| IntegrationSyncRun {
        id: id(),
        time: Ts(now - minutes * 60 * NS),
        integration: "Xero".into(),
        status: status.into(),
        ..IntegrationSyncRun::default()
    };
    let ninja = IntegrationSyncRun {
        integration: "NinjaOne".into(),
        ..run("completed", 10)
    };
    insert(
        &db,
        &[
            run("completed", 30),
            run("error", 20),
            run("executing", 1),
            ninja.clone(),
        ],
    )
    .await;
    let state = |integration: &str, enabled: bool| IntegrationState {
        id: id(),
        time: Ts(now - 2 * HOUR),
        integration: integration.into(),
        change: if enabled { "enabled" } else { "disabled" }.into(),
        enabled,
        sync_interval_s: 3600,
        ..IntegrationState::default()
    };
    insert(&db, &[state("NinjaOne", true), state("Slack", false)]).await;
    let health = |token: String| {
        let api = &api;
        async move {
            let (status, body) = api.get(Some(&token), "/api/v1/integrations", &[]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|i| (i["integration"].as_str().unwrap().to_owned(), i.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let all = health(viewer.clone()).await;
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["NinjaOne", "Slack", "Xero"]
    );
    // Xero's last finished run failed; NinjaOne ran within its hourly schedule; Slack is off.
    let xero = &all["Xero"];
    assert_eq!(xero["status"], "error");
    assert_eq!(xero["last_outcome"], "error");
    assert_eq!(xero["next_run"], Value::Null, "no schedule known");
    assert_eq!(xero["error_rate_24h"], 0.5);
    assert_eq!(xero["error_email"], true);
    let statuses: Vec<&str> = xero["recent_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["executing", "error", "completed"]);
    let ninja_one = &all["NinjaOne"];
    assert_eq!(ninja_one["status"], "active");
    assert_eq!(ninja_one["sync_interval_s"], 3600);
    assert_eq!(ninja_one["next_run"], ninja.time.0 / NS + 3600);
    assert_eq!(ninja_one["error_rate_24h"], 0.0);
    assert_eq!(all["Slack"]["status"], "disabled");
    assert_eq!(all["Slack"]["next_run"], Value::Null);
    assert_eq!(
        all["Slack"]["error_rate_24h"],
        Value::Null,
        "no finished runs"
    );

    // The error-rate email toggle, per integration.
    let response = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/settings/notify.rules.error_rate.integrations",
            logbook.api
        ))
        .bearer_auth(&supervisor)
        .json(&serde_json::json!({"Xero": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let all = health(viewer).await;
    assert_eq!(all["Xero"]["error_email"], false);
    assert_eq!(all["NinjaOne"]["error_email"], true);
}

#[tokio::test]
async fn retention_set_through_the_api_changes_the_tables_ttl_and_a_reset_restores_it() {
    let db = test_db("api_retention").await;
    let logbook = Logbook::start(&db, "").await;
    let api = Client::new(&logbook);
    let owner = logbook.token("owner", None, &["view_audit_logs"]);
    let supervisor = logbook.token("supervisor", None, &[]);
    let now = now_ns();
    let rows: Vec<ApiCall> = (0..10)
        .map(|i| call(now - i * HOUR, "t", "b", "success", 200))
        .collect();
    insert(&db, &rows).await;
    let engine = || async {
        db.client
            .query(
                "SELECT engine_full FROM system.tables \
                 WHERE database = currentDatabase() AND name = 'api_calls'",
            )
            .fetch_one::<String>()
            .await
            .unwrap()
    };
    assert!(engine().await.contains("toIntervalDay(7)"));
    let change = |token: &str, value: Option<Value>| {
        let url = format!("{}/api/v1/settings/retention.ttl", logbook.api);
        let request = match value {
            Some(value) => reqwest::Client::new().put(url).json(&value),
            None => reqwest::Client::new().delete(url),
        };
        request.bearer_auth(token).send()
    };
    let three_days = serde_json::json!({"api_calls": "3d"});
    for (token, value, status) in [
        (&supervisor, three_days.clone(), StatusCode::FORBIDDEN),
        (
            &owner,
            serde_json::json!({"api_calls": "a while"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &owner,
            serde_json::json!({"no_such_table": "3d"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let response = change(token, Some(value.clone())).await.unwrap();
        assert_eq!(response.status(), status, "{value}");
    }
    assert!(engine().await.contains("toIntervalDay(7)"));

    // Applied before the answer: the table's TTL, for every replica; no row is lost.
    let response = change(&owner, Some(three_days)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ttl = engine().await;
    assert!(ttl.contains("toIntervalDay(3)"), "{ttl}");
    assert_eq!(api.rows(&owner, "api_calls", &[]).await.len(), 10);
    let response = change(&owner, None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ttl = engine().await;
    assert!(ttl.contains("toIntervalDay(7)"), "{ttl}");

    let audit = api
        .rows(&owner, "audit_activity", &[("category", "settings")])
        .await;
    let changes: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| (r["before"].as_str().unwrap(), r["after"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            (
                r#"{"retention.ttl":{"api_calls":"3d"}}"#,
                r#"{"retention.ttl":null}"#
            ),
            (
                r#"{"retention.ttl":null}"#,
                r#"{"retention.ttl":{"api_calls":"3d"}}"#
            ),
        ]
    );
}
