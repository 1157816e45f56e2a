//! One validation for every ingest path: JSON objects (HTTP) and protobuf
//! messages (gRPC) both become a [`ClickEvent`] or a [`Rejection`] naming the
//! field and the reason.

use std::time::Duration;

use clicklake_common::time::{
    MIN_EVENT_MICROS, epoch_integer_to_micros, epoch_number_to_micros, parse_rfc3339_micros,
};
use clicklake_proto::ingest as pb;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Longest accepted id or label, in bytes.
pub const MAX_STRING_BYTES: usize = 256;

/// A validated click, ready for the raw table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickEvent {
    pub event_id: String,
    pub ad_id: String,
    pub user_id: String,
    /// Event time, microseconds since the epoch (UTC).
    pub event_time: i64,
    pub device: Option<String>,
    pub os: Option<String>,
    pub country: Option<String>,
    pub campaign_id: Option<String>,
    pub is_conversion: bool,
}

/// Why an event was refused: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in its request.
    pub index: usize,
    pub field: String,
    pub reason: String,
}

impl Rejection {
    pub(crate) fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            index: 0,
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// The same rejection at a position of the request.
    pub fn at(mut self, index: usize) -> Self {
        self.index = index;
        self
    }
}

/// The event fields, the same names in JSON, protobuf and Arrow.
pub const FIELDS: [&str; 10] = [
    "event_id",
    "ad_id",
    "user_id",
    "timestamp",
    "device",
    "os",
    "country",
    "location",
    "campaign_id",
    "is_conversion",
];

/// What to do with a field that is not one of [`FIELDS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownFields {
    /// Store the event without the field (producers may send more than clicklake keeps).
    #[default]
    Ignore,
    /// Refuse the event, naming the field (catches misspelt field names).
    Reject,
}

/// Rules that depend on the server: its clock, how far ahead events may be,
/// and the unknown-fields policy.
#[derive(Debug, Clone, Copy)]
pub struct Validator {
    /// Current time, microseconds since the epoch.
    pub now_micros: i64,
    pub max_future: Duration,
    pub unknown_fields: UnknownFields,
}

impl Validator {
    /// A validator reading the system clock.
    pub fn now(max_future: Duration, unknown_fields: UnknownFields) -> Self {
        Self {
            now_micros: chrono::Utc::now().timestamp_micros(),
            max_future,
            unknown_fields,
        }
    }

