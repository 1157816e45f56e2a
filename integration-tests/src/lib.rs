//! Whole-system tests of clicklake live in `tests/`: the all-in-one server
//! started in-process on 127.0.0.1:0, fed through the real gRPC and HTTP
//! ingest APIs and queried with the real Flight SQL client. This library is
//! empty on purpose.
