//! Which watch events start a pass: those that carry a change a user makes (the spec, labels,
//! annotations, finalizers, a deletion). Each event's object is compared with the store's copy
//! before the store takes it. The operator's own status writes, about three per job, start no
//! pass: the pass that wrote has already decided on what it wrote and scheduled its next look
//! (`decide::next_look`).
//!
//! A re-list (the watch broke and lists anew) hands each object on before the store holds it:
//! kube-runtime's writer swaps the listed objects in only at its end, so a pass started by a
//! re-listed object may read the store's older copy, or none. The objects a re-list changes are
//! therefore woken once more when it ends (`note` returns them).
//!
//! kube-runtime's `predicate_filter` makes the same choice from a cache of one hash per object
//! (keyed by name, namespace and uid: an estimated 250-350 bytes each with the map; the scale
//! bench's restart with 10,000 stored peaked 3-5 MiB higher with it); the store already holds
//! the previous copy, so this keeps nothing per object.

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
    relist: Mutex<Relist>,
}

/// Where the watch is in its listings.
#[derive(Default)]
struct Relist {
    /// The first listing ended (the controller waits for it before any pass).
    listed_once: bool,
    /// A listing is under way.
    listing: bool,
    /// The objects a re-list changed, by namespace and name: woken when it ends.
    changed: Vec<(String, String)>,
}

impl UserChanges {
    /// Compares with `store`, the copy the controller reads (before each event reaches it).
    pub fn new(store: Store<MediaJob>) -> Self {
        UserChanges {
            store,
            marked: Mutex::default(),
            relist: Mutex::default(),
        }
    }

    /// Before the store takes `event`: marks each object it changes the way a user does, or
    /// that the store does not hold (a new object, or every object after a start). At the end
    /// of a re-list, gives the objects it changed, to be woken now that the store holds them.
    pub fn note(&self, event: &watcher::Event<MediaJob>) -> Vec<(String, String)> {
        let mut relist = self.relist.lock().unwrap();
        let job = match event {
            watcher::Event::Init => {
                // A listing cut off and begun again lists every object again.
                relist.listing = true;
                relist.changed.clear();
                return vec![];
            }
            watcher::Event::InitDone => {
                relist.listing = false;
                let first = !std::mem::replace(&mut relist.listed_once, true);
                let changed = std::mem::take(&mut relist.changed);
                return if first { vec![] } else { changed };
            }
            watcher::Event::Delete(_) => return vec![],
            watcher::Event::Apply(job) | watcher::Event::InitApply(job) => job,
        };
        let changed = match self.store.get(&ObjectRef::from_obj(job)) {
            Some(before) => changed_by_users(&before, job),
            None => true,
        };
        if changed {
            self.marked.lock().unwrap().insert(key(job));
            if relist.listing && relist.listed_once {
                let name = (job.namespace().unwrap_or_default(), job.name_any());
                relist.changed.push(name);
            }
        }
        vec![]
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

/// What users change: the spec (its generation), labels, annotations, finalizers, the deletion,
/// or the object itself (deleted and made again under its name). Not status, nor the
/// resourceVersion and managedFields every write moves.
pub fn changed_by_users(before: &MediaJob, after: &MediaJob) -> bool {
    let (a, b) = (&before.metadata, &after.metadata);
    a.uid != b.uid
        || a.generation != b.generation
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
        let edits: [Edit; 6] = [
            ("uid", &|j| j.metadata.uid = Some("u2".into())),
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
            assert!(changes.note(&event).is_empty());
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

    /// A re-list hands objects on before the store holds them: those it changed are woken when
    /// it ends. The first listing (before any pass) wakes nothing.
    #[test]
    fn a_relist_wakes_what_it_changed_once_the_store_holds_it() {
        let (reader, mut writer) = reflector::store();
        let changes = UserChanges::new(reader);
        let mut deliver = |event: Event<MediaJob>| {
            let woken = changes.note(&event);
            writer.apply_watcher_event(&event);
            if let Event::Apply(job) | Event::InitApply(job) = &event {
                changes.take(job);
            }
            woken
        };
        for event in [Event::Init, Event::InitApply(job()), Event::InitDone] {
            assert!(deliver(event).is_empty(), "the first listing");
        }
        let mut edited = job();
        edited.metadata.generation = Some(2);
        let mut new = job();
        new.metadata.name = Some("k".into());
        new.metadata.uid = Some("u9".into());
        // A re-list cut off and begun again: each object is woken once.
        for event in [
            Event::Init,
            Event::InitApply(edited.clone()),
            Event::Init,
            Event::InitApply(edited),
            Event::InitApply(new),
        ] {
            assert!(deliver(event).is_empty());
        }
        assert_eq!(
            deliver(Event::InitDone),
            [
                ("a".to_string(), "j".to_string()),
                ("a".to_string(), "k".to_string())
            ]
        );
    }
}
