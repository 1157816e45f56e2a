//! Where the tables live: the embedded local store (a directory, the default
//! `./clicklake-data`) or an S3-compatible bucket (`s3://bucket/prefix`,
//! configured with the standard `AWS_*` variables).

use std::collections::HashMap;
use std::path::Path;

use arrow::datatypes::Schema;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};
use tracing::info;
use url::Url;

use crate::error::{Error, Result};
use crate::schema::delta_fields;

/// Storage flags shared by every role.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where the Delta tables live: a local directory, or s3://bucket/prefix
    /// (credentials and endpoint from the standard AWS_* variables).
    #[arg(
        long = "store",
        env = "CLICKLAKE_STORE",
        default_value = "./clicklake-data"
    )]
    pub store: String,
}

/// Validated storage configuration: the root URL and object-store options.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    root: Url,
    options: HashMap<String, String>,
}

impl StorageConfig {
    /// Validate `--store` once at start-up. A local directory is created if
    /// missing; for `s3://` the `AWS_*` variables of the process are passed on
    /// to the object store.
    pub fn from_args(args: &StoreArgs) -> Result<Self> {
        Self::new(&args.store)
    }

    /// Same as [`StorageConfig::from_args`], from a location string.
    pub fn new(location: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidStore {
            location: location.to_string(),
            reason,
        };
        if location.trim().is_empty() {
            return Err(invalid("the location is empty".into()));
        }
        let root = match Url::parse(location) {
            Ok(url) if url.scheme().len() > 1 => match url.scheme() {
                "s3" | "s3a" | "file" => url,
                other => {
                    return Err(invalid(format!(
                        "unsupported scheme {other:?}; use a local path or s3://bucket/prefix"
                    )));
                }
            },
            // Not a URL (or a Windows drive letter): a local directory.
            _ => {
                let path = Path::new(location);
                std::fs::create_dir_all(path).map_err(|source| Error::LocalDir {
                    path: location.to_string(),
                    source,
                })?;
                let abs = std::fs::canonicalize(path).map_err(|source| Error::LocalDir {
                    path: location.to_string(),
                    source,
                })?;
                Url::from_directory_path(&abs)
                    .map_err(|()| invalid("not an absolute directory path".into()))?
            }
        };
        let options = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        Ok(Self { root, options })
    }

    /// The root of the store, as a URL ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Object-store options (the `AWS_*` settings for S3).
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL of one table below the root.
    pub fn table_url(&self, table: &str) -> Result<Url> {
        let mut base = self.root.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(&format!("{table}/"))
            .map_err(|e| Error::InvalidStore {
                location: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// Open a table, creating it with `schema` (partitioned by `partitions`)
    /// when it does not exist yet. Safe to call from several processes at once:
    /// a process that loses the race to create version 0 opens the winner's table.
    pub async fn open_or_create(
        &self,
        table: &str,
        schema: &Schema,
        partitions: &[&str],
    ) -> Result<DeltaTable> {
        let delta = |source| Error::Delta {
            table: table.to_string(),
            source,
        };
        let url = self.table_url(table)?;
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            std::fs::create_dir_all(&path).map_err(|source| Error::LocalDir {
                path: path.display().to_string(),
                source,
            })?;
        }
        let mut existing = DeltaTableBuilder::from_url(url.clone())
            .map_err(delta)?
            .with_storage_options(self.options.clone())
            .build()
            .map_err(delta)?;
        if existing
            .verify_deltatable_existence()
            .await
            .map_err(delta)?
        {
            existing.load().await.map_err(delta)?;
            return Ok(existing);
        }
        let created = existing
            .create()
            .with_table_name(table)
            .with_columns(delta_fields(schema))
            .with_partition_columns(partitions.iter().map(|p| p.to_string()))
            // Rewrites (optimize, copy removal, retention) must not fail
            // because ingest appended meanwhile: blind appends never conflict
            // (spelled as the Delta kernel parses it).
            .with_configuration_property(
                deltalake::TableProperty::IsolationLevel,
                Some("writeSerializable"),
            )
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(t) => {
                info!(table, %url, "created table");
                Ok(t)
            }
            Err(err) => {
                // Another process may have created it a moment ago.
                let reopened =
                    DeltaTable::try_from_url_with_storage_options(url, self.options.clone())
                        .await
                        .map_err(delta)?;
                if reopened.version().is_some() {
                    Ok(reopened)
                } else {
                    Err(delta(err))
                }
            }
        }
    }

    /// Open an existing table (for readers).
    pub async fn open(&self, table: &str) -> Result<DeltaTable> {
        let url = self.table_url(table)?;
        deltalake::open_table_with_storage_options(url, self.options.clone())
            .await
            .map_err(|source| Error::Delta {
                table: table.to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_is_created_and_tables_are_subdirectories() {
        let dir = std::env::temp_dir().join(format!("clicklake-store-{}", std::process::id()));
        let cfg = StorageConfig::new(dir.to_str().expect("utf-8 temp path")).expect("local store");
        assert!(dir.is_dir());
        let url = cfg.table_url("ad_clicks").expect("table url");
        assert!(url.as_str().starts_with("file://"));
        assert!(url.as_str().ends_with("/ad_clicks/"), "{url}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn s3_store_keeps_bucket_and_prefix() {
        let cfg = StorageConfig::new("s3://bucket/lake").expect("s3 store");
        let url = cfg.table_url("ad_clicks_hour").expect("table url");
        assert_eq!(url.as_str(), "s3://bucket/lake/ad_clicks_hour/");
    }

    #[test]
    fn unknown_scheme_is_refused_with_reason() {
        let err = StorageConfig::new("ftp://host/x").expect_err("ftp is not a store");
        assert!(
            err.to_string().contains("unsupported scheme \"ftp\""),
            "{err}"
        );
    }
}
