//! Guardrails on every query: a memory limit per query (operators that can
//! spill to disk do; others fail with RESOURCE_EXHAUSTED), a timeout, and a
//! cap on the rows of a result. A query that hits one gets a specific error
//! and the server keeps serving.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;

/// Query flags.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Memory one query may use (bytes, e.g. 2147483648); past it, sorts and
    /// aggregations spill to disk and other operators fail the query.
    #[arg(long, env = "CLICKLAKE_QUERY_MEMORY_LIMIT", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub query_memory_limit: usize,

    /// Longest a query may run, planning and streaming included.
    #[arg(long, env = "CLICKLAKE_QUERY_TIMEOUT", default_value = "5min", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,

    /// Most rows a result may have; a larger one fails (add a LIMIT).
    #[arg(long, env = "CLICKLAKE_MAX_RESULT_ROWS", default_value_t = 50_000_000)]
    pub max_result_rows: usize,
}

impl Default for QueryArgs {
    fn default() -> Self {
        Self {
            query_memory_limit: 2 * 1024 * 1024 * 1024,
            query_timeout: Duration::from_secs(300),
            max_result_rows: 50_000_000,
        }
    }
}

/// A result stream that fails once the deadline passes or the row cap is exceeded.
pub struct Guarded {
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    rows: usize,
    max_rows: usize,
    done: bool,
    _running: Running,
}

/// Counts a statement in [`crate::metrics::RUNNING`] while it lives.
struct Running;

impl Running {
    fn start() -> Self {
        crate::metrics::RUNNING.inc();
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::metrics::RUNNING.dec();
    }
}

impl Guarded {
    /// Guard `inner` with `args`' timeout (counted from now) and row cap.
    pub fn new(inner: SendableRecordBatchStream, args: &QueryArgs, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout: args.query_timeout,
            rows: 0,
            max_rows: args.max_result_rows,
            done: false,
            _running: Running::start(),
        }
    }
}

impl Stream for Guarded {
    type Item = Result<RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            let t = humantime::format_duration(self.timeout);
            return Poll::Ready(Some(Err(DataFusionError::ResourcesExhausted(format!(
                "query exceeded its timeout of {t} (--query-timeout)"
            )))));
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows();
                if self.rows > self.max_rows {
                    self.done = true;
                    let max = self.max_rows;
                    return Poll::Ready(Some(Err(DataFusionError::ResourcesExhausted(format!(
                        "result has more than {max} rows (--max-result-rows); add a LIMIT or aggregate"
                    )))));
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl RecordBatchStream for Guarded {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// Box a guarded stream.
pub fn guard(
    inner: SendableRecordBatchStream,
    args: &QueryArgs,
    remaining: Duration,
) -> SendableRecordBatchStream {
    Box::pin(Guarded::new(inner, args, remaining)) as Pin<Box<dyn RecordBatchStream + Send>>
}

/// A runtime whose memory pool is one query's limit.
pub fn runtime(
    args: &QueryArgs,
) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>, DataFusionError> {
    datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(args.query_memory_limit, 1.0)
        .build_arc()
}
