//! Fuzzing the three decoders every event comes through (JSON bodies,
//! protobuf messages, Arrow record batches) with proptest: whatever the
//! input, no panic, one result per event, and every accepted event obeys the
//! rules of the contract (required ids present and short, time between 2000
//! and the allowed future). A valid event sent on any of the three
//! encodings becomes the same stored event.
//!
//! The run is bounded: `PROPTEST_CASES` cases per target (default 512 here,
//! so `make test` stays quick); `PROPTEST_CASES=100000 cargo test -p
//! clicklake-ingest --test decoders` for a long run. Inputs that once broke a
//! decoder go into `tests/corpus/` and are replayed by `corpus_replays`;
//! proptest also keeps its shrunk failures in `proptest-regressions/`.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};
use clicklake_common::time::MIN_EVENT_MICROS;
use clicklake_ingest::arrow_batch::batch_to_events;
use clicklake_ingest::event::{FIELDS, MAX_STRING_BYTES, UnknownFields, Validator};
use clicklake_ingest::http::parse_body;
use clicklake_ingest::{ClickEvent, Rejection};
use clicklake_proto::ingest as pb;
use proptest::prelude::*;
use prost::Message;

/// 2017-11-07T09:30:38Z, the server clock of every case.
const NOW_US: i64 = 1_510_047_038_000_000;
const MAX_FUTURE: Duration = Duration::from_secs(86_400);

