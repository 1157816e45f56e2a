//! The gRPC ingest service (`clicklake.ingest.v1.IngestService`): one event,
//! a batch, or a client stream of batches.

use clicklake_proto::ingest::ingest_service_server::{IngestService, IngestServiceServer};
use clicklake_proto::ingest::{
    Rejection as PbRejection, TrackAdClickRequest, TrackAdClicksRequest, TrackAdClicksResponse,
};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::event::Rejection;
use crate::metrics::Path;
use crate::writer::{IngestHandle, Outcome};

/// Largest accepted gRPC message, in bytes (a batch of about 100,000 events).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Batches of one stream waiting for their commit at the same time.
const STREAM_IN_FLIGHT: usize = 8;

/// gRPC front of an [`IngestHandle`].
#[derive(Debug, Clone)]
pub struct IngestGrpc {
    handle: IngestHandle,
}

impl IngestGrpc {
    /// The tonic service, ready to add to a server.
    pub fn service(handle: IngestHandle) -> IngestServiceServer<Self> {
        IngestServiceServer::new(Self { handle }).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Validate and store one batch message.
    async fn batch(&self, path: Path, request: TrackAdClicksRequest) -> Result<Outcome, Status> {
        path.received(request.encoded_len());
        let validator = self.handle.validator();
        let results = request.events.into_iter().map(|e| validator.from_proto(e));
        Ok(self.handle.ingest(path, results).await?)
    }
}

/// A stream batch's first event index and outcome.
type BatchDone = Result<(usize, Outcome), Status>;

fn response(outcome: Outcome) -> Response<TrackAdClicksResponse> {
    Response::new(TrackAdClicksResponse {
        accepted: outcome.accepted as u32,
        rejected: outcome
            .rejected
            .into_iter()
            .map(|r| PbRejection {
                index: r.index as u32,
                field: r.field,
                reason: r.reason,
            })
            .collect(),
    })
}

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    #[tracing::instrument(name = "ingest.track_ad_click", skip_all)]
    async fn track_ad_click(
        &self,
        request: Request<TrackAdClickRequest>,
    ) -> Result<Response<TrackAdClicksResponse>, Status> {
        let request = request.into_inner();
        Path::GrpcUnary.received(request.encoded_len());
        let validator = self.handle.validator();
        let result = match request.event {
            Some(e) => validator.from_proto(e),
            None => Err(Rejection {
                index: 0,
                field: "event".into(),
                reason: "is required".into(),
            }),
        };
        Ok(response(
            self.handle.ingest(Path::GrpcUnary, [result]).await?,
        ))
    }

    #[tracing::instrument(name = "ingest.track_ad_clicks", skip_all, fields(events))]
    async fn track_ad_clicks(
        &self,
        request: Request<TrackAdClicksRequest>,
    ) -> Result<Response<TrackAdClicksResponse>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("events", request.events.len());
        Ok(response(self.batch(Path::GrpcBatch, request).await?))
    }

    #[tracing::instrument(name = "ingest.track_ad_click_stream", skip_all, fields(batches))]
    async fn track_ad_click_stream(
        &self,
        request: Request<Streaming<TrackAdClicksRequest>>,
    ) -> Result<Response<TrackAdClicksResponse>, Status> {
        let mut stream = request.into_inner();
        let mut in_flight = FuturesOrdered::new();
        let mut total = Outcome {
            accepted: 0,
            rejected: Vec::new(),
        };
        let mut offset = 0usize;
        let mut batches = 0usize;
        let add = |total: &mut Outcome, done: Result<BatchDone, tokio::task::JoinError>| {
            let (start, outcome) =
                done.map_err(|e| Status::internal(format!("stream batch task: {e}")))??;
            total.accepted += outcome.accepted;
            total.rejected.extend(outcome.rejected.into_iter().map(|r| {
                let index = start + r.index;
                r.at(index)
            }));
            Ok::<_, Status>(())
        };
        loop {
            // Keep reading while fewer than STREAM_IN_FLIGHT batches wait.
            if in_flight.len() >= STREAM_IN_FLIGHT {
                if let Some(done) = in_flight.next().await {
                    add(&mut total, done)?;
                }
                continue;
            }
            match stream.message().await? {
                Some(batch) => {
                    let start = offset;
                    offset += batch.events.len();
                    batches += 1;
                    let this = self.clone();
                    // A task of its own, so it commits while the stream is read on.
                    in_flight.push_back(tokio::spawn(async move {
                        this.batch(Path::GrpcStream, batch)
                            .await
                            .map(|outcome| (start, outcome))
                            .map_err(|status| {
                                Status::new(
                                    status.code(),
                                    format!(
                                        "batch starting at event {start} of the stream: {}",
                                        status.message()
                                    ),
                                )
                            })
                    }));
                }
                None => break,
            }
        }
        while let Some(done) = in_flight.next().await {
            add(&mut total, done)?;
        }
        tracing::Span::current().record("batches", batches);
        Ok(response(total))
    }
}
