//! The in-process test suites, linked once: each suite is a module here rather than its own test
//! binary, because every binary links the same ~400 crates (kube, the AWS SDK, axum, s3s).
//! The suites share `support/` (the API double or a real cluster, the embedded S3 server, the
//! operator's expected API calls).

#[macro_use]
mod support;

mod ambient_aws;
mod apiserver_double;
mod architecture;
mod crd_validation;
mod e2e;
mod emulator;
mod emulator_logs;
mod exactly_once;
mod examples;
mod leader_election;
mod media_api_client;
mod packaging;
mod quickstart;
mod s3_presign;
mod sets;
mod shell_simulation;
