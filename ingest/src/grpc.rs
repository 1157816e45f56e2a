//! The gRPC ingest service (`clicklake.ingest.v1.IngestService`).

use clicklake_proto::ingest::ingest_service_server::{IngestService, IngestServiceServer};
use clicklake_proto::ingest::{
    Rejection as PbRejection, TrackAdClickRequest, TrackAdClicksRequest, TrackAdClicksResponse,
};
use tonic::{Request, Response, Status};

use crate::event::Rejection;
use crate::writer::{IngestHandle, Outcome};

/// Largest accepted gRPC request, in bytes (a batch of about 100,000 events).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

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
}

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
        let validator = self.handle.validator();
        let result = match request.into_inner().event {
            Some(e) => validator.from_proto(e),
            None => Err(Rejection {
                index: 0,
                field: "event".into(),
                reason: "is required".into(),
            }),
        };
        Ok(response(self.handle.ingest([result]).await?))
    }

    #[tracing::instrument(name = "ingest.track_ad_clicks", skip_all, fields(events))]
    async fn track_ad_clicks(
        &self,
        request: Request<TrackAdClicksRequest>,
    ) -> Result<Response<TrackAdClicksResponse>, Status> {
        let events = request.into_inner().events;
        tracing::Span::current().record("events", events.len());
        let validator = self.handle.validator();
        let outcome = self
            .handle
            .ingest(events.into_iter().map(|e| validator.from_proto(e)))
            .await?;
        Ok(response(outcome))
    }
}
