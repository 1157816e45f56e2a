//! clicklake query: an Arrow Flight SQL server over a DataFusion session in
//! which the Delta tables (`ad_clicks` and the four rollups) and the stats
//! table functions (`ad_click_stats`, `user_ad_clicks`) are registered.
//!
//! It only reads: it never writes raw events or rollups. Arrow click uploads
//! (Flight `DoPut`, bulk ingest) are handed to the node's ingest role through
//! [`clicklake_common::sink::ClickSink`].

pub mod bulk;
pub mod catalog;
pub mod client;
pub mod error;
pub mod functions;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod prepared;
pub mod service;
pub mod stats;

pub use catalog::Catalog;
pub use error::{Error, Result};
pub use limits::QueryArgs;
pub use service::FlightSqlServer;