    /// Refuse a field outside [`FIELDS`] when the policy says so.
    pub fn check_unknown<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        also_known: &[&str],
    ) -> Result<(), Rejection> {
        if self.unknown_fields == UnknownFields::Ignore {
            return Ok(());
        }
        match names
            .into_iter()
            .find(|n| !FIELDS.contains(n) && !also_known.contains(n))
        {
            Some(name) => Err(Rejection::new(
                name,
                format!(
                    "is not an event field (--unknown-fields reject); the fields are {}",
                    FIELDS.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// Validate one JSON object.
    pub fn from_json(&self, value: &Value) -> Result<ClickEvent, Rejection> {
        let Value::Object(obj) = value else {
            return Err(Rejection::new(
                "event",
                format!("expected a JSON object, got {}", json_kind(value)),
            ));
        };
        self.check_unknown(obj.keys().map(String::as_str), &[])?;
        // Required fields are checked in the order of the contract.
        let ad_id = Some(required("ad_id", json_str(obj, "ad_id")?)?);
        let user_id = Some(required("user_id", json_str(obj, "user_id")?)?);
        let timestamp = match obj.get("timestamp") {
            None | Some(Value::Null) => return Err(Rejection::new("timestamp", "is required")),
            Some(Value::String(s)) => parse_rfc3339_micros(s),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => epoch_integer_to_micros(i),
                (None, Some(f)) => epoch_number_to_micros(f),
                (None, None) => Err(format!("{n} is not a usable number")),
            },
            Some(other) => Err(format!(
                "must be an RFC 3339 string or an epoch number, got {}",
                json_kind(other)
            )),
        }
        .map_err(|reason| Rejection::new("timestamp", reason))?;
        let country = country_or_location(json_str(obj, "country")?, json_str(obj, "location")?)?;
        let is_conversion = match obj.get("is_conversion") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
            Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
            Some(other) => {
                return Err(Rejection::new(
                    "is_conversion",
                    format!("must be true, false, 0 or 1, got {other}"),
                ));
            }
        };
        self.finish(Fields {
            event_id: json_str(obj, "event_id")?,
            ad_id,
            user_id,
            timestamp,
            device: json_str(obj, "device")?,
            os: json_str(obj, "os")?,
            country,
            campaign_id: json_str(obj, "campaign_id")?,
            is_conversion,
        })
    }

    /// Validate one protobuf event.
    pub fn from_proto(&self, event: pb::ClickEvent) -> Result<ClickEvent, Rejection> {
        let timestamp = match event.timestamp {
            None => return Err(Rejection::new("timestamp", "is required")),
            Some(pb::click_event::Timestamp::TimestampRfc3339(s)) => {
                parse_rfc3339_micros(&s).map_err(|r| Rejection::new("timestamp", r))?
            }
            Some(pb::click_event::Timestamp::TimestampMicros(us)) => us,
        };
        let opt = |s: String| (!s.is_empty()).then_some(s);
        self.finish(Fields {
            event_id: opt(event.event_id),
            ad_id: opt(event.ad_id),
            user_id: opt(event.user_id),
            timestamp,
            device: opt(event.device),
            os: opt(event.os),
            country: opt(event.country),
            campaign_id: opt(event.campaign_id),
            is_conversion: event.is_conversion,
        })
    }

    /// The checks every path shares, on fields already read from their encoding.
    pub(crate) fn finish(&self, f: Fields) -> Result<ClickEvent, Rejection> {
        let ad_id = required("ad_id", f.ad_id)?;
        let user_id = required("user_id", f.user_id)?;
        if f.timestamp < MIN_EVENT_MICROS {
            return Err(Rejection::new(
                "timestamp",
                format!(
                    "{} is before 2000-01-01",
                    clicklake_common::time::micros_to_rfc3339(f.timestamp)
                ),
            ));
        }
        let limit = self
            .now_micros
            .saturating_add(i64::try_from(self.max_future.as_micros()).unwrap_or(i64::MAX));
        if f.timestamp > limit {
            return Err(Rejection::new(
                "timestamp",
                format!(
                    "{} is more than {} ahead of the server clock",
                    clicklake_common::time::micros_to_rfc3339(f.timestamp),
                    humantime::format_duration(self.max_future)
                ),
            ));
        }
        for (name, value) in [
            ("event_id", f.event_id.as_deref()),
            ("device", f.device.as_deref()),
            ("os", f.os.as_deref()),
            ("country", f.country.as_deref()),
            ("campaign_id", f.campaign_id.as_deref()),
        ] {
            if let Some(v) = value {
                check_label(name, v)?;
            }
        }
        let mut event = ClickEvent {
            event_id: f.event_id.unwrap_or_default(),
            ad_id,
            user_id,
            event_time: f.timestamp,
            device: f.device,
            os: f.os,
            country: f.country,
            campaign_id: f.campaign_id,
            is_conversion: f.is_conversion,
        };
        if event.event_id.is_empty() {
            event.event_id = derive_event_id(&event);
        }
        Ok(event)
    }
}

/// One event's fields as read from JSON, protobuf or Arrow, before the shared checks.
pub(crate) struct Fields {
    pub event_id: Option<String>,
    pub ad_id: Option<String>,
    pub user_id: Option<String>,
    pub timestamp: i64,
    pub device: Option<String>,
    pub os: Option<String>,
    pub country: Option<String>,
    pub campaign_id: Option<String>,
    pub is_conversion: bool,
}

/// `location` is an alias of `country`; both may be sent only when equal.
pub(crate) fn country_or_location(
    country: Option<String>,
    location: Option<String>,
) -> Result<Option<String>, Rejection> {
    match (country, location) {
        (Some(c), Some(l)) if c != l => Err(Rejection::new(
            "location",
            format!("alias of country, but {l:?} differs from country {c:?}"),
        )),
        (c, l) => Ok(c.or(l)),
    }
}

pub(crate) fn required(field: &str, value: Option<String>) -> Result<String, Rejection> {
    let v = value.ok_or_else(|| Rejection::new(field, "is required"))?;
    check_label(field, &v)?;
    Ok(v)
}

fn check_label(field: &str, v: &str) -> Result<(), Rejection> {
    if v.len() > MAX_STRING_BYTES {
        return Err(Rejection::new(
            field,
            format!("is {} bytes long; the limit is {MAX_STRING_BYTES}", v.len()),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(Rejection::new(field, "contains a control character"));
    }
    Ok(())
}

fn json_str(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Rejection::new(
            field,
            format!("must be a string, got {}", json_kind(other)),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The event id of an event sent without one: a SHA-256 over every field, so
/// that an exact resend of the same click gets the same id and counts once.
pub fn derive_event_id(e: &ClickEvent) -> String {
    let mut h = Sha256::new();
    for part in [
        e.ad_id.as_str(),
        e.user_id.as_str(),
        &e.event_time.to_string(),
        e.device.as_deref().unwrap_or(""),
        e.os.as_deref().unwrap_or(""),
        e.country.as_deref().unwrap_or(""),
        e.campaign_id.as_deref().unwrap_or(""),
        if e.is_conversion { "1" } else { "0" },
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    format!("h-{}", hex::encode(&h.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // 2017-11-07T09:30:38Z
    const T_US: i64 = 1_510_047_038_000_000;

    fn v() -> Validator {
        Validator {
            now_micros: T_US,
            max_future: Duration::from_secs(86_400),
            unknown_fields: UnknownFields::Ignore,
        }
    }

    fn reject(value: Value) -> Rejection {
        v().from_json(&value).expect_err("should be rejected")
    }

    #[test]
    fn json_event_with_alias_and_epoch_seconds() {
        let e = v()
            .from_json(
                &json!({"event_id": "e1", "ad_id": "3-280", "user_id": "87540",
                "timestamp": 1_510_047_038, "device": "1", "location": "DE", "is_conversion": 1}),
            )
            .expect("valid");
        assert_eq!(e.event_time, T_US);
        assert_eq!(e.country.as_deref(), Some("DE"));
        assert!(e.is_conversion);
        assert_eq!(e.event_id, "e1");
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = json!({"ad_id": "a", "user_id": "u", "timestamp": "2017-11-07T09:30:38Z"});
        let with = |k: &str, val: Value| {
            let mut o = ok.clone();
            o[k] = val;
            o
        };
        let without = |k: &str| {
            let mut o = ok.clone();
            o.as_object_mut().expect("object").remove(k);
            o
        };
        assert_eq!(reject(without("ad_id")).field, "ad_id");
        assert_eq!(reject(without("user_id")).field, "user_id");
        assert_eq!(reject(without("timestamp")).field, "timestamp");
        assert_eq!(
            reject(with("timestamp", json!("yesterday"))).field,
            "timestamp"
        );
        assert_eq!(
            reject(with("ad_id", json!(12))).reason,
            "must be a string, got a number"
        );
        let future = reject(with("timestamp", json!("2017-11-09T09:30:38Z")));
        assert!(
            future.reason.contains("ahead of the server clock"),
            "{future:?}"
        );
        let old = reject(with("timestamp", json!("1999-12-31T23:59:59Z")));
        assert!(old.reason.contains("before 2000"), "{old:?}");
        let long = reject(with("device", json!("x".repeat(300))));
        assert_eq!(
            (long.field.as_str(), long.reason.as_str()),
            ("device", "is 300 bytes long; the limit is 256")
        );
        assert_eq!(reject(json!([1])).field, "event");
    }

    #[test]
    fn unknown_fields_are_ignored_or_refused_by_policy() {
        let e = json!({"ad_id": "a", "user_id": "u", "timestamp": "2017-11-07T09:30:38Z", "colour": "red"});
        let stored = v().from_json(&e).expect("ignored by default");
        assert_eq!((stored.ad_id.as_str(), stored.user_id.as_str()), ("a", "u"));
        let strict = Validator {
            unknown_fields: UnknownFields::Reject,
            ..v()
        };
        let r = strict.from_json(&e).expect_err("refused when rejecting");
        assert_eq!(r.field, "colour");
        assert!(r.reason.starts_with("is not an event field"), "{r:?}");
        // `location`, the alias, is an event field.
        let alias =
            json!({"ad_id": "a", "user_id": "u", "timestamp": 1_510_047_038, "location": "DE"});
        assert_eq!(
            strict.from_json(&alias).expect("alias").country.as_deref(),
            Some("DE")
        );
    }

    #[test]
    fn derived_ids_are_stable_and_distinguish_clicks() {
        let a = json!({"ad_id": "a", "user_id": "u", "timestamp": "2017-11-07T09:30:38Z"});
        let b = json!({"ad_id": "a", "user_id": "u", "timestamp": "2017-11-07T09:30:39Z"});
        let ea = v().from_json(&a).expect("valid");
        assert_eq!(ea.event_id, v().from_json(&a).expect("valid").event_id);
        assert_ne!(ea.event_id, v().from_json(&b).expect("valid").event_id);
        assert!(ea.event_id.starts_with("h-") && ea.event_id.len() == 34);
    }

    #[test]
    fn proto_event_needs_a_timestamp() {
        let e = pb::ClickEvent {
            ad_id: "a".into(),
            user_id: "u".into(),
            ..Default::default()
        };
        assert_eq!(v().from_proto(e).expect_err("no time").field, "timestamp");
    }
}
