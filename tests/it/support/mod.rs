//! Shared test harnesses.
pub mod api_calls;
#[macro_use]
pub mod kube;
pub mod s3;
pub mod sts;
