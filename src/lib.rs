//! mediajob-operator on one machine: `local` mode runs MediaJob manifests through the operator's
//! real reconciler against the Kubernetes API double, the Media API emulator and an embedded,
//! signature-checking S3 server. The product itself is `crates/operator`.
pub mod local;
