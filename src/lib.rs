//! The `clicklake` command's building blocks, shared by the binary and the
//! end-to-end tests: the all-in-one server composition (`serve`), the file
//! loader (`load`), the load generator (`synth`, the `gen` command), the SQL client (`sql`) and the compactor jobs run from
//! the command line (`jobs`: backfill, reconcile).

pub mod auth;
pub mod jobs;
pub mod load;
pub mod serve;
pub mod sql;
pub mod synth;
