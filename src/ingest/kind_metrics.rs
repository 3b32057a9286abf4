//! Business metrics: one counter per log kind, `logbook_<table>_total`, labelled by the columns
//! the kind declares in its definition (`labels: [...]`), so a new kind has its counter without
//! code of its own.
//!
//! Counted once stored: routing tallies each typed row's label values into its batch
//! ([`Tally`]); only after the batch is in ClickHouse *and* its queue range is acknowledged
//! does the pipeline add the tallies of the tables that were stored ([`KindMetrics::count`]);
//! tables ClickHouse refused for good (dead letters) and rows that did not fit a kind are not
//! counted. The acknowledgement is durable (fsynced) and a batch is replayed after a crash
//! only if it was not acknowledged, so every stored row is counted by exactly one logbook
//! process: replayed rows are not counted twice. What Prometheus can still miss is a crashed
//! process's increments since its last scrape (at most one scrape interval of rows), as for
//! any counter; `increase()` and `rate()` absorb the restart's reset.
//!
//! Bounded cardinality: each label takes at most `metrics.max_label_values` distinct values
//! per counter; later new values are counted as `other`, and the rows so folded in
//! `logbook_metric_label_values_folded_total{metric,label}`.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use prometheus::{IntCounterVec, Opts, Registry};

use crate::schema::labels::{LabelReader, counter_name};
use crate::schema::{KINDS, TableDef};

/// The value new label values are counted under once a label has its fill.
pub const OTHER: &str = "other";

static READERS: LazyLock<Vec<LabelReader>> =
    LazyLock::new(|| KINDS.iter().map(|kind| LabelReader::new(kind)).collect());

/// Per kind (in the order of [`KINDS`]), how many rows of a batch carried each set of label
/// values, keyed by their RowBinary bytes ([`LabelReader::key`]): no allocation for a set
/// already seen in the batch.
#[derive(Debug)]
pub struct Tally {
    counts: Vec<HashMap<Vec<u8>, u64>>,
    key: Vec<u8>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            counts: KINDS.iter().map(|_| HashMap::new()).collect(),
            key: Vec::new(),
        }
    }
}

impl Tally {
    /// Counts the row of kind `kind` (its position in [`KINDS`]) that `row` starts with.
    pub fn add(&mut self, kind: usize, row: &[u8]) {
        self.key.clear();
        if READERS[kind].key(row, &mut self.key).is_none() {
            debug_assert!(false, "a row its kind wrote reads back");
            return;
        }
        let counts = &mut self.counts[kind];
        if let Some(count) = counts.get_mut(self.key.as_slice()) {
            *count += 1;
        } else {
            counts.insert(self.key.clone(), 1);
        }
    }

    /// Forgets the batch's counts. A flood of distinct values leaves its memory to the next
    /// batch only up to a bound.
    pub fn clear(&mut self) {
        for counts in &mut self.counts {
            counts.clear();
            counts.shrink_to(1024);
        }
    }
}

struct Family {
    counter: IntCounterVec,
    name: String,
    label_names: Vec<&'static str>,
    /// Values seen so far, per label.
    seen: Vec<HashSet<String>>,
}

/// The counters of every kind, with the cardinality cap.
pub struct KindMetrics {
    families: Mutex<Vec<Family>>,
    folded: IntCounterVec,
    max_values: usize,
}

impl KindMetrics {
    /// Registers every kind's counter in `registry`; each label keeps at most `max_values`
    /// distinct values.
    pub fn new(registry: &Registry, max_values: usize) -> KindMetrics {
        let register = |counter: &IntCounterVec| {
            registry
                .register(Box::new(counter.clone()))
                .expect("registered once");
        };
        let families = KINDS
            .iter()
            .zip(READERS.iter())
            .map(|(kind, reader)| {
                let label_names: Vec<_> = reader.labels().iter().map(|l| l.name).collect();
                let name = counter_name(kind);
                let help = if label_names.is_empty() {
                    format!("{} rows stored", kind.name)
                } else {
                    format!("{} rows stored, by {}", kind.name, label_names.join(", "))
                };
                let counter = IntCounterVec::new(Opts::new(name.clone(), help), &label_names)
                    .expect("valid metric");
                register(&counter);
                Family {
                    counter,
                    name,
                    seen: label_names.iter().map(|_| HashSet::new()).collect(),
                    label_names,
                }
            })
            .collect();
        let folded = IntCounterVec::new(
            Opts::new(
                "logbook_metric_label_values_folded_total",
                "rows counted under the label value \"other\" because the label had reached metrics.max_label_values distinct values",
            ),
            &["metric", "label"],
        )
        .expect("valid metric");
        register(&folded);
        KindMetrics {
            families: Mutex::new(families),
            folded,
            max_values,
        }
    }

