//! MediaJobSet: every object under an S3 prefix, one child MediaJob each (docs/sets.md).
//!
//! - `progress.rs`: the pure decision of one pass (the cursor, the counts, which children to
//!   create and delete), with its tests.
//! - `controller.rs`: the shell around it (listing, the children's store, writes).
//! - `listing.rs`: ListObjectsV2 through a pre-signed URL and the guarded HTTP client.
//! - `report.rs`: the completion report, one JSON line per object, in parts and put together.
//! - `glob.rs`, `template.rs`, `naming.rs`, `source.rs`: which objects a set selects, where each
//!   one's outputs go (and that no two share one), what its child is called, and the checks of a
//!   set's source and templates before anything is listed or created.
//!
//! The types are in `crd/set.rs`.
pub mod controller;
pub mod glob;
pub mod listing;
pub mod naming;
pub mod progress;
pub mod report;
pub mod source;
pub mod template;
