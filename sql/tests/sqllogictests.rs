//! Runs every `slt/*.slt` file against a fresh DataFusion session, like
//! DataFusion's own sqllogictest harness: one session per file.
//!
//! Inside a file, `{rollup:UNIT}` stands for the rollup query of that unit
//! (`clicklake_sql::rollup_sql(UNIT)`), `{first_copies}` for the
//! first-copies query and `{reconcile}` for the reconcile query, so the
//! files test the very SQL text the compactor runs.

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

struct DataFusionDb {
    ctx: SessionContext,
}

fn expand(sql: &str) -> String {
    let mut out = sql
        .replace("{reconcile}", clicklake_sql::RECONCILE_SQL.trim_end())
        .replace("{first_copies}", clicklake_sql::FIRST_COPIES_SQL.trim_end());
    for unit in ["minute", "hour", "day", "month"] {
        out = out.replace(
            &format!("{{rollup:{unit}}}"),
            &clicklake_sql::rollup_sql(unit),
        );
    }
    out
}

#[async_trait]
impl sqllogictest::AsyncDB for DataFusionDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let df = self.ctx.sql(&expand(sql)).await?;
        let columns = df.schema().fields().len();
        let batches = df.collect().await?;
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| f.value(row).to_string())
                        .collect(),
                );
            }
        }
        if columns == 0 || (rows.is_empty() && is_statement(sql)) {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn is_statement(sql: &str) -> bool {
    let head = sql.trim_start().to_ascii_uppercase();
    ["CREATE", "INSERT", "DROP", "SET"]
        .iter()
        .any(|k| head.starts_with(k))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .slt files in {}", dir.display()).into());
    }
    let mut failed = 0;
    for file in &files {
        let mut runner = sqllogictest::Runner::new(|| async {
            let ctx = SessionContext::new();
            clicklake_sql::sketch::register(&ctx);
            Ok(DataFusionDb { ctx })
        });
        match runner.run_file_async(file).await {
            Ok(()) => println!("ok   {}", file.display()),
            Err(e) => {
                failed += 1;
                println!("FAIL {}\n{e}", file.display());
            }
        }
    }
    println!("{} passed, {} failed", files.len() - failed, failed);
    if failed > 0 {
        return Err(format!("{failed} sqllogictest file(s) failed").into());
    }
    Ok(())
}
