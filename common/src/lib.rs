//! Parts shared by every clicklake service: the click event schema, the Delta
//! table definitions (raw `ad_clicks` and the four rollup levels), the storage
//! configuration that says where the tables live, and timestamp parsing.
//!
//! It owns no service and runs no task; `ingest`, `compactor` and `query`
//! depend on it and never on each other.

pub mod auth;
pub mod changes;
pub mod error;
pub mod schema;
pub mod sink;
pub mod storage;
pub mod time;

pub use error::{Error, Result};
pub use schema::{Level, RAW_TABLE};
pub use storage::StorageConfig;
