//! Protobuf definitions of clicklake's gRPC ingest API and the tonic/prost
//! types generated from them. No logic lives here.

/// `clicklake.ingest.v1`: the click ingest service.
pub mod ingest {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("clicklake.ingest.v1");
}
