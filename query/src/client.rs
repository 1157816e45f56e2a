//! A small Flight SQL client: run one statement and collect its batches.
//! Used by `clicklake sql`, the demo report and the end-to-end tests.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::service::MAX_MESSAGE_BYTES;

/// A connection to a Flight SQL server.
#[derive(Debug, Clone)]
pub struct SqlClient {
    inner: FlightSqlServiceClient<Channel>,
}

/// A statement's result: its schema (known even with no rows) and batches.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl SqlClient {
    /// Connect to `endpoint` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(endpoint: &str) -> Result<Self, FlightError> {
        Self::connect_tls(endpoint, None).await
    }

    /// Connect to `endpoint`; an `https://` endpoint is verified against
    /// `ca` (PEM) when given, else against the system's roots.
    pub async fn connect_tls(endpoint: &str, ca: Option<&[u8]>) -> Result<Self, FlightError> {
        let mut channel = Channel::from_shared(endpoint.to_string())
            .map_err(|e| FlightError::ProtocolError(format!("endpoint {endpoint:?}: {e}")))?;
        if endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_enabled_roots();
            if let Some(ca) = ca {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            channel = channel
                .tls_config(tls)
                .map_err(|e| FlightError::ProtocolError(format!("TLS for {endpoint}: {e}")))?;
        }
        let channel = channel
            .connect()
            .await
            .map_err(|e| FlightError::ProtocolError(format!("connecting to {endpoint}: {e}")))?;
        let inner = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            inner: FlightSqlServiceClient::new_from_inner(inner),
        })
    }

    /// Run one statement and collect every batch of every endpoint.
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, FlightError> {
        let info = self.inner.execute(sql.to_string(), None).await?;
        let schema = std::sync::Arc::new(info.clone().try_decode_schema()?);
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let stream = self.inner.do_get(ticket).await?;
            batches.extend(stream.try_collect::<Vec<_>>().await?);
        }
        Ok(QueryResult { schema, batches })
    }

    /// The underlying Flight SQL client, for metadata calls.
    pub fn inner(&mut self) -> &mut FlightSqlServiceClient<Channel> {
        &mut self.inner
    }
}
