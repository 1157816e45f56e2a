//! The tables a query sees: one Delta snapshot per table, refreshed when a
//! query starts, registered in a fresh DataFusion session together with the
//! stats table functions.

use std::collections::BTreeMap;
use std::sync::Arc;

use clicklake_common::schema::{RAW_PARTITION, ROLLUP_PARTITION, raw_schema, rollup_schema};
use clicklake_common::{Level, RAW_TABLE, StorageConfig};
use datafusion::execution::context::SessionConfig;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::functions::{AdClickStats, UserAdClicks};
use crate::stats::{Snapshot, StatsTables, TailCache};

/// Catalog name shown to Flight SQL clients.
pub const CATALOG: &str = "clicklake";
/// Schema name shown to Flight SQL clients.
pub const SCHEMA: &str = "public";

/// The Delta tables of one store, kept open between queries.
pub struct Catalog {
    tables: Mutex<BTreeMap<&'static str, DeltaTable>>,
    /// What each raw version added, for the stats functions' raw tail.
    tail: Arc<TailCache>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// Open every table of the store (creating empty ones that do not exist
    /// yet, so that a query node can start before the first event arrives).
    pub async fn open(storage: &StorageConfig) -> Result<Self> {
        let mut tables = BTreeMap::new();
        tables.insert(
            RAW_TABLE,
            storage
                .open_or_create(RAW_TABLE, &raw_schema(), &[RAW_PARTITION])
                .await?,
        );
        for level in Level::ALL {
            let parts: &[&str] = if level.partitioned() {
                &[ROLLUP_PARTITION]
            } else {
                &[]
            };
            tables.insert(
                level.table(),
                storage
                    .open_or_create(level.table(), &rollup_schema(level), parts)
                    .await?,
            );
        }
        Ok(Self {
            tables: Mutex::new(tables),
            tail: Arc::default(),
        })
    }

    /// Table names, in the order clients list them.
    pub fn table_names() -> Vec<&'static str> {
        clicklake_common::schema::all_tables()
    }

    /// A session over the newest snapshot of every table, running on `runtime`
    /// (which carries the query's memory limit).
    pub async fn context(&self, runtime: Arc<RuntimeEnv>) -> Result<SessionContext> {
        let mut tables = self.tables.lock().await.clone();
        for (name, table) in tables.iter_mut() {
            table.update_state().await.map_err(|source| Error::Delta {
                table: name.to_string(),
                source,
            })?;
        }
        {
            let mut shared = self.tables.lock().await;
            for (name, table) in &tables {
                if let Some(old) = shared.get_mut(name)
                    && old.version() < table.version()
                {
                    *old = table.clone();
                }
            }
        }
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, SCHEMA);
        // Strings as plain Utf8 on the wire: not every Flight SQL client (JDBC
        // drivers, older pyarrow) reads Utf8View.
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        clicklake_sql::sketch::register(&ctx);
        let mut snapshots: BTreeMap<&'static str, Snapshot> = BTreeMap::new();
        for (name, table) in tables {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|source| Error::Delta {
                    table: name.to_string(),
                    source,
                })?;
            let provider = table.table_provider().await?;
            ctx.register_table(name, provider.clone())?;
            snapshots.insert(name, Snapshot { table, provider });
        }
        let levels = Level::ALL
            .iter()
            .filter_map(|l| snapshots.get(l.table()).map(|s| (*l, s.clone())))
            .collect();
        if let Some(raw) = snapshots.remove(RAW_TABLE) {
            ctx.register_udtf(
                "user_ad_clicks",
                Arc::new(UserAdClicks::new(raw.provider.clone())),
            );
            let stats = StatsTables {
                raw,
                levels,
                tail: self.tail.clone(),
            };
            let stats = Arc::new(stats);
            ctx.register_udtf("ad_click_stats", Arc::new(AdClickStats::new(stats.clone())));
            ctx.register_udtf(
                "all_ad_click_stats",
                Arc::new(AdClickStats::every_ad(stats)),
            );
        }
        Ok(ctx)
    }
}
