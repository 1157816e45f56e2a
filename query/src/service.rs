//! The Arrow Flight SQL service: statement queries and the metadata calls a
//! standard client (ADBC, JDBC, our `clicklake sql`) needs.
//!
//! A statement's ticket carries its SQL text; `DoGet` plans it again on the
//! newest snapshots, so tickets hold no server state. Every statement runs
//! read-only: DDL, DML and `SET`-style statements are refused.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, Nullable,
    ProstMessageExt, Searchable, SqlInfo, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{Action, IpcMessage, SchemaAsIpc};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SQLOptions};
use futures::{Stream, TryStreamExt, stream};
use prost::Message;
use std::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use clicklake_common::RAW_TABLE;
use clicklake_common::auth::Auth;
use clicklake_common::sink::ClickSink;

use crate::bulk;
use crate::catalog::{CATALOG, Catalog, SCHEMA};
use crate::error::Error;
use crate::limits::{self, QueryArgs};
use crate::metrics;
use crate::prepared::{Prepared, PreparedStatements};

/// Largest gRPC message accepted or sent.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    for (name, ty, size, prefix) in [
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(19), None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(10), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None),
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None),
        ("DATE", XdbcDataType::XdbcDate, Some(10), Some("DATE '")),
        (
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            Some(26),
            Some("TIMESTAMP '"),
        ),
    ] {
        b.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type: ty,
            column_size: size,
            literal_prefix: prefix.map(Into::into),
            literal_suffix: prefix.map(|_| "'".into()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(ty, XdbcDataType::XdbcVarchar),
            searchable: Searchable::Full,
            unsigned_attribute: Some(false),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: ty,
            datetime_subcode: None,
            num_prec_radix: size.map(|_| 10),
            interval_precision: None,
        });
    }
    #[allow(clippy::expect_used)]
    b.build().expect("static type info is well-formed")
});

/// The schema of GetPrimaryKeys results (Flight SQL spec).
fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The schema of GetExportedKeys / GetImportedKeys / GetCrossReference results.
fn foreign_keys_schema() -> SchemaRef {
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        s("pk_catalog_name", true),
        s("pk_db_schema_name", true),
        s("pk_table_name", false),
        s("pk_column_name", false),
        s("fk_catalog_name", true),
        s("fk_db_schema_name", true),
        s("fk_table_name", false),
        s("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        s("fk_key_name", true),
        s("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// clicklake's tables have no primary or foreign keys: every key call
/// answers an empty result with the spec's schema.
fn no_keys(schema: SchemaRef) -> Response<DoGetStream> {
    encode_batch(schema.clone(), Ok(RecordBatch::new_empty(schema)))
}

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "clicklake");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    // Bulk ingest appends click events to ad_clicks (on a node with the ingest role).
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    #[allow(clippy::expect_used)]
    b.build().expect("static SqlInfo values are well-formed")
});

/// The Flight SQL server over a [`Catalog`].
#[derive(Debug, Clone)]
pub struct FlightSqlServer {
    /// The tables; `None` on a node without the query role.
    catalog: Option<Arc<Catalog>>,
    /// Where uploaded click batches go; `None` on a node without the ingest role.
    sink: Option<Arc<dyn ClickSink>>,
    limits: QueryArgs,
    prepared: Arc<PreparedStatements>,
    auth: Arc<Auth>,
}

type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

impl FlightSqlServer {
    /// Serve queries over `catalog`.
    pub fn new(catalog: Arc<Catalog>, limits: QueryArgs) -> Self {
        Self {
            catalog: Some(catalog),
            sink: None,
            limits,
            prepared: Arc::new(PreparedStatements::default()),
            auth: Arc::new(Auth::default()),
        }
    }

    /// Serve only uploads (an ingest node without the query role): every
    /// query call says which node to ask instead.
    pub fn ingest_only(sink: Arc<dyn ClickSink>, limits: QueryArgs) -> Self {
        Self {
            catalog: None,
            sink: Some(sink),
            limits,
            prepared: Arc::new(PreparedStatements::default()),
            auth: Arc::new(Auth::default()),
        }
    }