fn validator(unknown_fields: UnknownFields) -> Validator {
    Validator {
        now_micros: NOW_US,
        max_future: MAX_FUTURE,
        unknown_fields,
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// What holds for every decoder's output.
fn check(results: &[Result<ClickEvent, Rejection>]) {
    for r in results {
        match r {
            Ok(e) => {
                for (name, v) in [
                    ("ad_id", &e.ad_id),
                    ("user_id", &e.user_id),
                    ("event_id", &e.event_id),
                ] {
                    assert!(!v.is_empty(), "{name} accepted empty");
                    assert!(
                        v.len() <= MAX_STRING_BYTES,
                        "{name} accepted with {} bytes",
                        v.len()
                    );
                }
                assert!(
                    e.event_time >= MIN_EVENT_MICROS,
                    "time before 2000 accepted: {}",
                    e.event_time
                );
                assert!(
                    e.event_time <= NOW_US + MAX_FUTURE.as_micros() as i64,
                    "time past the allowed future accepted: {}",
                    e.event_time
                );
            }
            Err(rej) => {
                assert!(
                    FIELDS.contains(&rej.field.as_str())
                        || rej.field == "event"
                        || rej.field.starts_with("x"),
                    "rejection names no field: {rej:?}"
                );
                assert!(
                    !rej.reason.is_empty(),
                    "rejection without a reason: {rej:?}"
                );
            }
        }
    }
}

/// JSON values shaped like events: the right field names with values of any type.
fn json_event() -> impl Strategy<Value = serde_json::Value> {
    let scalar = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        // epoch numbers around the valid range in s, ms, µs and ns
        (946_684_800i64..4_102_444_800i64, 0u32..4)
            .prop_map(|(s, unit)| serde_json::json!(s * 1000i64.pow(unit))),
        ".{0,300}".prop_map(serde_json::Value::String),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,12})?(Z|[+-][01][0-9]:[0-5][0-9])?"
            .prop_map(serde_json::Value::String),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
    ];
    let names = prop_oneof![
        proptest::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
        "x[a-z]{0,6}",
    ];
    proptest::collection::vec((names, scalar), 0..12)
        .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_bodies_of_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&parse_body(&validator(UnknownFields::Ignore), &body));
    }

    #[test]
    fn json_events_of_any_field_types(
        events in proptest::collection::vec(json_event(), 1..20),
        reject_unknown in any::<bool>(),
        ndjson in any::<bool>(),
    ) {
        let policy = if reject_unknown { UnknownFields::Reject } else { UnknownFields::Ignore };
        let body = if ndjson {
            events.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
        } else {
            serde_json::Value::Array(events.clone()).to_string()
        };
        let results = parse_body(&validator(policy), body.as_bytes());
        prop_assert_eq!(results.len(), events.len());
        check(&results);
    }

    #[test]
    fn protobuf_messages_of_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(request) = pb::TrackAdClicksRequest::decode(&bytes[..]) {
            let v = validator(UnknownFields::Ignore);
            let results: Vec<_> = request.events.into_iter().map(|e| v.from_proto(e)).collect();
            check(&results);
        }
    }

    #[test]
    fn arrow_batches_of_any_column_types(columns in proptest::collection::vec(column(), 1..10), rows in 0usize..40) {
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        for (name, ty, seed) in columns {
            if fields.iter().any(|f: &Field| f.name() == &name) {
                continue;
            }
            if let Some(array) = array_of(&ty, rows, seed) {
                fields.push(Field::new(name, array.data_type().clone(), true));
                arrays.push(array);
            }
        }
        let Ok(batch) = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays) else {
            return Ok(());
        };
        for policy in [UnknownFields::Ignore, UnknownFields::Reject] {
            match batch_to_events(&validator(policy), &batch) {
                Ok(results) => {
                    prop_assert_eq!(results.len(), rows);
                    check(&results);
                }
                Err(e) => prop_assert!(
                    batch.schema().field_with_name(&e.column).is_ok(),
                    "a refused batch names a column it has: {e}"
                ),
            }
        }
    }

    #[test]
    fn one_event_is_the_same_on_every_path(
        ad in "[a-z0-9-]{1,20}",
        user in "[0-9]{1,10}",
        offset_s in -1_000_000_000i64..80_000,
        device in proptest::option::of("[0-9]{1,3}"),
        country in proptest::option::of("[A-Z]{2}"),
        conversion in any::<bool>(),
        with_id in any::<bool>(),
    ) {
        let micros = NOW_US + offset_s * 1_000_000;
        let v = validator(UnknownFields::Reject);
        let id = with_id.then(|| format!("evt-{ad}-{user}"));
        let mut json = serde_json::json!({
            "ad_id": ad, "user_id": user, "timestamp": micros, "is_conversion": conversion,
        });
        if let Some(id) = &id { json["event_id"] = id.clone().into(); }
        if let Some(d) = &device { json["device"] = d.clone().into(); }
        if let Some(c) = &country { json["location"] = c.clone().into(); }
        let from_json = v.from_json(&json);

        let from_proto = v.from_proto(pb::ClickEvent {
            event_id: id.clone().unwrap_or_default(),
            ad_id: ad.clone(),
            user_id: user.clone(),
            timestamp: Some(pb::click_event::Timestamp::TimestampMicros(micros)),
            device: device.clone().unwrap_or_default(),
            country: country.clone().unwrap_or_default(),
            is_conversion: conversion,
            ..Default::default()
        });

        let batch = RecordBatch::try_from_iter([
            ("event_id", Arc::new(StringArray::from(vec![id.clone()])) as ArrayRef),
            ("ad_id", Arc::new(StringArray::from(vec![ad.clone()]))),
            ("user_id", Arc::new(StringArray::from(vec![user.clone()]))),
            ("timestamp", Arc::new(TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC"))),
            ("device", Arc::new(StringArray::from(vec![device.clone()]))),
            ("country", Arc::new(StringArray::from(vec![country.clone()]))),
            ("is_conversion", Arc::new(BooleanArray::from(vec![conversion]))),
        ]).expect("batch");
        let from_arrow = batch_to_events(&v, &batch).expect("readable batch").remove(0);

        // Protobuf and Arrow carry the unit; JSON's epoch number has its unit
        // inferred, so an out-of-range time is refused with another reason
        // but for the same field.
        prop_assert_eq!(&from_proto, &from_arrow);
        match (&from_json, &from_proto) {
            (Err(j), Err(p)) => prop_assert_eq!((j.index, &j.field), (p.index, &p.field)),
            _ => prop_assert_eq!(&from_json, &from_proto),
        }
        let expect_ok = micros >= MIN_EVENT_MICROS;
        prop_assert_eq!(from_json.is_ok(), expect_ok, "{:?}", from_json);
        if let Ok(e) = from_json {
            prop_assert_eq!(e.event_time, micros);
            if let Some(id) = id { prop_assert_eq!(e.event_id, id); }
        }
    }
}

/// A column name (event fields, the raw table's time column, or another
/// name), a type, and a seed for its values.
fn column() -> impl Strategy<Value = (String, DataType, u64)> {
    let names = prop_oneof![
        proptest::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
        Just("event_time".to_string()),
        Just("ingest_time".to_string()),
        "x[a-z]{0,4}",
    ];
    let types = proptest::sample::select(vec![
        DataType::Utf8,
        DataType::LargeUtf8,
        DataType::Utf8View,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        DataType::Int64,
        DataType::Int32,
        DataType::UInt64,
        DataType::Float64,
        DataType::Float32,
        DataType::Boolean,
        DataType::Null,
        DataType::Binary,
        DataType::Date32,
        DataType::Timestamp(TimeUnit::Second, None),
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        DataType::Timestamp(TimeUnit::Microsecond, Some("+05:30".into())),
        DataType::Timestamp(TimeUnit::Nanosecond, None),
    ]);
    (names, types, any::<u64>())
}

/// `rows` values of `ty` drawn from `seed`: strings, numbers and nulls
/// around the edges of what the validation accepts, cast to the type.
fn array_of(ty: &DataType, rows: usize, seed: u64) -> Option<ArrayRef> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let ints: Vec<Option<i64>> = (0..rows)
        .map(|_| match next() % 8 {
            0 => None,
            1 => Some(i64::MIN),
            2 => Some(i64::MAX),
            3 => Some((next() % 4_000_000_000) as i64),
            4 => Some(1_500_000_000_000 + (next() % 1_000_000_000) as i64),
            5 => Some(1_500_000_000_000_000 + (next() % 1_000_000_000_000) as i64),
            6 => Some(-((next() % 1_000_000) as i64)),
            _ => Some(next() as i64),
        })
        .collect();
    let base: ArrayRef = match ty {
        DataType::Boolean => Arc::new(BooleanArray::from(
            ints.iter()
                .map(|i| i.map(|v| v % 2 == 0))
                .collect::<Vec<_>>(),
        )),
        DataType::Float32 | DataType::Float64 => Arc::new(Float64Array::from(
            ints.iter()
                .map(|i| i.map(|v| v as f64 / 1000.0))
                .collect::<Vec<_>>(),
        )),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::Dictionary(_, _) => {
            let strings: Vec<Option<String>> = ints
                .iter()
                .map(|i| {
                    i.map(|v| match v.rem_euclid(6) {
                        0 => String::new(),
                        1 => "x".repeat(300),
                        2 => "2017-11-07T09:30:38Z".to_string(),
                        3 => "\u{0}ctl".to_string(),
                        4 => v.to_string(),
                        _ => format!("ad-{}", v % 97),
                    })
                })
                .collect();
            Arc::new(StringArray::from(strings))
        }
        _ => Arc::new(Int64Array::from(ints)),
    };
    if let DataType::Dictionary(_, _) = ty {
        let strings = base.as_any().downcast_ref::<StringArray>()?;
        let dict: DictionaryArray<Int32Type> = strings.iter().collect();
        return Some(Arc::new(dict));
    }
    cast(&base, ty).ok()
}

