//! mediajob-operator: runs Dolby.io Media API jobs on media stored in S3.
//!
//! Where things are: `crd` (the MediaJob types), `reconciler` (the pure `decide` core and the
//! shell around it), `media_api` (the client of the Media API wire contract), `s3` (locations,
//! credentials, SigV4 pre-signing), `leader` (the Lease and the fence), `operator` (the `run`
//! subcommand: controllers, admin endpoints).
pub mod admin;
pub mod cli;
pub mod config;
pub mod crd;
pub mod leader;
pub mod logging;
pub mod media_api;
pub mod metrics;
pub mod operation;
pub mod operator;
pub mod reconciler;
pub mod s3;
pub mod secret;
pub mod set;