    /// Take Arrow click uploads (Flight `DoPut`, bulk ingest) into `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn ClickSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    fn catalog(&self) -> Result<&Arc<Catalog>, Status> {
        self.catalog
            .as_ref()
            .ok_or_else(|| Error::NoQueryRole.into())
    }

    fn sink(&self) -> Result<&Arc<dyn ClickSink>, Status> {
        self.sink.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node runs no ingest role: send uploads to a `clicklake ingest` or `clicklake serve` node",
            )
        })
    }

    /// Log users in with `auth` (the calls themselves are checked by the
    /// listener's auth layer).
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// The tonic service, ready to add to a server.
    pub fn service(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Plan a statement on fresh snapshots, refusing anything but queries,
    /// and bind `params` to its `$1, $2, ...` placeholders.
    async fn plan(&self, sql: &str, params: Option<Vec<ScalarValue>>) -> Result<DataFrame, Error> {
        let runtime = limits::runtime(&self.limits)?;
        if !is_query(sql)? {
            return Err(Error::ReadOnly);
        }
        let planning = async {
            let catalog = self.catalog.as_ref().ok_or(Error::NoQueryRole)?;
            let ctx = catalog.context(runtime).await?;
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx.sql_with_options(sql, options).await?;
            Ok::<_, Error>(match params {
                Some(p) => df.with_param_values(p)?,
                None => df,
            })
        };
        match tokio::time::timeout(self.limits.query_timeout, planning).await {
            Ok(result) => result,
            Err(_) => Err(Error::Sql(
                datafusion::error::DataFusionError::ResourcesExhausted(format!(
                    "query exceeded its timeout of {} while planning (--query-timeout)",
                    humantime::format_duration(self.limits.query_timeout)
                )),
            )),
        }
    }

    /// Run a planned statement under the guardrails.
    async fn execute(
        &self,
        df: DataFrame,
        started: Instant,
    ) -> Result<Response<DoGetStream>, Status> {
        // The schema GetFlightInfo announced (the plan's): the executed plan
        // may say otherwise of nullability, and clients check they agree.
        let schema = df.schema().as_arrow().clone();
        let batches = df.execute_stream().await.map_err(Error::from)?;
        let remaining = self.limits.query_timeout.saturating_sub(started.elapsed());
        Ok(encode_stream(
            limits::guard(batches, &self.limits, remaining),
            &schema,
        ))
    }

    /// Run one read-only statement under the guardrails and collect its
    /// rows (the HTTP read API); counted like a Flight SQL statement.
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>, Status> {
        let started = Instant::now();
        let run = async {
            let df = self.plan(sql, None).await?;
            let batches = df.execute_stream().await?;
            let remaining = self.limits.query_timeout.saturating_sub(started.elapsed());
            let rows: Vec<RecordBatch> = limits::guard(batches, &self.limits, remaining)
                .try_collect()
                .await?;
            Ok::<_, Error>(rows)
        };
        Self::observe(started, run.await.map_err(Status::from))
    }

    /// Count a statement's outcome and start time.
    fn observe<T>(started: Instant, result: Result<T, Status>) -> Result<T, Status> {
        metrics::STATEMENTS
            .with_label_values(&[metrics::outcome(result.as_ref().err())])
            .inc();
        metrics::START_SECONDS.observe(started.elapsed().as_secs_f64());
        result
    }

    fn prepared(&self, handle: &[u8]) -> Result<Prepared, Status> {
        self.prepared.get(handle).ok_or_else(|| {
            Status::not_found(
                "unknown or closed prepared statement handle; prepare the statement again",
            )
        })
    }
}

