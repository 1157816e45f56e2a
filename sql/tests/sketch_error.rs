//! The error of the users sketch against exact distinct counts, measured on
//! many buckets of at least 1,000 users, built from ids (`hll_sketch`, what
//! every rollup window stores) and merged from finer sketches (`hll_union`,
//! what a coarser window or a stitched range gets).

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

const BUCKETS: usize = 120;

/// The number of distinct users of bucket `b`: 1,000 to 10,900 in steps of
/// 100, then 20 buckets of 20,000 to 115,000 (sketches in every mode).
fn users_of(b: usize) -> usize {
    if b < 100 {
        1_000 + 100 * b
    } else {
        20_000 + 5_000 * (b - 100)
    }
}

/// Every bucket's users spread over 24 "hours" with repeats, so each user
/// shows up in several hours of its bucket and in several rows.
fn events() -> RecordBatch {
    let (mut buckets, mut hours, mut users) = (Vec::new(), Vec::new(), Vec::new());
    for b in 0..BUCKETS {
        let distinct = users_of(b);
        // Each user clicks in two hours; every third user clicks twice more.
        for u in 0..distinct {
            let clicks = if u % 3 == 0 { 4 } else { 2 };
            for c in 0..clicks {
                buckets.push(format!("bucket-{b:03}"));
                hours.push(format!("{:02}", (u * 7 + c * 5 + b) % 24));
                users.push(format!("user-{b}-{u}"));
            }
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::Utf8, false),
        Field::new("hour", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(buckets)),
            Arc::new(StringArray::from(hours)),
            Arc::new(StringArray::from(users)),
        ],
    )
    .expect("batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sketch_error_is_within_one_percent_on_buckets_of_at_least_1000_users() {
    let ctx = SessionContext::new();
    clicklake_sql::sketch::register(&ctx);
    let batch = events();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("table");
    ctx.register_table("events", Arc::new(table))
        .expect("register");
    // The exact count, the estimate of a sketch built from the ids, and the
    // estimate of the union of the 24 hourly sketches of the bucket.
    let sql = "
        WITH hourly AS (
            SELECT bucket, hour, hll_sketch(user_id) AS s FROM events GROUP BY bucket, hour
        ),
        merged AS (
            SELECT bucket, hll_estimate(hll_union(s)) AS from_hours FROM hourly GROUP BY bucket
        ),
        direct AS (
            SELECT bucket, count(DISTINCT user_id) AS exact,
                   hll_estimate(hll_sketch(user_id)) AS from_ids
            FROM events GROUP BY bucket
        )
        SELECT d.bucket, d.exact, d.from_ids, m.from_hours
        FROM direct d JOIN merged m ON d.bucket = m.bucket ORDER BY d.bucket";
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let mut rows = 0;
    let (mut worst_ids, mut worst_union, mut sum_ids) = (0f64, 0f64, 0f64);
    for b in &batches {
        let exact = b.column(1).as_primitive::<Int64Type>();
        let from_ids = b.column(2).as_primitive::<Float64Type>();
        let from_hours = b.column(3).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let e = exact.value(r) as f64;
            assert!(e >= 1_000.0, "bucket of {e} users");
            let err_ids = (from_ids.value(r) - e).abs() / e;
            let err_union = (from_hours.value(r) - e).abs() / e;
            worst_ids = worst_ids.max(err_ids);
            worst_union = worst_union.max(err_union);
            sum_ids += err_ids;
            rows += 1;
        }
    }
    println!(
        "{rows} buckets: worst error {:.3}% from ids, {:.3}% from hourly unions; mean {:.3}%",
        worst_ids * 100.0,
        worst_union * 100.0,
        sum_ids / rows as f64 * 100.0
    );
    assert_eq!(rows, BUCKETS);
    assert!(worst_ids <= 0.01, "worst error from ids {worst_ids}");
    assert!(worst_union <= 0.01, "worst error from unions {worst_union}");
}
