//! mediajob-operator: runs Dolby.io Media API jobs on media stored in S3.
pub mod admin;
pub mod apiserver_double;
pub mod config;
pub mod crd;
pub mod embedded_s3;
pub mod emulator;
pub mod local;
pub mod logging;
pub mod media_api;
pub mod metrics;
pub mod operation;
pub mod operator;
pub mod reconciler;
pub mod s3;
pub mod secret;
