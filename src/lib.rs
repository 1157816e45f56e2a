//! The `clicklake` command's building blocks, shared by the binary and the
//! end-to-end tests: the all-in-one server composition (`serve`), the file
//! loader (`load`) and the SQL client (`sql`).

pub mod load;
pub mod serve;
pub mod sql;
