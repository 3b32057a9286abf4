//! The settings store on the real engine: two stores stand for two replicas of logbook.

use std::time::{Duration, Instant};

use logbook::notify::config::NotifyRules;
use logbook::settings::{SettingsError, SettingsStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::schema::migrated;

fn store(client: &clickhouse::Client) -> SettingsStore {
    SettingsStore::new(client.clone(), Duration::from_secs(10))
}

#[tokio::test]
async fn put_returns_before_and_after_and_reset_brings_back_the_default() {
    let (db, _) = migrated("settings_put", "").await;
    let replica = store(&db.client);
    replica.refresh().await.unwrap();
    assert_eq!(replica.get::<bool>("notify.rules.paused"), None);

    let change = replica
        .put("notify.rules.paused", json!(true), "alice")
        .await
        .unwrap();
    assert_eq!((change.before, change.after), (None, Some(json!(true))));
    let change = replica
        .put("notify.rules.paused", json!(false), "bob")
        .await
        .unwrap();
    assert_eq!(
        (change.before, change.after),
        (Some(json!(true)), Some(json!(false)))
    );
    assert_eq!(replica.get::<bool>("notify.rules.paused"), Some(false));

    let change = replica.reset("notify.rules.paused", "carol").await.unwrap();
    assert_eq!((change.before, change.after), (Some(json!(false)), None));
    let fresh = store(&db.client);
    fresh.refresh().await.unwrap();
    assert_eq!(fresh.get_raw("notify.rules.paused"), None);
    let who: Vec<String> = db
        .client
        .query("SELECT updated_by FROM settings ORDER BY updated_at")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(who, ["alice", "bob", "carol"]);
}

#[tokio::test]
async fn unknown_keys_and_invalid_values_are_refused_and_nothing_is_written() {
    let (db, _) = migrated("settings_invalid", "").await;
    let replica = store(&db.client);
    let err = replica
        .put("notify.rules.nope", json!(1), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, SettingsError::UnknownKey(_)), "{err}");
    let err = replica
        .put("notify.rules.min_severity", json!("loud"), "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("loud"), "{err}");
    let rows: u64 = db
        .client
        .query("SELECT count() FROM settings")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_change_on_one_replica_reaches_another_within_its_refresh_interval() {
    let (db, config) = migrated("settings_converge", "").await;
    let (writer, reader) = (store(&db.client), std::sync::Arc::new(store(&db.client)));
    let stop = CancellationToken::new();
    let refresher = tokio::spawn({
        let (reader, stop) = (reader.clone(), stop.clone());
        async move { reader.run(Duration::from_millis(200), stop).await }
    });
    writer
        .put("notify.rules.error_rate.threshold", json!(0.5), "alice")
        .await
        .unwrap();
    let started = Instant::now();
    let rules = loop {
        let rules = logbook::notify::settings::resolve(&config.notify.rules, &reader);
        if rules.error_rate.threshold == 0.5 {
            break rules;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the other replica never saw the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The other settings keep the file's values.
    assert_eq!(
        rules,
        NotifyRules {
            error_rate: logbook::notify::config::ErrorRateRules {
                threshold: 0.5,
                ..config.notify.rules.error_rate.clone()
            },
            ..config.notify.rules.clone()
        }
    );
    stop.cancel();
    refresher.await.unwrap();
}
