//! `POST /v1/clicks`: JSON ingest. The body is one JSON object, a JSON array
//! of objects, or NDJSON (one object per line), optionally gzip-compressed
//! (`Content-Encoding: gzip`). The answer lists how many events were stored
//! and, for each refused one, its index, field and reason.

use std::io::Read;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::error::Error;
use crate::event::{ClickEvent, Rejection, Validator};
use crate::metrics::Path;
use crate::writer::IngestHandle;

/// Largest accepted HTTP body, in bytes, as sent and after decompression.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The ingest routes, to merge into the HTTP listener's router.
pub fn router(handle: IngestHandle) -> Router {
    Router::new()
        .route("/v1/clicks", post(post_clicks))
        // The limit is applied below, so an oversized body gets a JSON answer.
        .layer(DefaultBodyLimit::disable())
        .with_state(handle)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is over {MAX_BODY_BYTES} bytes (as sent or decompressed); split it"
        ),
    )
}

/// The body as JSON text: read up to the limit, gunzipped when the request says so.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    // A declared length over the limit is refused before the body is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let raw = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    Path::Http.received(raw.len());
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => Ok(raw),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            let mut decoder =
                flate2::read::MultiGzDecoder::new(&raw[..]).take(MAX_BODY_BYTES as u64 + 1);
            decoder.read_to_end(&mut out).map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not valid gzip (Content-Encoding: gzip): {e}"),
                )
            })?;
            if out.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not supported; send identity or gzip"),
        )),
    }
}

async fn post_clicks(
    State(handle): State<IngestHandle>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        let reply = json!({"error": "the request body is empty; send a JSON object, a JSON array or NDJSON"});
        return (StatusCode::BAD_REQUEST, Json(reply)).into_response();
    }
    let results = parse_body(&handle.validator(), &body);
    let total = results.len();
    match handle.ingest(Path::Http, results).await {
        Ok(outcome) => {
            let status = if total > 0 && outcome.accepted == 0 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, Json(outcome)).into_response()
        }
        Err(err @ (Error::Commit { .. } | Error::ShuttingDown | Error::Storage(_))) => {
            tracing::error!(error = %err, "HTTP ingest failed");
            let body = json!({"error": format!("{err}; the events were not stored, retry")});
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                Json(body),
            )
                .into_response()
        }
        Err(err @ Error::Backpressure { .. }) => {
            let body = json!({"error": err.to_string()});
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                Json(body),
            )
                .into_response()
        }
        Err(err @ (Error::Body(_) | Error::TooLarge { .. })) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": err.to_string()})),
        )
            .into_response(),
    }
}

/// Split a body into per-event results, in order.
pub fn parse_body(validator: &Validator, body: &[u8]) -> Vec<Result<ClickEvent, Rejection>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items.iter().map(|v| validator.from_json(v)).collect(),
        Ok(single) => vec![validator.from_json(&single)],
        // Not one JSON document: NDJSON, one event per non-empty line.
        Err(_) => body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(n, line)| match serde_json::from_slice::<Value>(line) {
                Ok(v) => validator.from_json(&v),
                Err(e) => Err(Rejection {
                    index: 0,
                    field: "event".into(),
                    reason: format!("line {} is not valid JSON: {e}", n + 1),
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn v() -> Validator {
        Validator {
            now_micros: 1_510_047_038_000_000,
            max_future: Duration::from_secs(3600),
            unknown_fields: crate::event::UnknownFields::Ignore,
        }
    }

    #[test]
    fn object_array_and_ndjson_bodies() {
        let one = br#"{"ad_id":"a","user_id":"u","timestamp":"2017-11-07T09:00:00Z"}"#;
        assert_eq!(parse_body(&v(), one).len(), 1);
        let arr =
            br#"[{"ad_id":"a","user_id":"u","timestamp":"2017-11-07T09:00:00Z"},{"ad_id":"b"}]"#;
        let r = parse_body(&v(), arr);
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().expect_err("no user").field, "user_id");
        let nd = b"{\"ad_id\":\"a\",\"user_id\":\"u\",\"timestamp\":1510045200}\n\n{oops\n{\"ad_id\":\"b\",\"user_id\":\"v\",\"timestamp\":1510045200000}\n";
        let r = parse_body(&v(), nd);
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[2].is_ok());
        let bad = r[1].as_ref().expect_err("bad line");
        assert!(
            // Line 3 of the body (line 2 is blank), the second event.
            bad.reason.starts_with("line 3 is not valid JSON"),
            "{bad:?}"
        );
    }
}