/// Whether every statement of `sql` only reads (checked before planning, so
/// the refusal of anything else gets one clear message).
fn is_query(sql: &str) -> datafusion::error::Result<bool> {
    use datafusion::sql::parser::{DFParser, Statement};
    use datafusion::sql::sqlparser::ast::Statement as S;
    let statements = DFParser::parse_sql(sql)?;
    Ok(statements.iter().all(|st| match st {
        Statement::Statement(s) => matches!(
            s.as_ref(),
            S::Query(_)
                | S::Explain { .. }
                | S::ExplainTable { .. }
                | S::ShowTables { .. }
                | S::ShowColumns { .. }
        ),
        Statement::Explain(_) => true,
        _ => false,
    }))
}

fn flight_info(
    schema: &arrow::datatypes::Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    let info = FlightInfo::new()
        .try_with_schema(&wire_schema(schema))
        .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The type a column has on the wire: view strings and binaries (how
/// DataFusion reads Delta) become their plain forms, which every Flight SQL
/// client reads.
fn wire_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

/// A schema with [`wire_type`] columns.
pub fn wire_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(wire_type(f.data_type())))
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// A batch with [`wire_type`] columns.
fn to_wire(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        // Same types; the announced nullability (checked against the data).
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

fn ipc_schema(schema: &arrow::datatypes::Schema) -> Result<bytes::Bytes, Status> {
    let schema = wire_schema(schema);
    let message = IpcMessage::try_from(SchemaAsIpc::new(&schema, &IpcWriteOptions::default()))
        .map_err(|e| Status::internal(format!("encoding schema: {e}")))?;
    Ok(message.0)
}

fn encode_batch(
    schema: arrow::datatypes::SchemaRef,
    batch: Result<arrow::array::RecordBatch, FlightError>,
) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::once(async move { batch }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn encode_stream(batches: SendableRecordBatchStream, announced: &Schema) -> Response<DoGetStream> {
    let schema: SchemaRef = Arc::new(wire_schema(announced));
    let wire = schema.clone();
    let batches = batches
        .map_err(|e| FlightError::Tonic(Box::new(Error::Sql(e).into())))
        .and_then(move |b| futures::future::ready(to_wire(b, &wire).map_err(FlightError::from)));
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(MAX_MESSAGE_BYTES / 16)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    /// Log in: Basic credentials in the `authorization` header give a bearer
    /// token in the reply's `authorization` header. With authentication off
    /// any handshake succeeds and carries no token.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(stream::iter([Ok(reply)])));
        if self.auth.enabled() {
            let header = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let token = self
                .auth
                .login(header)
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    #[tracing::instrument(name = "query.flight_info", skip_all, fields(sql = %query.query))]
    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let df = self.plan(&query.query, None).await?;
        let schema = df.schema().as_arrow().clone();
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    #[tracing::instrument(name = "query.do_get", skip_all)]
    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Error::BadRequest("statement handle is not UTF-8 SQL".into()))?;
        tracing::debug!(%sql, "executing");
        let started = Instant::now();
        let result = match self.plan(&sql, None).await {
            Ok(df) => self.execute(df, started).await,
            Err(e) => Err(e.into()),
        };
        Self::observe(started, result)
    }

    #[tracing::instrument(name = "query.prepare", skip_all, fields(sql = %query.query))]
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let df = self.plan(&query.query, None).await?;
        let mut params: Vec<(usize, String, DataType)> = df
            .logical_plan()
            .get_parameter_types()
            .map_err(Error::from)?
            .into_iter()
            .map(|(name, ty)| {
                let n = name.trim_start_matches('$').parse().unwrap_or(usize::MAX);
                (n, name, ty.unwrap_or(DataType::Null))
            })
            .collect();
        params.sort();
        let param_schema = Schema::new(
            params
                .into_iter()
                .map(|(_, name, ty)| Field::new(name, ty, true))
                .collect::<Vec<_>>(),
        );
        let handle = self.prepared.insert(query.query);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: ipc_schema(df.schema().as_arrow())?,
            parameter_schema: ipc_schema(&param_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = query.prepared_statement_handle;
        self.prepared(&handle)?;
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("reading parameter values: {e}")))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 1 {
            return Err(Status::invalid_argument(format!(
                "{rows} parameter rows were bound; a query takes one row of parameters"
            )));
        }
        let params = match batches.iter().find(|b| b.num_rows() == 1) {
            Some(b) => b
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::from)?,
            None => Vec::new(),
        };
        if !self.prepared.bind(&handle, params) {
            return Err(Status::not_found(
                "prepared statement was closed while binding",
            ));
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.prepared(&cmd.prepared_statement_handle)?;
        let df = self.plan(&p.sql, p.params).await?;
        let schema = df.schema().as_arrow().clone();
        flight_info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    #[tracing::instrument(name = "query.do_get_prepared", skip_all)]
    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let started = Instant::now();
        let result = async {
            let p = self.prepared(&cmd.prepared_statement_handle)?;
            let df = self.plan(&p.sql, p.params).await?;
            self.execute(df, started).await
        }
        .await;
        Self::observe(started, result)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.prepared.remove(&query.prepared_statement_handle);
        Ok(())
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::invalid_argument(format!(
            "unknown ticket type {}",
            message.type_url
        )))
    }

    #[tracing::instrument(name = "query.bulk_ingest", skip_all, fields(table = %command.table))]
    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let sink = self.sink()?.clone();
        bulk::check_ingest_command(&command)?;
        let outcome = bulk::ingest_stream(sink, request.into_inner()).await?;
        if !outcome.rejected.is_empty() {
            return Err(bulk::partial_failure(&outcome));
        }
        Ok(outcome.accepted as i64)
    }

    /// A plain Flight `DoPut` of click batches: descriptor path `["ad_clicks"]`;
    /// the one `PutResult` carries `{"accepted": n, "rejected": [...]}` as JSON.
    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let mut data = request.into_inner();
        let path = match data.peek().await {
            Some(Ok(first)) => first.flight_descriptor.as_ref().map(|d| d.path.clone()),
            _ => None,
        };
        if path.as_deref() != Some(&[RAW_TABLE.to_string()][..]) {
            return Err(Status::invalid_argument(format!(
                "DoPut takes click batches with the descriptor path [\"{RAW_TABLE}\"] or a Flight SQL command; got {}",
                if message.type_url.is_empty() {
                    format!("path {path:?}")
                } else {
                    format!("command {}", message.type_url)
                }
            )));
        }
        let outcome = bulk::ingest_stream(self.sink()?.clone(), data).await?;
        let body = serde_json::to_vec(&outcome)
            .map_err(|e| Status::internal(format!("encoding the upload result: {e}")))?;
        let result = arrow_flight::PutResult {
            app_metadata: body.into(),
        };
        Ok(Response::new(Box::pin(stream::iter([Ok(result)]))))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        let schema = builder.schema();
        Ok(encode_batch(schema, builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        let schema = builder.schema();
        Ok(encode_batch(schema, builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = self
            .catalog()?
            .context(limits::runtime(&self.limits).map_err(Error::from)?)
            .await?;
        let mut builder = query.into_builder();
        for name in Catalog::table_names() {
            let provider = ctx.table_provider(name).await.map_err(Error::from)?;
            builder
                .append(
                    CATALOG,
                    SCHEMA,
                    name,
                    "TABLE",
                    &wire_schema(&provider.schema()),
                )
                .map_err(Status::from)?;
        }
        let schema = builder.schema();
        Ok(encode_batch(schema, builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        let schema = builder.schema();
        Ok(encode_batch(schema, builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&SQL_INFO);
        let schema = builder.schema();
        Ok(encode_batch(schema, builder.build()))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Error::ReadOnly.into())
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Error::ReadOnly.into())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_TYPES).schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&XDBC_TYPES);
        let schema = builder.schema();
        Ok(encode_batch(schema, builder.build()))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &primary_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(no_keys(primary_keys_schema()))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(no_keys(foreign_keys_schema()))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(no_keys(foreign_keys_schema()))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(no_keys(foreign_keys_schema()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
