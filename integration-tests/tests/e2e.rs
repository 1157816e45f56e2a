//! End-to-end: `clicklake serve` composed in-process on 127.0.0.1:0 over a
//! temporary local store, fed a slice of the real TalkingData click log
//! through the gRPC ingest API by the real loader, and queried over Flight
//! SQL with our Rust client.
//!
//! Every expected value below was counted from
//! `data/talkingdata_train_sample.csv` with a separate Python script (csv
//! module, no clicklake code), not by the code under test.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::util::pretty::pretty_format_batches;
use clicklake::load::{Format, LoadArgs, load};
use clicklake::serve::{Roles, ServeArgs, Server, start};
use clicklake_common::StorageConfig;
use clicklake_common::storage::StoreArgs;
use clicklake_compactor::{CompactorArgs, Rollups};
use clicklake_ingest::IngestArgs;
use clicklake_proto::ingest::click_event::Timestamp;
use clicklake_proto::ingest::ingest_service_client::IngestServiceClient;
use clicklake_proto::ingest::{ClickEvent, TrackAdClickRequest};
use clicklake_query::QueryArgs;
use clicklake_query::client::SqlClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn data_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/talkingdata_train_sample.csv")
}

struct Fixture {
    server: Server,
    store: StorageConfig,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        Self::start_with(true).await
    }

    /// A node with or without its compactor loop (without, the rollups
    /// advance only when a test runs them).
    async fn start_with(compactor: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store_path = dir.path().join("lake").display().to_string();
        let args = ServeArgs {
            store: StoreArgs {
                store: store_path.clone(),
            },
            auth: Default::default(),
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            ingest: IngestArgs {
                flush_rows: 100_000,
                flush_interval: Duration::from_millis(200),
                max_future: Duration::from_secs(86_400),
                max_buffered_events: 1_000_000,
                max_request_events: 100_000,
                unknown_fields: Default::default(),
            },
            compactor: CompactorArgs {
                rollup_interval: Duration::from_millis(200),
                allowed_lateness: clicklake_compactor::DEFAULT_LATENESS,
                optimize_interval: Duration::ZERO,
                housekeeping: Default::default(),
                reconcile_interval: Duration::ZERO,
                reconcile_window: Duration::from_secs(86_400),
                quality: Default::default(),
            },
            query: QueryArgs::default(),
        };
        let mut roles = Roles::from(args);
        if !compactor {
            roles.compactor = None;
        }
        let server = start(roles, CancellationToken::new())
            .await
            .expect("server starts");
        let store = StorageConfig::new(&store_path).expect("store");
        Fixture {
            server,
            store,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        format!(
            "http://{}",
            self.server.grpc_addr.expect("serve has a gRPC listener")
        )
    }

    async fn load(&self, rows: usize) -> clicklake::load::LoadSummary {
        load(&LoadArgs {
            file: data_file(),
            format: Format::Talkingdata,
            endpoint: self.endpoint(),
            batch_size: 700,
            concurrency: 3,
            limit: Some(rows),
            token: None,
            retry_for: Duration::from_secs(60),
        })
        .await
        .expect("load succeeds")
    }

    /// Wait until every rollup level reflects the newest raw version.
    async fn wait_rolled_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let raw = self.store.open("ad_clicks").await.expect("raw table");
            let raw_version = raw.version().expect("loaded") as i64;
            let progress = Rollups::open(&self.store)
                .await
                .expect("rollups")
                .progress()
                .await
                .expect("progress");
            if progress >= Some(raw_version) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rollups stuck at {progress:?}, raw at {raw_version}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn table(&self, sql: &str) -> String {
        let mut client = SqlClient::connect(&self.endpoint()).await.expect("connect");
        let result = client
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pretty_format_batches(&result.batches)
            .expect("format")
            .to_string()
    }

    async fn stop(self) {
        self.server.shutdown();
        self.server.wait().await.expect("clean shutdown");
    }
}

