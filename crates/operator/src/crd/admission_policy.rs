//! The rule of the chart's ValidatingAdmissionPolicy (rendered when a release has a `selector`):
//! the labels of a MediaJob that has been submitted and has not finished cannot change. With a
//! label-selected release, a relabelled job leaves the release's view as if deleted: its remote
//! job would run on untracked, its lane would be held by nobody, and deleting it later would hang
//! on the finalizer. Before a submission, and once the job has finished, labels are free.
//!
//! The expression is here, in one place: the chart template must hold exactly this text
//! (`tests/it/packaging.rs`), and `tests/it/crd_validation.rs` evaluates it with kube's CEL.

/// CEL over the admission request's `object` and `oldObject`.
pub const LABELS_LOCKED_IN_FLIGHT: &str = "(has(object.metadata.labels) ? object.metadata.labels : {}) == (has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}) || !has(oldObject.status) || !has(oldObject.status.submission) || (has(oldObject.status.phase) && oldObject.status.phase in ['Succeeded', 'Failed', 'Cancelled'])";

/// What a refused update is told.
pub const LABELS_LOCKED_MESSAGE: &str = "the labels of a MediaJob cannot change while its submission is in flight: a label-selected operator release would lose sight of it (its remote job would run untracked). Wait until it has finished, or delete it";
