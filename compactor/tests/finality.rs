//! Watermark, final/provisional flags, revisions and the late-event count,
//! with a mock clock: raw events are committed to `ad_clicks` in steps (on
//! time, late by 1 s to 40 days, out of order, resent), the rollup job runs
//! after each, and every level is compared with a model of the contract
//! computed here from the events alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, Duration as D, TimeZone, Utc};
use clicklake_common::schema::{UTC, raw_schema};
use clicklake_common::{Level, RAW_TABLE, StorageConfig};
use clicklake_compactor::Rollups;
use datafusion::prelude::SessionContext;

const LATENESS_H: i64 = 1;

/// An event as sent: (id, ad, user, event time).
type Sent = (String, String, String, DateTime<Utc>);

#[derive(Clone)]
struct Event {
    id: String,
    ad: String,
    user: String,
    time: DateTime<Utc>,
    ingest: i64,
}

fn batch(events: &[Event]) -> RecordBatch {
    let us = |t: &DateTime<Utc>| t.timestamp_micros();
    let strings = |f: &dyn Fn(&Event) -> String| {
        Arc::new(StringArray::from(events.iter().map(f).collect::<Vec<_>>()))
    };
    let ts = |v: Vec<i64>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone(UTC));
    RecordBatch::try_new(
        raw_schema(),
        vec![
            strings(&|e| e.id.clone()),
            strings(&|e| e.ad.clone()),
            strings(&|e| e.user.clone()),
            ts(events.iter().map(|e| us(&e.time)).collect()),
            strings(&|_| "phone".into()),
            strings(&|_| "ios".into()),
            strings(&|_| "DE".into()),
            strings(&|_| "c1".into()),
            Arc::new(BooleanArray::from(vec![false; events.len()])),
            ts(events.iter().map(|e| e.ingest).collect()),
            Arc::new(Date32Array::from(
                events
                    .iter()
                    .map(|e| (e.time.timestamp().div_euclid(86_400)) as i32)
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("raw batch")
}

fn window(level: Level, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = match level {
        Level::Minute => Utc
            .timestamp_opt(t.timestamp().div_euclid(60) * 60, 0)
            .single(),
        Level::Hour => Utc
            .timestamp_opt(t.timestamp().div_euclid(3600) * 3600, 0)
            .single(),
        Level::Day => Utc
            .timestamp_opt(t.timestamp().div_euclid(86_400) * 86_400, 0)
            .single(),
        Level::Month => Utc
            .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
            .single(),
    }
    .expect("window start");
    let end = match level {
        Level::Minute => start + D::minutes(1),
        Level::Hour => start + D::hours(1),
        Level::Day => start + D::days(1),
        Level::Month => start
            .checked_add_months(chrono::Months::new(1))
            .expect("month"),
    };
    (start, end)
}

/// Per window and ad: (clicks, unique users), counting each id's first copy.
type Counts = BTreeMap<(i64, String), (i64, i64)>;

fn model(level: Level, stored: &[Event]) -> Counts {
    let mut first: BTreeMap<&str, &Event> = BTreeMap::new();
    for e in stored {
        let keep = first.get(e.id.as_str()).is_none_or(|f| e.ingest < f.ingest);
        if keep {
            first.insert(&e.id, e);
        }
    }
    let mut windows: BTreeMap<(i64, String), (i64, BTreeSet<&str>)> = BTreeMap::new();
    for e in first.values() {
        let (start, _) = window(level, e.time);
        let w = windows
            .entry((start.timestamp_micros(), e.ad.clone()))
            .or_default();
        w.0 += 1;
        w.1.insert(&e.user);
    }
    windows
        .into_iter()
        .map(|(k, (c, u))| (k, (c, u.len() as i64)))
        .collect()
}

/// (window_start, ad) → (clicks, unique_users, is_final, revision, revised_at)
type Rows = BTreeMap<(i64, String), (i64, i64, bool, i64, Option<i64>)>;

async fn rows(store: &StorageConfig, level: Level) -> Rows {
    let table = store.open(level.table()).await.expect("rollup table");
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .expect("session");
    ctx.register_table("t", table.table_provider().await.expect("provider"))
        .expect("register");
    let batches = ctx
        .sql("SELECT window_start, ad_id, clicks, unique_users, is_final, revision, revised_at FROM t")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let mut out = Rows::new();
    for b in &batches {
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let ad = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8).expect("ad");
        let ad = ad.as_string::<i32>();
        let revised = b.column(6).as_primitive::<TimestampMicrosecondType>();
        for r in 0..b.num_rows() {
            out.insert(
                (ts.value(r), ad.value(r).to_string()),
                (
                    b.column(2).as_primitive::<Int64Type>().value(r),
                    b.column(3).as_primitive::<Int64Type>().value(r),
                    b.column(4).as_boolean().value(r),
                    b.column(5).as_primitive::<Int64Type>().value(r),
                    revised.is_valid(r).then(|| revised.value(r)),
                ),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_revise_final_windows_and_flags_follow_the_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StorageConfig::new(dir.path().to_str().expect("utf-8")).expect("store");
    let now = Arc::new(AtomicI64::new(0));
    let clock = now.clone();
    let mut rollups = Rollups::open(&store)
        .await
        .expect("open")
        .with_allowed_lateness(Duration::from_secs(LATENESS_H as u64 * 3600))
        .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
    let base = Utc
        .with_ymd_and_hms(2017, 11, 7, 12, 0, 0)
        .single()
        .expect("time");
    let mut n = 0;
    let mut at = |t: DateTime<Utc>, ad: &str| {
        n += 1;
        (format!("e{n}"), ad.to_string(), format!("u{}", n % 3), t)
    };
    // (name, events (id, ad, user, time)); ids are reused for resends.
    let mut steps: Vec<(&str, Vec<Sent>)> = vec![(
        "on time",
        (0..12)
            .map(|i| at(base + D::minutes(10 * i), "a"))
            .collect(),
    )];
    steps.push((
        "1 s and 1 h late, out of order",
        vec![
            at(base + D::minutes(10) + D::seconds(30), "a"),
            at(base + D::minutes(50) - D::seconds(1), "b"),
            at(base + D::hours(3), "a"),
            at(base - D::hours(1), "a"),
        ],
    ));
    steps.push(("2 days late", vec![at(base - D::days(2), "a")]));
    steps.push(("40 days late", vec![at(base - D::days(40), "b")]));
    // A resend of e1 (another time and ad) in a later flush counts where first stored.
    steps.push((
        "resend across flushes",
        vec![("e1".into(), "moved".into(), "u1".into(), base + D::hours(2))],
    ));
    steps.push((
        "the watermark crosses midnight",
        vec![at(base + D::hours(14), "a")],
    ));

    let mut stored: Vec<Event> = Vec::new();
    let mut newest: Option<DateTime<Utc>> = None;
    // Expected (revision, revised_at) per level and window, carried over steps.
    let mut revisions: BTreeMap<(Level, i64, String), (i64, Option<i64>)> = BTreeMap::new();
    let mut before: BTreeMap<Level, Counts> = BTreeMap::new();
    for (step, (name, events)) in steps.into_iter().enumerate() {
        let step_time = 1_000_000 * (step as i64 + 1);
        now.store(step_time, Ordering::SeqCst);
        let previous_wm = newest.map(|t| t - D::hours(LATENESS_H));
        let late = events
            .iter()
            .filter(|e| previous_wm.is_some_and(|w| e.3 < w))
            .count() as u64;
        let events: Vec<Event> = events
            .into_iter()
            .map(|(id, ad, user, time)| Event {
                id,
                ad,
                user,
                time,
                ingest: step_time,
            })
            .collect();
        let raw = store.open(RAW_TABLE).await.expect("raw table");
        raw.write(vec![batch(&events)]).await.expect("raw commit");
        stored.extend(events.iter().cloned());
        newest = newest.max(events.iter().map(|e| e.time).max());
        let wm = newest.map(|t| t - D::hours(LATENESS_H)).expect("events");

        let m = rollups.run_once().await.expect("rollup run");
        assert_eq!(m.watermark, wm.timestamp_micros(), "{name}: watermark");
        assert_eq!(m.late_events, late, "{name}: late events");

        for level in Level::ALL {
            let counts = model(level, &stored);
            let prev = before.remove(&level).unwrap_or_default();
            let mut expected = Rows::new();
            for (key, &(clicks, users)) in &counts {
                let start = Utc.timestamp_micros(key.0).single().expect("start");
                let (_, end) = window(level, start);
                let was_final = previous_wm.is_some_and(|w| end <= w);
                let changed = prev.get(key) != Some(&(clicks, users));
                let r = revisions
                    .entry((level, key.0, key.1.clone()))
                    .or_insert((0, None));
                if was_final && changed {
                    *r = (r.0 + 1, Some(step_time));
                }
                expected.insert(key.clone(), (clicks, users, end <= wm, r.0, r.1));
            }
            let got = rows(&store, level).await;
            assert_eq!(got, expected, "{name}: {level}");
            before.insert(level, counts);
        }
    }
    // Something was revised at every level, and some windows are still open.
    for level in Level::ALL {
        assert!(
            revisions.iter().any(|((l, ..), r)| *l == level && r.0 > 0),
            "{level}: no window was revised"
        );
    }
}
