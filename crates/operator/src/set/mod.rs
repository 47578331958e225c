//! MediaJobSet, the pure parts: which objects under a prefix a set selects (`glob.rs`), where
//! each one's outputs go (`template.rs`), what its child MediaJob is called (`naming.rs`), and
//! whether a set's source and templates can be trusted before anything is listed or created
//! (`source.rs`).
//!
//! The resource and its controller are not built yet (issue #29). What they are to rest on:
//!
//! - Children are named from the set and the key (`naming::child_name`) and carry the full key
//!   (`naming::KEY_ANNOTATION`), so a restart, a lost create answer or two passes at once find
//!   the child already made instead of making a second one, and a hash collision is seen.
//! - ListObjectsV2 returns keys in UTF-8 binary order, page by page. The set keeps a cursor:
//!   every selected key up to it is done and counted. Children exist only for keys past the
//!   cursor (at most `parallelism` running, a bounded window finished), so neither etcd nor the
//!   operator holds one entry per object.
//! - Two objects never share an output (`OutputTemplate::injectivity`), and no output lands
//!   where the set would pick it up again (`SetSource::output_reenters`).
pub mod controller;
pub mod glob;
pub mod listing;
pub mod naming;
pub mod progress;
pub mod source;
pub mod template;
