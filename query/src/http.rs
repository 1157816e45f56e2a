//! The JSON read API on the HTTP listener, the seed's `getAdClickStats` and
//! `getUserAdClicks` for dashboards and scripts. Each call runs the same SQL
//! table function an analyst would, under the same guardrails:
//!
//! - `GET /v1/ads/{ad_id}/stats?start=T&end=T&granularity=hour`:
//!   `ad_click_stats` (rollups stitched with the raw tail), one object per
//!   window with the breakdowns as JSON objects;
//! - `GET /v1/users/{user_id}/clicks?start=T&end=T`: `user_ad_clicks`.
//!
//! `start` and `end` are RFC 3339 times or `YYYY-MM-DD` dates (UTC);
//! `granularity` is `minute`, `hour` (the default), `day` or `month`.
//! Errors are `{"error": "..."}` with 400 for a bad argument, 503 when a
//! guardrail or the store refused, 500 otherwise.

use arrow::array::RecordBatch;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::service::FlightSqlServer;

/// The read routes, to merge into the HTTP listener's router.
pub fn router(server: FlightSqlServer) -> Router {
    Router::new()
        .route("/v1/ads/{ad_id}/stats", get(ad_stats))
        .route("/v1/users/{user_id}/clicks", get(user_clicks))
        .with_state(server)
}

#[derive(Debug, Deserialize)]
struct StatsParams {
    start: Option<String>,
    end: Option<String>,
    granularity: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RangeParams {
    start: Option<String>,
    end: Option<String>,
}

async fn ad_stats(
    State(server): State<FlightSqlServer>,
    Path(ad_id): Path<String>,
    Query(p): Query<StatsParams>,
) -> Response {
    let (start, end) = match range(p.start, p.end) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let granularity = p.granularity.unwrap_or_else(|| "hour".into());
    let sql = format!(
        "SELECT * FROM ad_click_stats({}, {}, {}, {}) ORDER BY window_start",
        quote(&ad_id),
        quote(&start),
        quote(&end),
        quote(&granularity)
    );
    let windows = match server.collect(&sql).await {
        Ok(batches) => rows(&batches),
        Err(status) => return error(&status),
    };
    match windows {
        Ok(windows) => Json(json!({
            "ad_id": ad_id,
            "start": start,
            "end": end,
            "granularity": granularity,
            "windows": windows,
        }))
        .into_response(),
        Err(response) => response,
    }
}

async fn user_clicks(
    State(server): State<FlightSqlServer>,
    Path(user_id): Path<String>,
    Query(p): Query<RangeParams>,
) -> Response {
    let (start, end) = match range(p.start, p.end) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let sql = format!(
        "SELECT * FROM user_ad_clicks({}, {}, {}) ORDER BY event_time, event_id",
        quote(&user_id),
        quote(&start),
        quote(&end)
    );
    let clicks = match server.collect(&sql).await {
        Ok(batches) => rows(&batches),
        Err(status) => return error(&status),
    };
    match clicks {
        Ok(clicks) => Json(json!({
            "user_id": user_id,
            "start": start,
            "end": end,
            "clicks": clicks,
        }))
        .into_response(),
        Err(response) => response,
    }
}

fn range(start: Option<String>, end: Option<String>) -> Result<(String, String), Response> {
    match (start, end) {
        (Some(s), Some(e)) => Ok((s, e)),
        (None, _) => Err(bad(
            "query parameter start is required (RFC 3339 or YYYY-MM-DD)",
        )),
        (_, None) => Err(bad(
            "query parameter end is required (RFC 3339 or YYYY-MM-DD)",
        )),
    }
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn bad(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

fn error(status: &tonic::Status) -> Response {
    use tonic::Code;
    let code = match status.code() {
        Code::InvalidArgument | Code::NotFound => StatusCode::BAD_REQUEST,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted | Code::Unavailable | Code::FailedPrecondition => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, Json(json!({ "error": status.message() }))).into_response()
}

/// Rows as JSON objects; the JSON text of the breakdown columns becomes
/// nested objects.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Value>, Response> {
    let fail = |e: String| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("encoding the result: {e}") })),
        )
            .into_response()
    };
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        writer.write(b).map_err(|e| fail(e.to_string()))?;
    }
    writer.finish().map_err(|e| fail(e.to_string()))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
    Ok(rows
        .into_iter()
        .map(|mut row| {
            for key in ["clicks_by_device", "clicks_by_country"] {
                if let Some(Value::String(text)) = row.get(key)
                    && let Ok(v) = serde_json::from_str::<Value>(text)
                {
                    row.insert(key.to_string(), v);
                }
            }
            Value::Object(row)
        })
        .collect())
}
