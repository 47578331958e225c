//! Which watch events start a pass: those that carry a change a user makes (the spec, labels,
//! annotations, finalizers, a deletion). Each event's object is compared with the store's copy
//! before the store takes it. The operator's own status writes, about three per job, start no
//! pass: the pass that wrote has already decided on what it wrote and scheduled its next look
//! (`decide::next_look`).
//!
//! kube-runtime's `predicate_filter` makes the same choice from a cache of one hash per object,
//! about 300 bytes each (3 MiB at 10,000 MediaJobs, measured as the restart's peak RSS); the
//! store already holds the previous copy, so this keeps nothing per object.

use std::collections::HashSet;
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::crd::MediaJob;

pub struct UserChanges {
    store: Store<MediaJob>,
    /// Objects whose event, on its way from `note` to `take`, starts a pass (one at a time: the
    /// watch stream hands events on in order).
    marked: Mutex<HashSet<String>>,
}

impl UserChanges {
    /// Compares with `store`, the copy the controller reads (before each event reaches it).
    pub fn new(store: Store<MediaJob>) -> Self {
        UserChanges {
            store,
            marked: Mutex::default(),
        }
    }

    /// Before the store takes `event`: marks each object it changes the way a user does, or
    /// that the store does not hold (a new object, or every object after a start).
    pub fn note(&self, event: &watcher::Event<MediaJob>) {
        let (watcher::Event::Apply(job) | watcher::Event::InitApply(job)) = event else {
            return;
        };
        let changed = match self.store.get(&ObjectRef::from_obj(job)) {
            Some(before) => changed_by_users(&before, job),
            None => true,
        };
        if changed {
            self.marked.lock().unwrap().insert(key(job));
        }
    }

    /// After the store took it: whether `job`'s event starts a pass.
    pub fn take(&self, job: &MediaJob) -> bool {
        self.marked.lock().unwrap().remove(&key(job))
    }
}

fn key(job: &MediaJob) -> String {
    job.uid()
        .unwrap_or_else(|| format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any()))
}

/// What users change: the spec (its generation), labels, annotations, finalizers, the deletion.
/// Not status, nor the resourceVersion and managedFields every write moves.
pub fn changed_by_users(before: &MediaJob, after: &MediaJob) -> bool {
    let (a, b) = (&before.metadata, &after.metadata);
    a.generation != b.generation
        || a.labels != b.labels
        || a.annotations != b.annotations
        || a.finalizers != b.finalizers
        || a.deletion_timestamp != b.deletion_timestamp
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn job() -> MediaJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mediajob.io/v1alpha1", "kind": "MediaJob",
            "metadata": {"name": "j", "namespace": "a", "uid": "u1", "generation": 1,
                         "resourceVersion": "7", "labels": {"team": "a"}},
            "spec": {"operation": "enhance", "input": {"url": "s3://raw/in.wav"},
                     "output": {"url": "s3://out/o.wav"}},
        }))
        .unwrap()
    }

    /// What starts a pass: every change a user makes, and none of the operator's status writes.
    #[test]
    fn passes_start_for_what_users_change_and_not_for_status() {
        let before = job();
        let mut status_written = job();
        status_written.metadata.resource_version = Some("8".into());
        status_written.status = Some(crate::crd::MediaJobStatus {
            job_id: Some("job-1".into()),
            ..Default::default()
        });
        assert!(!changed_by_users(&before, &status_written));
        type Edit<'a> = (&'a str, &'a dyn Fn(&mut MediaJob));
        let edits: [Edit; 5] = [
            ("spec", &|j| j.metadata.generation = Some(2)),
            ("labels", &|j| {
                j.labels_mut().insert("team".into(), "b".into());
            }),
            ("annotations", &|j| {
                j.annotations_mut().insert("note".into(), "x".into());
            }),
            ("finalizers", &|j| j.finalizers_mut().push("f".into())),
            ("deletion", &|j| {
                j.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
            }),
        ];
        for (what, edit) in edits {
            let mut after = job();
            edit(&mut after);
            assert!(changed_by_users(&before, &after), "a change of {what}");
        }
    }

    /// The first sight of an object starts a pass; its status write does not; a spec edit does.
    /// Nothing is kept once each event is taken.
    #[test]
    fn each_event_is_compared_with_the_copy_in_the_store() {
        let (reader, mut writer) = reflector::store();
        let changes = UserChanges::new(reader);
        let mut deliver = |event: Event<MediaJob>| {
            changes.note(&event);
            writer.apply_watcher_event(&event);
            let (Event::Apply(job) | Event::InitApply(job)) = event else {
                unreachable!()
            };
            changes.take(&job)
        };
        assert!(deliver(Event::Apply(job())), "first seen");
        let mut written = job();
        written.metadata.resource_version = Some("8".into());
        written.status = Some(Default::default());
        assert!(!deliver(Event::Apply(written.clone())), "a status write");
        let mut edited = written;
        edited.metadata.generation = Some(2);
        assert!(deliver(Event::Apply(edited)), "a spec edit");
        assert!(changes.marked.lock().unwrap().is_empty());
    }
}