    /// Adds a stored batch's tallies, but not those of tables for which `stored` says no.
    pub fn count(&self, tally: &Tally, stored: impl Fn(&TableDef) -> bool) {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, counts) in tally.counts.iter().enumerate() {
            if counts.is_empty() || !stored(KINDS[kind]) {
                continue;
            }
            let family = &mut families[kind];
            for (key, &rows) in counts {
                let Some(mut values) = READERS[kind].values(key) else {
                    continue;
                };
                for (index, value) in values.iter_mut().enumerate() {
                    let seen = &mut family.seen[index];
                    if seen.contains(value.as_str()) {
                        continue;
                    }
                    if seen.len() < self.max_values {
                        seen.insert(value.clone());
                    } else {
                        *value = OTHER.to_owned();
                        self.folded
                            .with_label_values(&[family.name.as_str(), family.label_names[index]])
                            .inc_by(rows);
                    }
                }
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                family.counter.with_label_values(&values).inc_by(rows);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ApiCall, IntegrationSyncRun, LogKind, TypedRow};

    fn kind(table: &TableDef) -> usize {
        KINDS.iter().position(|k| k.name == table.name).unwrap()
    }

    fn add(tally: &mut Tally, row: TypedRow) {
        let mut bytes = Vec::new();
        row.write(&mut bytes);
        tally.add(kind(row.table()), &bytes);
    }

    fn call(bot: &str, status_code: u16, outcome: &str) -> TypedRow {
        TypedRow::ApiCall(ApiCall {
            bot: bot.into(),
            method: "GET".into(),
            status_code,
            outcome: outcome.into(),
            ..ApiCall::default()
        })
    }

    fn series(registry: &Registry, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .map(|m| {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_owned(), l.value().to_owned()))
                    .collect();
                (labels, m.get_counter().get_value() as u64)
            })
            .collect()
    }

    #[test]
    fn stored_rows_are_counted_by_their_labels_and_set_aside_tables_are_not() {
        let registry = Registry::new();
        let metrics = KindMetrics::new(&registry, 300);
        let mut tally = Tally::default();
        add(&mut tally, call("helpdesk", 200, "success"));
        add(&mut tally, call("helpdesk", 200, "success"));
        add(&mut tally, call("helpdesk", 0, "error"));
        let run = IntegrationSyncRun {
            integration: "Xero".into(),
            status: "error".into(),
            ..IntegrationSyncRun::default()
        };
        add(&mut tally, TypedRow::IntegrationSyncRun(run));
        metrics.count(&tally, |table| table.name != IntegrationSyncRun::TABLE.name);
        let mut calls = series(&registry, "logbook_api_calls_total");
        calls.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let labels = |bot: &str, class: &str, outcome: &str| {
            [
                ("bot", bot),
                ("method", "GET"),
                ("outcome", outcome),
                ("status_class", class),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec()
        };
        assert_eq!(
            calls,
            [
                (labels("helpdesk", "2xx", "success"), 2),
                (labels("helpdesk", "none", "error"), 1)
            ]
        );
        assert!(series(&registry, "logbook_integration_sync_runs_total").is_empty());
        tally.clear();
        metrics.count(&tally, |_| true);
        assert_eq!(series(&registry, "logbook_api_calls_total").len(), 2);
    }

    /// A flood of distinct bot names: the series stay at the cap (plus `other`) and the folded
    /// rows are counted. (tests/python/test_alerting_e2e.py floods a running logbook with
    /// 100,000 names and checks its memory.)
    #[test]
    fn a_flood_of_distinct_values_is_folded_into_other() {
        const FLOOD: usize = 10_000;
        let registry = Registry::new();
        let metrics = KindMetrics::new(&registry, 300);
        let mut tally = Tally::default();
        for batch in 0..4 {
            for i in 0..FLOOD / 4 {
                add(
                    &mut tally,
                    call(&format!("bot-{batch}-{i}"), 200, "success"),
                );
            }
            metrics.count(&tally, |_| true);
            tally.clear();
        }
        let calls = series(&registry, "logbook_api_calls_total");
        assert_eq!(calls.len(), 301);
        let other: u64 = calls
            .iter()
            .filter(|(labels, _)| labels.iter().any(|(k, v)| k == "bot" && v == OTHER))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(other, (FLOOD - 300) as u64);
        assert_eq!(
            series(&registry, "logbook_metric_label_values_folded_total"),
            [(
                vec![
                    ("label".to_owned(), "bot".to_owned()),
                    ("metric".to_owned(), "logbook_api_calls_total".to_owned())
                ],
                (FLOOD - 300) as u64
            )]
        );
    }
}
