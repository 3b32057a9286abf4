//! Integration health computed from ClickHouse (`query::integrations::health`): the status rule
//! and next runs, on rows as services send them.

use logbook::query::integrations::{Status, health, tenant_health};
use time::OffsetDateTime;

use crate::schema::migrated;

#[tokio::test]
async fn integration_status_follows_last_run_state_and_schedule() {
    let (db, _) = migrated("integration_status", "").await;
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let at = |seconds_ago: i64| 1_800_000_000 - seconds_ago;
    // (integration, tenant, status, seconds ago)
    let runs = [
        ("Azure AD", "t1", "error", 7200),
        ("Azure AD", "t1", "completed", 3600), // last finished run succeeded: active
        ("NinjaOne", "t1", "completed", 7200),
        ("NinjaOne", "t1", "executing", 3700),
        ("NinjaOne", "t1", "error", 3600), // last finished run failed: error
        ("Xero", "t2", "completed", 600),
        ("Xero", "t2", "error", 300), // disabled below all the same
        ("Zendesk", "t1", "completed", 4 * 3600), // hourly, nothing for 4 hours: error
        ("Later", "t1", "error", -60), // after `now`: not seen
    ];
    for (integration, tenant, status, ago) in runs {
        db.client
            .query(
                "INSERT INTO integration_sync_runs (id, time, tenant, integration, status) \
                 VALUES (generateUUIDv7(), fromUnixTimestamp64Nano(? * 1000000000), ?, ?, ?)",
            )
            .bind(at(ago))
            .bind(tenant)
            .bind(integration)
            .bind(status)
            .execute()
            .await
            .unwrap();
    }
    // (integration, change, enabled, interval, seconds ago)
    let states = [
        ("Azure AD", "enabled", true, 3600, 86_400),
        ("Xero", "enabled", true, 3600, 86_400),
        ("Xero", "disabled", false, 3600, 60),
        ("Zendesk", "reconfigured", true, 3600, 86_400),
        ("Salesforce", "enabled", true, 86_400, 100), // new, never ran: due in a day
    ];
    for (integration, change, enabled, interval, ago) in states {
        db.client
            .query(
                "INSERT INTO integration_states (id, time, tenant, integration, change, enabled, sync_interval_s) \
                 VALUES (generateUUIDv7(), fromUnixTimestamp64Nano(? * 1000000000), 't1', ?, ?, ?, ?)",
            )
            .bind(at(ago))
            .bind(integration)
            .bind(change)
            .bind(enabled)
            .bind(interval)
            .execute()
            .await
            .unwrap();
    }
    let all = health(&db.client, now).await.unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|h| (h.integration.as_str(), h.status, h.next_run))
        .collect();
    assert_eq!(
        got,
        [
            ("Azure AD", Status::Active, Some(at(3600) + 3600)),
            ("NinjaOne", Status::Error, None),
            ("Salesforce", Status::Active, Some(at(100) + 86_400)),
            ("Xero", Status::Disabled, None),
            ("Zendesk", Status::Error, Some(at(4 * 3600) + 3600)),
        ]
    );
    let t2: Vec<_> = tenant_health(&db.client, "t2", now)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.integration, h.status))
        .collect();
    assert_eq!(t2, [("Xero".to_owned(), Status::Error)]);
}
