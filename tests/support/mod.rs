//! Shared test harnesses.
pub mod s3;