/// Inputs kept from earlier runs and hand-made edge cases (`tests/corpus/`):
/// `json-*` files are HTTP bodies, `proto-*.bin` files are
/// `TrackAdClicksRequest` messages.
#[test]
fn corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("corpus entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let bytes = std::fs::read(&path).expect("corpus file");
        for policy in [UnknownFields::Ignore, UnknownFields::Reject] {
            let v = validator(policy);
            if name.starts_with("json-") {
                check(&parse_body(&v, &bytes));
            } else if name.starts_with("proto-")
                && let Ok(request) = pb::TrackAdClicksRequest::decode(&bytes[..])
            {
                let results: Vec<_> = request
                    .events
                    .into_iter()
                    .map(|e| v.from_proto(e))
                    .collect();
                check(&results);
            }
        }
        replayed += 1;
    }
    assert!(replayed >= 10, "the corpus has {replayed} files");
}

/// Hand-checked answers for corpus files whose outcome is known.
#[test]
fn corpus_known_outcomes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let v = validator(UnknownFields::Ignore);
    let read = |name: &str| std::fs::read(dir.join(name)).expect("corpus file");

    let mixed = parse_body(&v, &read("json-mixed-array.json"));
    let fields: Vec<_> = mixed
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.field.clone())
        })
        .collect();
    // ad_id 1 is a number; the second lacks user_id; null, [] and "x" are no objects.
    assert_eq!(
        fields,
        ["ad_id", "user_id", "event", "event", "event", "ok"]
    );

    let ndjson = parse_body(&v, &read("json-ndjson-broken.ndjson"));
    assert!(ndjson[0].is_ok(), "{:?}", ndjson[0]);
    assert_eq!(
        ndjson[1].as_ref().err().map(|e| e.field.as_str()),
        Some("event")
    );
    assert!(
        ndjson[1]
            .as_ref()
            .err()
            .is_some_and(|e| e.reason.starts_with("line 2 ")),
        "{:?}",
        ndjson[1]
    );
    assert_eq!(
        ndjson[2].as_ref().err().map(|e| e.field.as_str()),
        Some("ad_id")
    );

    let future = parse_body(&v, &read("json-far-future-alias.json"));
    assert_eq!(
        future[0].as_ref().err().map(|e| e.field.as_str()),
        Some("timestamp")
    );

    let conflict = parse_body(&v, &read("json-alias-conflict.json"));
    assert_eq!(
        conflict[0].as_ref().err().map(|e| e.field.as_str()),
        Some("location")
    );

    let huge = parse_body(&v, &read("json-huge-number.json"));
    assert_eq!(
        huge[0].as_ref().err().map(|e| e.field.as_str()),
        Some("timestamp")
    );
}