fn lines(expected: &[&str]) -> String {
    expected.join("\n")
}

/// The answers for the first 2,000 rows of the file.
async fn assert_first_2000_rows(f: &Fixture) {
    // Clicks per day from the day rollup; unique users per day (all ads) from
    // the raw events.
    assert_eq!(
        f.table(
            "SELECT CAST(d.window_start AS DATE) AS day, d.clicks, u.users \
             FROM (SELECT window_start, sum(clicks) AS clicks FROM ad_clicks_day GROUP BY window_start) d \
             JOIN (SELECT date_trunc('day', event_time) AS window_start, count(DISTINCT user_id) AS users \
                   FROM ad_clicks GROUP BY 1) u ON d.window_start = u.window_start \
             ORDER BY day"
        )
        .await,
        lines(&[
            "+------------+--------+-------+",
            "| day        | clicks | users |",
            "+------------+--------+-------+",
            "| 2017-11-06 | 79     | 79    |",
            "| 2017-11-07 | 680    | 656   |",
            "| 2017-11-08 | 669    | 632   |",
            "| 2017-11-09 | 572    | 546   |",
            "+------------+--------+-------+",
        ])
    );
    // Every level holds all 2,000 clicks.
    assert_eq!(
        f.table(
            "SELECT (SELECT sum(clicks) FROM ad_clicks_minute) AS minute, \
                    (SELECT sum(clicks) FROM ad_clicks_hour) AS hour, \
                    (SELECT sum(clicks) FROM ad_clicks_day) AS day, \
                    (SELECT sum(clicks) FROM ad_clicks_month) AS month"
        )
        .await,
        lines(&[
            "+--------+------+------+-------+",
            "| minute | hour | day  | month |",
            "+--------+------+------+-------+",
            "| 2000   | 2000 | 2000 | 2000  |",
            "+--------+------+------+-------+",
        ])
    );
    assert_eq!(
        f.table("SELECT ad_id, sum(clicks) AS clicks FROM ad_clicks_month GROUP BY ad_id ORDER BY clicks DESC, ad_id LIMIT 3")
            .await,
        lines(&[
            "+--------+--------+",
            "| ad_id  | clicks |",
            "+--------+--------+",
            "| 3-280  | 166    |",
            "| 18-107 | 92     |",
            "| 15-245 | 52     |",
            "+--------+--------+",
        ])
    );
    assert_eq!(
        f.table(
            "SELECT window_start, clicks, unique_users, unique_users_exact, conversions, clicks_by_device, clicks_by_country \
             FROM ad_click_stats('3-280', '2017-11-06T00:00:00Z', '2017-11-10T00:00:00Z', 'day') ORDER BY window_start"
        )
        .await,
        lines(&[
            "+----------------------+--------+--------------+--------------------+-------------+------------------+-------------------+",
            "| window_start         | clicks | unique_users | unique_users_exact | conversions | clicks_by_device | clicks_by_country |",
            "+----------------------+--------+--------------+--------------------+-------------+------------------+-------------------+",
            "| 2017-11-07T00:00:00Z | 46     | 46           | true               | 0           | {\"1\":46}         | {\"unknown\":46}    |",
            "| 2017-11-08T00:00:00Z | 71     | 70           | true               | 0           | {\"1\":68,\"2\":3}   | {\"unknown\":71}    |",
            "| 2017-11-09T00:00:00Z | 49     | 49           | true               | 0           | {\"1\":47,\"2\":2}   | {\"unknown\":49}    |",
            "+----------------------+--------+--------------+--------------------+-------------+------------------+-------------------+",
        ])
    );
    // 45 hours hold a click on 3-280; the first five of them:
    assert_eq!(
        f.table(
            "SELECT count(*) AS hours FROM ad_click_stats('3-280', '2017-11-06', '2017-11-10', 'hour')"
        )
        .await,
        lines(&["+-------+", "| hours |", "+-------+", "| 45    |", "+-------+"])
    );
    assert_eq!(
        f.table(
            "SELECT window_start, clicks, unique_users \
             FROM ad_click_stats('3-280', TIMESTAMP '2017-11-07 00:00:00', '2017-11-07T05:00:00Z', 'hour') \
             ORDER BY window_start"
        )
        .await,
        lines(&[
            "+----------------------+--------+--------------+",
            "| window_start         | clicks | unique_users |",
            "+----------------------+--------+--------------+",
            "| 2017-11-07T00:00:00Z | 5      | 5            |",
            "| 2017-11-07T01:00:00Z | 6      | 6            |",
            "| 2017-11-07T02:00:00Z | 4      | 4            |",
            "| 2017-11-07T03:00:00Z | 5      | 5            |",
            "| 2017-11-07T04:00:00Z | 3      | 3            |",
            "+----------------------+--------+--------------+",
        ])
    );
    assert_eq!(
        f.table("SELECT ad_id, event_time FROM user_ad_clicks('5314', '2017-11-01', '2017-12-01') ORDER BY event_time")
            .await,
        lines(&[
            "+--------+----------------------+",
            "| ad_id  | event_time           |",
            "+--------+----------------------+",
            "| 28-135 | 2017-11-07T14:11:43Z |",
            "| 21-232 | 2017-11-07T16:10:54Z |",
            "| 14-113 | 2017-11-08T02:09:43Z |",
            "| 9-445  | 2017-11-08T09:48:57Z |",
            "| 21-128 | 2017-11-08T11:52:26Z |",
            "| 3-137  | 2017-11-09T04:37:33Z |",
            "| 2-477  | 2017-11-09T07:33:41Z |",
            "| 18-107 | 2017-11-09T09:35:33Z |",
            "| 9-107  | 2017-11-09T11:35:31Z |",
            "| 15-153 | 2017-11-09T15:32:21Z |",
            "+--------+----------------------+",
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clicks_in_right_numbers_out_and_reloading_changes_nothing() {
    let f = Fixture::start().await;
    let first = f.load(2000).await;
    assert_eq!(
        (first.rows, first.stored, first.invalid_count),
        (2000, 2000, 0)
    );
    assert!(first.rejected.is_empty(), "{:?}", first.rejected);
    f.wait_rolled_up().await;
    assert_first_2000_rows(&f).await;

    // The same rows again: new commits, same event ids, same answers.
    let second = f.load(2000).await;
    assert_eq!(second.stored, 2000);
    f.wait_rolled_up().await;
    assert_first_2000_rows(&f).await;
    assert_eq!(
        f.table("SELECT count(*) AS stored, count(DISTINCT event_id) AS events FROM ad_clicks")
            .await,
        lines(&[
            "+--------+--------+",
            "| stored | events |",
            "+--------+--------+",
            "| 4000   | 2000   |",
            "+--------+--------+",
        ])
    );
    f.stop().await;
}

/// Send a raw HTTP/1.1 request and return (status, body).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.expect("read");
    let status = buf[9..12].parse().expect("status code");
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_named_and_the_rest_of_the_batch_is_kept() {
    let f = Fixture::start().await;
    let body = r#"[
        {"event_id": "h1", "ad_id": "ad-1", "user_id": "u1", "timestamp": "2017-11-07T09:30:38Z", "location": "DE"},
        {"event_id": "h2", "ad_id": "ad-1", "timestamp": "2017-11-07T09:31:00Z"},
        {"event_id": "h3", "ad_id": "ad-1", "user_id": "u2", "timestamp": "last tuesday"},
        {"event_id": "h4", "ad_id": "ad-1", "user_id": "u2", "timestamp": 1510047100}
    ]"#;
    let (status, reply) = http(f.server.http_addr, "POST", "/v1/clicks", body).await;
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON reply");
    assert_eq!(reply["accepted"], 2);
    assert_eq!(reply["rejected"][0]["index"], 1);
    assert_eq!(reply["rejected"][0]["field"], "user_id");
    assert_eq!(reply["rejected"][0]["reason"], "is required");
    assert_eq!(reply["rejected"][1]["index"], 2);
    assert_eq!(reply["rejected"][1]["field"], "timestamp");

    let (status, reply) = http(f.server.http_addr, "POST", "/v1/clicks", r#"{"ad_id": 5}"#).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply.contains(r#""field":"ad_id","reason":"must be a string, got a number""#),
        "{reply}"
    );

    // gRPC unary: one good click, and a resend of h1 that must not count again.
    let mut grpc = IngestServiceClient::connect(f.endpoint())
        .await
        .expect("connect");
    for id in ["g1", "h1"] {
        let event = ClickEvent {
            event_id: id.into(),
            ad_id: "ad-1".into(),
            user_id: "u3".into(),
            timestamp: Some(Timestamp::TimestampRfc3339("2017-11-07T09:45:00Z".into())),
            device: "ios".into(),
            ..Default::default()
        };
        let r = grpc
            .track_ad_click(TrackAdClickRequest { event: Some(event) })
            .await
            .expect("stored")
            .into_inner();
        assert_eq!((r.accepted, r.rejected.len()), (1, 0));
    }
    f.wait_rolled_up().await;
    // h1 (u1, DE) first stored copy wins; h4 u2 at 09:31:40; g1 u3 ios.
    assert_eq!(
        f.table(
            "SELECT window_start, clicks, unique_users, clicks_by_device, clicks_by_country \
             FROM ad_click_stats('ad-1', '2017-11-07', '2017-11-08', 'hour')"
        )
        .await,
        lines(&[
            "+----------------------+--------+--------------+-----------------------+----------------------+",
            "| window_start         | clicks | unique_users | clicks_by_device      | clicks_by_country    |",
            "+----------------------+--------+--------------+-----------------------+----------------------+",
            "| 2017-11-07T09:00:00Z | 3      | 3            | {\"ios\":1,\"unknown\":2} | {\"DE\":1,\"unknown\":2} |",
            "+----------------------+--------+--------------+-----------------------+----------------------+",
        ])
    );
    f.stop().await;
}

/// Every rollup table, whole and sorted, as one text.
async fn rollup_tables(f: &Fixture) -> String {
    let mut out = String::new();
    for table in [
        "ad_clicks_minute",
        "ad_clicks_hour",
        "ad_clicks_day",
        "ad_clicks_month",
    ] {
        out.push_str(
            &f.table(&format!(
                "SELECT window_start, ad_id, clicks, unique_users, unique_users_exact, conversions, \
                 clicks_by_device, clicks_by_country FROM {table} ORDER BY window_start, ad_id"
            ))
            .await,
        );
    }
    out
}

fn utc(s: &str) -> i64 {
    clicklake_common::time::parse_time_arg(s).expect("time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_equals_the_live_path_and_reconcile_finds_and_repairs_a_lost_row() {
    use clicklake_common::Level;
    use clicklake_compactor::{Backfill, Reconcile};
    use deltalake::datafusion::common::ScalarValue;
    use deltalake::datafusion::prelude::{col, lit};

    let f = Fixture::start().await;
    f.load(2000).await;
    f.wait_rolled_up().await;
    let live = rollup_tables(&f).await;
    let mut rollups = Rollups::open(&f.store).await.expect("rollups");

    let (from, to) = (utc("2017-11-01"), utc("2017-12-01"));
    let clean = Reconcile::new(from, to)
        .expect("range")
        .run(&mut rollups)
        .await
        .expect("reconcile");
    assert_eq!(clean.differences, vec![]);

    // An interrupted backfill (stopped after its first level) and a full one.
    let job = Backfill::new(utc("2017-11-06"), utc("2017-11-10")).expect("range");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let store = f.store.clone();
    let interrupted = tokio::spawn({
        let job = job.clone();
        async move {
            let mut r = Rollups::open(&store).await.expect("rollups");
            job.run(&mut r, |level, _| {
                let _ = tx.send(level);
            })
            .await
        }
    });
    assert_eq!(rx.recv().await, Some(Level::Minute));
    interrupted.abort();
    let _ = interrupted.await;
    let m = job.run(&mut rollups, |_, _| {}).await.expect("backfill");
    // 2,000 clicks spread over the levels' rows; each level rewritten once.
    assert_eq!(
        m.rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        Level::ALL.to_vec()
    );
    assert_eq!(rollup_tables(&f).await, live);

    // Lose one hourly row by hand: 3-280 at 2017-11-07T00:00Z held 5 clicks
    // from 5 users (counted from the CSV).
    let hour = f.store.open("ad_clicks_hour").await.expect("hour table");
    let window =
        ScalarValue::TimestampMicrosecond(Some(utc("2017-11-07T00:00:00Z")), Some("UTC".into()));
    hour.delete()
        .with_predicate(
            col("ad_id")
                .eq(lit("3-280"))
                .and(col("window_start").eq(lit(window))),
        )
        .await
        .expect("delete");
    let found = Reconcile::new(from, to)
        .expect("range")
        .run(&mut rollups)
        .await
        .expect("reconcile");
    assert_eq!(
        found.differences,
        vec![clicklake_compactor::Difference {
            level: Level::Hour,
            window_start: utc("2017-11-07T00:00:00Z"),
            ad_id: "3-280".into(),
            expected_clicks: Some(5),
            actual_clicks: None,
            expected_unique_users: Some(5),
            actual_unique_users: None,
            expected_conversions: Some(0),
            actual_conversions: None,
            breakdowns_differ: true,
        }]
    );
    let repaired = Reconcile::new(from, to)
        .expect("range")
        .with_repair(true)
        .run(&mut rollups)
        .await
        .expect("repair");
    assert_eq!(repaired.repaired, vec![Level::Hour]);
    let after = Reconcile::new(from, to)
        .expect("range")
        .run(&mut rollups)
        .await
        .expect("reconcile");
    assert_eq!(after.differences, vec![]);
    assert_eq!(rollup_tables(&f).await, live);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_with_another_time_counts_once_where_it_was_first_stored() {
    let f = Fixture::start().await;
    let post = |body: &'static str| {
        let addr = f.server.http_addr;
        async move {
            let (status, reply) = http(addr, "POST", "/v1/clicks", body).await;
            assert_eq!(status, 200, "{reply}");
        }
    };
    // First copy on the last second of November, rolled up before the resend.
    post(r#"{"event_id":"dup-1","ad_id":"x","user_id":"u","timestamp":"2017-11-30T23:59:59Z"}"#)
        .await;
    f.wait_rolled_up().await;
    // A resend with another ad and a December time: still the same click.
    post(r#"{"event_id":"dup-1","ad_id":"y","user_id":"u","timestamp":"2017-12-01T00:00:01Z"}"#)
        .await;
    f.wait_rolled_up().await;
    // Another December click makes December be recomputed again.
    post(r#"{"event_id":"e-2","ad_id":"z","user_id":"v","timestamp":"2017-12-01T08:00:00Z"}"#)
        .await;
    f.wait_rolled_up().await;

    for (table, first, second) in [
        (
            "ad_clicks_minute",
            "2017-11-30T23:59:00Z",
            "2017-12-01T08:00:00Z",
        ),
        (
            "ad_clicks_hour",
            "2017-11-30T23:00:00Z",
            "2017-12-01T08:00:00Z",
        ),
        (
            "ad_clicks_day",
            "2017-11-30T00:00:00Z",
            "2017-12-01T00:00:00Z",
        ),
        (
            "ad_clicks_month",
            "2017-11-01T00:00:00Z",
            "2017-12-01T00:00:00Z",
        ),
    ] {
        assert_eq!(
            f.table(&format!(
                "SELECT window_start, ad_id, clicks FROM {table} ORDER BY window_start"
            ))
            .await,
            lines(&[
                "+----------------------+-------+--------+",
                "| window_start         | ad_id | clicks |",
                "+----------------------+-------+--------+",
                &format!("| {first} | x     | 1      |"),
                &format!("| {second} | z     | 1      |"),
                "+----------------------+-------+--------+",
            ]),
            "{table}"
        );
    }
    assert_eq!(
        f.table("SELECT event_id, ad_id, event_time FROM user_ad_clicks('u', '2017-11-01', '2018-01-01')").await,
        lines(&[
            "+----------+-------+----------------------+",
            "| event_id | ad_id | event_time           |",
            "+----------+-------+----------------------+",
            "| dup-1    | x     | 2017-11-30T23:59:59Z |",
            "+----------+-------+----------------------+",
        ])
    );
    f.stop().await;
}

/// Every row of a query, cells joined by `|`.
async fn cells(f: &Fixture, sql: &str) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut client = SqlClient::connect(&f.endpoint()).await.expect("connect");
    let result = client
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for batch in &result.batches {
        let options = FormatOptions::default();
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|fm| fm.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

/// An independent recount of events (id, ad, user, time): per level, the
/// rows `window_start|ad_id|clicks|unique_users`, sorted like the tables.
fn recount(events: &[(String, String, String, chrono::DateTime<chrono::Utc>)]) -> Vec<Vec<String>> {
    use chrono::{Datelike, TimeZone, Timelike};
    use std::collections::{BTreeMap, BTreeSet, HashSet};
    let truncs: [fn(chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc>; 4] = [
        |t| {
            t.with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .expect("minute")
        },
        |t| {
            t.date_naive()
                .and_hms_opt(t.hour(), 0, 0)
                .expect("hour")
                .and_utc()
        },
        |t| t.date_naive().and_hms_opt(0, 0, 0).expect("day").and_utc(),
        |t| {
            chrono::Utc
                .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                .single()
                .expect("month")
        },
    ];
    // The first copy sent of an event id is the one that counts.
    let mut seen = HashSet::new();
    let firsts: Vec<_> = events.iter().filter(|e| seen.insert(e.0.clone())).collect();
    truncs
        .iter()
        .map(|trunc| {
            let mut windows: BTreeMap<(String, String), (usize, BTreeSet<String>)> =
                BTreeMap::new();
            for (_, ad, user, t) in &firsts {
                let w = windows
                    .entry((
                        trunc(*t).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        ad.clone(),
                    ))
                    .or_default();
                w.0 += 1;
                w.1.insert(user.clone());
            }
            windows
                .into_iter()
                .map(|((w, ad), (clicks, users))| format!("{w}|{ad}|{clicks}|{}", users.len()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_out_of_order_and_resent_events_land_in_every_level() {
    use chrono::{Duration as D, TimeZone, Utc};
    let f = Fixture::start().await;
    let base = Utc
        .with_ymd_and_hms(2017, 11, 7, 12, 0, 0)
        .single()
        .expect("time");
    let mut sent: Vec<(String, String, String, chrono::DateTime<Utc>)> = Vec::new();
    let mut n = 0;
    let mut batch = |offsets: &[D], resend: usize, sent: &mut Vec<_>| {
        let mut events = Vec::new();
        // Resends of earlier events (same id, another time and ad): counted once, where first sent.
        for e in sent.iter().take(resend) {
            let (id, _, user, t): &(String, String, String, chrono::DateTime<Utc>) = e;
            events.push((
                id.clone(),
                "moved".to_string(),
                user.clone(),
                *t + D::hours(5),
            ));
        }
        for off in offsets {
            n += 1;
            events.push((
                format!("late-{n}"),
                format!("ad-{}", n % 3),
                format!("u-{}", n % 4),
                base + *off,
            ));
        }
        events
    };
    let batches: Vec<(&str, Vec<D>, usize)> = vec![
        ("on time", (0..12).map(|i| D::minutes(i * 7)).collect(), 0),
        (
            "1 s late",
            vec![D::seconds(-1), D::seconds(-1), D::minutes(30)],
            2,
        ),
        ("1 h late", vec![D::hours(-1), D::minutes(-61)], 0),
        (
            "out of order",
            vec![D::minutes(90), D::minutes(-5), D::hours(3), D::seconds(-30)],
            3,
        ),
        (
            "2 days late",
            vec![D::days(-2), D::days(-2) + D::minutes(1)],
            1,
        ),
        (
            "40 days late",
            vec![D::days(-40), D::days(-40) + D::hours(1)],
            0,
        ),
    ];
    for (name, offsets, resend) in batches {
        let events = batch(&offsets, resend, &mut sent);
        post_events(&f, &events).await;
        sent.extend(events);
        f.wait_rolled_up().await;
        let expected = recount(&sent);
        for (i, table) in [
            "ad_clicks_minute",
            "ad_clicks_hour",
            "ad_clicks_day",
            "ad_clicks_month",
        ]
        .iter()
        .enumerate()
        {
            let got = cells(
                &f,
                &format!("SELECT window_start, ad_id, clicks, unique_users FROM {table} ORDER BY window_start, ad_id"),
            )
            .await;
            assert_eq!(got, expected[i], "{table} after the {name} batch");
        }
    }
    f.stop().await;
}

/// Post events (id, ad, user, time) as one JSON array; they are acknowledged
/// once committed.
async fn post_events(
    f: &Fixture,
    events: &[(String, String, String, chrono::DateTime<chrono::Utc>)],
) {
    let body = serde_json::to_string(
        &events
            .iter()
            .map(|(id, ad, user, t)| {
                serde_json::json!({"event_id": id, "ad_id": ad, "user_id": user,
                    "timestamp": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
            })
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let (status, reply) = http(f.server.http_addr, "POST", "/v1/clicks", &body).await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_stitch_rollups_with_the_raw_tail_and_equal_a_recount_at_every_level() {
    use chrono::{Duration as D, TimeZone, Utc};
    // No compactor loop: the rollups advance only when this test runs them.
    let f = Fixture::start_with(false).await;
    let base = Utc
        .with_ymd_and_hms(2017, 11, 7, 12, 0, 0)
        .single()
        .expect("time");
    let ev =
        |id: String, ad: usize, user: usize, t| (id, format!("ad-{ad}"), format!("u-{user}"), t);
    let mut rolled: Vec<_> = (0..30)
        .map(|i| {
            ev(
                format!("r-{i}"),
                i % 3,
                i % 5,
                base + D::minutes(7 * i as i64),
            )
        })
        .collect();
    // A date the tail will not touch.
    rolled.extend((0..6).map(|i| {
        ev(
            format!("q-{i}"),
            i % 3,
            i,
            base + D::days(3) + D::minutes(17 * i as i64),
        )
    }));
    post_events(&f, &rolled).await;
    let m = Rollups::open(&f.store)
        .await
        .expect("rollups")
        .run_once()
        .await
        .expect("rollup run");
    // 2017-11-07: 4 hours with all 3 ads; 2017-11-10: 3 ads at 12:00, 2 at 13:00.
    assert_eq!(m.rows[1], 17, "rows of the hour table");

    // The tail, not rolled up: late events on a rolled-up date and two days
    // earlier, a new date, and resends of rolled-up ids with another ad and
    // time (they count where their first copy was stored).
    let mut tail: Vec<_> = (0..6)
        .map(|i| {
            ev(
                format!("t-{i}"),
                i % 3,
                7 + i % 2,
                base - D::days(2) + D::minutes(13 * i as i64),
            )
        })
        .collect();
    tail.extend((0..4).map(|i| ev(format!("s-{i}"), 1, i, base + D::minutes(11 * i as i64))));
    tail.extend((0..3).map(|i| {
        ev(
            format!("n-{i}"),
            1,
            9,
            base + D::days(1) + D::hours(i as i64),
        )
    }));
    tail.extend(rolled.iter().take(4).map(|(id, _, user, t)| {
        (
            id.clone(),
            "ad-1".to_string(),
            user.clone(),
            *t + D::days(1),
        )
    }));
    post_events(&f, &tail).await;
    let sent: Vec<_> = rolled.iter().chain(&tail).cloned().collect();
    let expected = recount(&sent);

    let check = |levels_from_raw: bool| {
        let f = &f;
        let expected = &expected;
        async move {
            for (i, level) in ["minute", "hour", "day", "month"].iter().enumerate() {
                for ad in ["ad-0", "ad-1", "ad-2"] {
                    let want: Vec<String> = expected[i]
                        .iter()
                        .filter(|r| r.split('|').nth(1) == Some(ad))
                        .cloned()
                        .collect();
                    // Straight after the acknowledgement: fresh without waiting.
                    let got = cells(
                        f,
                        &format!(
                            "SELECT window_start, ad_id, clicks, unique_users \
                             FROM ad_click_stats('{ad}', '2017-09-01', '2018-01-01', '{level}') ORDER BY window_start"
                        ),
                    )
                    .await;
                    assert_eq!(got, want, "{level} stats of {ad}");
                }
                let sources = cells(
                    f,
                    &format!(
                        "SELECT DISTINCT source FROM ad_click_stats('ad-1', '2017-09-01', '2018-01-01', '{level}') ORDER BY source"
                    ),
                )
                .await;
                let plan = cells(
                    f,
                    &format!(
                        "EXPLAIN SELECT * FROM ad_click_stats('ad-1', '2017-09-01', '2018-01-01', '{level}')"
                    ),
                )
                .await
                .join("\n");
                let table = format!("ad_clicks_{level}");
                assert!(
                    plan.contains(&format!(
                        "AdClickStatsExec: level={level}, from {table} (reflects ad_clicks v"
                    )),
                    "{plan}"
                );
                if levels_from_raw {
                    // Minute to day: 2017-11-10 comes from the rollup, the tail's
                    // dates from raw. Month: the tail touches 2017-11, so it is recounted.
                    let want = if *level == "month" {
                        vec!["ad_clicks".to_string()]
                    } else {
                        vec!["ad_clicks".to_string(), table.clone()]
                    };
                    assert_eq!(sources, want, "{level}");
                    assert!(plan.contains("recounted from ad_clicks: ["), "{plan}");
                } else {
                    assert_eq!(sources, vec![table.clone()], "{level}");
                    assert!(!plan.contains("recounted"), "{plan}");
                }
            }
        }
    };
    check(true).await;

    // The read API over HTTP answers the same windows, with the flags.
    let (status, body) = http(
        f.server.http_addr,
        "GET",
        "/v1/ads/ad-1/stats?start=2017-09-01&end=2018-01-01&granularity=day",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
    let got: Vec<String> = reply["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| {
            let t =
                chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().expect("start"))
                    .expect("rfc3339")
                    .with_timezone(&Utc);
            format!(
                "{}|{}|{}|{}|{}",
                t.format("%Y-%m-%dT%H:%M:%SZ"),
                w["ad_id"].as_str().expect("ad"),
                w["clicks"],
                w["unique_users"],
                w["is_final"]
            )
        })
        .collect();
    let want: Vec<String> = expected[2]
        .iter()
        .filter(|r| r.split('|').nth(1) == Some("ad-1"))
        .map(|r| format!("{r}|false"))
        .collect();
    assert_eq!(got, want);
    let (status, body) = http(
        f.server.http_addr,
        "GET",
        "/v1/ads/ad-1/stats?end=2018-01-01",
        "",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("start is required"), "{body}");

    // Once rolled up, every window comes from the rollups, with the same values.
    Rollups::open(&f.store)
        .await
        .expect("rollups")
        .run_once()
        .await
        .expect("rollup run");
    check(false).await;
    f.stop().await;
}
