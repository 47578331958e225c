//! The operator's client for the Dolby.io Media APIs: the only code that knows the wire format
//! (`docs/media-api-client.md`; the contract is the shared `media-api.md`).

#[cfg(test)]
mod answer_props;
mod api;
pub mod cli;
mod client;
pub mod config;
pub mod error;
mod jobs;
pub mod rate_limit;
pub mod request;
mod retry;
mod token;
pub mod wire;

pub use api::MediaApi;
pub use client::{MediaApiClient, SendGate};
pub use config::{DEFAULT_AUTH_URL, DEFAULT_MEDIA_URL, MediaApiConfig, RetryPolicy};
pub use error::{ErrorClass, MediaApiError, Problem};
pub use jobs::{JobFilter, media_path};
pub use request::{AwsAuth, Callback, JobRequest, Location, OutputLocation, build_body};
pub use retry::parse_retry_after;
pub use token::TokenInfo;
pub use wire::{JobError, JobId, JobStatus, JobSummary, JobsPage, RemoteStatus};
