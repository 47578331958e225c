//! The set's decision, pure: given its spec, its status, the children that exist and a window
//! of the listing, which children to create and delete and what status to write.
//!
//! The bookkeeping that keeps a set of any size small:
//! - S3 lists keys in UTF-8 binary order, so the set keeps a **cursor**: every selected key up
//!   to it is done and counted in status. Children exist only for keys past it.
//! - The cursor moves over the done keys at the front of the window, and their counts go into
//!   the same status write. Only after that write are their children deleted; a child at or
//!   before the cursor is therefore always counted already, and a crash between the write and
//!   the deletes neither counts twice nor loses a count.
//! - Children are created in key order, at most `parallelism` running, and at most a window of
//!   finished ones waiting for a slower key before them.
//! - Inbox mode: an object written after the last full listing began is new even when its key
//!   sorts before the cursor (a *late* object). Its child is counted when it finishes and its
//!   name kept in `status.countedLate` until the next full listing has begun after it, so that
//!   neither a second child nor a second count can follow.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{MediaJobSetSpec, MediaJobSetStatus, SetPhase, SkippedLate};

/// At most this many failed keys are named in status.
pub const FAILED_KEYS_KEPT: usize = 20;

/// One selected object of the listing (key below the prefix).
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub key: String,
    pub size: i64,
    pub last_modified: Option<Timestamp>,
}

/// Where a child MediaJob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildState {
    Running,
    Succeeded,
    Failed,
}

/// A child as the set sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub name: String,
    pub key: String,
    pub state: ChildState,
    /// When its object was written (the store's `LastModified`).
    pub written: Option<Timestamp>,
    /// It was made for a late object (see the module comment): counted by name, not by cursor.
    pub late: bool,
}

/// Times of objects and of listings are both the store's (`LastModified`, and the `Date` of a
/// listing's first answer), in whole seconds: an object written within this of a listing's start
/// may or may not be in it. Such an object is taken as new by the next listing, and its outputs
/// are looked for first, so it is not processed twice (see `controller.rs`); a late object's
/// child is deleted once a listing began this long after the object was written.
pub const LISTING_SLACK: Duration = Duration::from_secs(2);

/// What one pass knows.
pub struct SetView<'a> {
    pub spec: &'a MediaJobSetSpec,
    pub status: &'a MediaJobSetStatus,
    pub children: &'a [Child],
    /// Selected keys after the cursor, in order, as far as this pass listed.
    pub window: &'a [Listed],
    /// The listing has nothing selected after the window.
    pub listing_ended: bool,
    /// Late objects (inbox mode): selected keys at or before the cursor written after the last
    /// full listing began, with no child yet.
    pub late: &'a [Listed],
    /// Keys whose outputs were looked for (`skipExisting`): whether all exist.
    pub outputs_exist: &'a HashMap<String, bool>,
}

/// What to do.
#[derive(Debug, Default, PartialEq)]
pub struct SetStep {
    pub status: MediaJobSetStatus,
    /// Objects to start, with whether each is a late one.
    pub create: Vec<(Listed, bool)>,
    /// Children counted already, to delete after the status is written.
    pub delete: Vec<String>,
    /// Keys whose outputs to look for before deciding again (`skipExisting`).
    pub check_outputs: Vec<String>,
    /// When the oldest late object that did not start was written: the next full listing must
    /// still take it as new.
    pub oldest_waiting_late: Option<Timestamp>,
    /// Objects whose child failed past the cursor: against `maxFailed` now, in `status.failed`
    /// once the cursor passes them.
    pub failed_ahead: i64,
    /// The objects this step counts, in the order counted: the completion report's lines.
    pub counted: Vec<Counted>,
}

/// An object counted by a step: the status write that counts it is its one line in the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Counted {
    pub key: String,
    /// Its child; none for an object skipped because its outputs existed.
    pub child: Option<String>,
    pub outcome: Outcome,
}

/// The bound on children that exist at once: running ones, and finished ones past the cursor
/// waiting for a slower key before them.
pub fn max_children(spec: &MediaJobSetSpec) -> usize {
    spec.effective_parallelism() * 4 + 16
}

/// How many selected keys past the cursor a pass needs to see.
pub fn window_size(spec: &MediaJobSetSpec) -> usize {
    max_children(spec)
}

/// What a pass counts: the status's counts and the children to delete once they are written.
struct Tally {
    succeeded: i64,
    failed: i64,
    skipped: i64,
    failed_keys: Vec<String>,
    counted_late: Vec<String>,
    skipped_late: Vec<SkippedLate>,
    delete: Vec<String>,
    counted: Vec<Counted>,
}

impl Tally {
    fn from(status: &MediaJobSetStatus) -> Self {
        Tally {
            succeeded: status.succeeded.unwrap_or(0),
            failed: status.failed.unwrap_or(0),
            skipped: status.skipped.unwrap_or(0),
            failed_keys: status.failed_keys.clone().unwrap_or_default(),
            counted_late: status.counted_late.clone().unwrap_or_default(),
            skipped_late: status.skipped_late.clone().unwrap_or_default(),
            delete: vec![],
            counted: vec![],
        }
    }

    /// Names a failed key (once each, at most `FAILED_KEYS_KEPT`).
    fn name_failed(&mut self, key: &str) {
        if self.failed_keys.len() < FAILED_KEYS_KEPT && !self.failed_keys.iter().any(|k| k == key) {
            self.failed_keys.push(key.to_string());
        }
    }

    fn count(&mut self, done: Outcome, key: &str, child: Option<&Child>) {
        match done {
            Outcome::Succeeded => self.succeeded += 1,
            Outcome::Failed => {
                self.failed += 1;
                self.name_failed(key);
            }
            Outcome::Skipped => self.skipped += 1,
        }
        self.counted.push(Counted {
            key: key.to_string(),
            child: child.map(|c| c.name.clone()),
            outcome: done,
        });
    }
}

/// The children past the cursor by key, and how many late ones run.
struct Sorted<'a> {
    ahead: BTreeMap<&'a str, &'a Child>,
    late_running: usize,
}

impl Sorted<'_> {
    fn running(&self) -> usize {
        self.late_running
            + (self.ahead.values())
                .filter(|c| c.state == ChildState::Running)
                .count()
    }
}

/// What walking the keys past the cursor found.
struct Walk<'a> {
    cursor: Option<String>,
    failed_ahead: i64,
    /// Listed keys with no child yet, in order.
    pending: Vec<&'a Listed>,
}

/// What a pass starts.
struct Starts {
    create: Vec<(Listed, bool)>,
    check_outputs: Vec<String>,
    late_skipped: usize,
}

/// One pass's decision.
pub fn step(view: &SetView<'_>) -> SetStep {
    let spec = view.spec;
    let mut tally = Tally::from(view.status);
    // A late object counted as skipped is not new again; its record goes once a listing has
    // begun after it (that listing no longer takes it for a late one).
    (tally.skipped_late).retain(|s| written_recently(view, s.written.as_ref().map(|t| t.0)));
    let late: Vec<&Listed> = (view.late.iter())
        .filter(|l| !tally.skipped_late.iter().any(|s| s.key == l.key))
        .collect();
    let sorted = sort_children(view, &mut tally);
    let walk = walk_keys(view, &sorted, &mut tally);
    let running = sorted.running();
    // Failures past the cursor count against the budget now, and in status once counted.
    let over_budget = spec
        .max_failed
        .is_some_and(|max| tally.failed + walk.failed_ahead > i64::from(max));
    let suspended = spec.suspend == Some(true);
    let starts = if suspended || over_budget {
        Starts {
            create: vec![],
            check_outputs: vec![],
            late_skipped: 0,
        }
    } else {
        starts(view, &late, &sorted, &walk, &mut tally)
    };
    let started = starts.create.len();
    let waiting = (walk.pending.len() + late.len()).saturating_sub(started + starts.late_skipped);
    let oldest_waiting_late = (late.iter())
        .filter(|l| view.outputs_exist.get(&l.key) != Some(&true))
        .filter(|l| !starts.create.iter().any(|(c, _)| c.key == l.key))
        .filter_map(|l| l.last_modified)
        .min();

    let remaining = running + started + waiting;
    let phase = if over_budget && running == 0 {
        SetPhase::Failed
    } else if suspended && running == 0 {
        SetPhase::Planned
    } else if view.listing_ended && remaining == 0 && starts.check_outputs.is_empty() {
        if spec.watch.is_some() {
            SetPhase::Watching
        } else {
            SetPhase::Succeeded
        }
    } else {
        SetPhase::Running
    };

    let mut status = view.status.clone();
    status.phase = Some(phase);
    status.cursor = walk.cursor;
    status.succeeded = Some(tally.succeeded);
    status.failed = Some(tally.failed);
    status.skipped = Some(tally.skipped);
    status.running = Some((running + started) as i64);
    status.pending = Some(waiting as i64);
    status.failed_keys = (!tally.failed_keys.is_empty()).then_some(tally.failed_keys);
    status.counted_late = (!tally.counted_late.is_empty()).then_some(tally.counted_late);
    status.skipped_late = (!tally.skipped_late.is_empty()).then_some(tally.skipped_late);
    SetStep {
        status,
        create: starts.create,
        delete: tally.delete,
        check_outputs: starts.check_outputs,
        oldest_waiting_late,
        failed_ahead: walk.failed_ahead,
        counted: tally.counted,
    }
}

/// A finished child of an object written since the last full listing began (less the slack) is
/// kept, counted, until a listing has begun after it: that listing must see its key taken, or it
/// would take the object for a late one (a second child). Only inbox sets look for late objects,
/// so only they keep children for it.
fn recent(view: &SetView<'_>, child: &Child) -> bool {
    written_recently(view, child.written)
}

/// Whether an object written at `written` may still be taken for a late one by the next full
/// listing (inbox sets only; an unknown time is taken as recent).
fn written_recently(view: &SetView<'_>, written: Option<Timestamp>) -> bool {
    let slack = jiff::SignedDuration::try_from(LISTING_SLACK).unwrap_or_default();
    let listed = view.status.last_listed_at.as_ref().map(|t| t.0);
    view.spec.watch.is_some()
        && match (written, listed) {
            (Some(written), Some(listed)) => written + slack >= listed,
            _ => true,
        }
}

/// Children of late objects (counted here, by name), at or before the cursor (counted when the
/// cursor passed them: only deleted), and past it (sorted by key for the walk).
fn sort_children<'a>(view: &SetView<'a>, tally: &mut Tally) -> Sorted<'a> {
    let cursor = view.status.cursor.as_deref();
    let mut sorted = Sorted {
        ahead: BTreeMap::new(),
        late_running: 0,
    };
    for child in view.children {
        if child.late {
            let counted = tally.counted_late.contains(&child.name);
            match child.state {
                ChildState::Running => sorted.late_running += 1,
                // Its name stays counted until a pass finds it gone (a crash before the delete
                // must not count it again).
                _ if counted && !recent(view, child) => tally.delete.push(child.name.clone()),
                _ if counted => {}
                state => {
                    let done = match state {
                        ChildState::Succeeded => Outcome::Succeeded,
                        _ => Outcome::Failed,
                    };
                    tally.count(done, &child.key, Some(child));
                    tally.counted_late.push(child.name.clone());
                }
            }
        } else if cursor.is_some_and(|c| child.key.as_str() <= c) {
            if child.state != ChildState::Running && !recent(view, child) {
                tally.delete.push(child.name.clone());
            }
        } else {
            sorted.ahead.insert(child.key.as_str(), child);
        }
    }
    let children = view.children;
    tally
        .counted_late
        .retain(|name| children.iter().any(|c| c.name == *name));
    sorted
}

/// Walks the keys past the cursor in order: the window's, and any child's up to the window's
/// end (one whose object is gone from the listing is counted when the cursor passes it); past
/// the window's end nothing is known unless the listing ended there. The cursor moves over the
/// done keys at the front, and they are counted.
fn walk_keys<'a>(view: &SetView<'a>, sorted: &Sorted<'_>, tally: &mut Tally) -> Walk<'a> {
    let last_listed = view.window.last().map(|l| l.key.as_str());
    let mut keys: BTreeMap<&str, Option<&'a Listed>> = BTreeMap::new();
    for listed in view.window {
        keys.insert(listed.key.as_str(), Some(listed));
    }
    for key in sorted.ahead.keys() {
        if view.listing_ended || last_listed.is_some_and(|last| *key <= last) {
            keys.entry(key).or_insert(None);
        }
    }
    let mut walk = Walk {
        cursor: view.status.cursor.clone(),
        failed_ahead: 0,
        pending: vec![],
    };
    let mut front = true;
    for (key, listed) in keys {
        let child = sorted.ahead.get(key);
        let done = match child.map(|c| c.state) {
            Some(ChildState::Running) => None,
            Some(ChildState::Succeeded) => Some(Outcome::Succeeded),
            Some(ChildState::Failed) => Some(Outcome::Failed),
            None if view.outputs_exist.get(key) == Some(&true) => Some(Outcome::Skipped),
            None => {
                walk.pending.extend(listed);
                None
            }
        };
        match (front, done) {
            (true, Some(done)) => {
                tally.count(done, key, child.copied());
                if let Some(child) = child
                    && !recent(view, child)
                {
                    tally.delete.push(child.name.clone());
                }
                walk.cursor = Some(key.to_string());
            }
            (_, Some(Outcome::Failed)) => {
                walk.failed_ahead += 1;
                // Named at once; counted when the cursor passes it.
                tally.name_failed(key);
                front = false;
            }
            _ => front = false,
        }
    }
    walk
}

/// New starts: late objects first (they waited longest), then in key order, within the free
/// slots and the room for children. With `skipExisting`, a key whose outputs were not looked
/// for yet is asked about first.
fn starts(
    view: &SetView<'_>,
    late: &[&Listed],
    sorted: &Sorted<'_>,
    walk: &Walk<'_>,
    tally: &mut Tally,
) -> Starts {
    let spec = view.spec;
    let mut starts = Starts {
        create: vec![],
        check_outputs: vec![],
        late_skipped: 0,
    };
    let mut free = spec
        .effective_parallelism()
        .saturating_sub(sorted.running());
    let mut room = max_children(spec).saturating_sub(sorted.ahead.len() + sorted.late_running);
    let candidates =
        (late.iter().map(|l| (*l, true))).chain(walk.pending.iter().map(|l| (*l, false)));
    for (listed, late) in candidates {
        let exists = view.outputs_exist.get(&listed.key).copied();
        if late && exists == Some(true) {
            // Done already: counted here (no child, and before the cursor), and remembered
            // until a listing has begun after it.
            tally.count(Outcome::Skipped, &listed.key, None);
            tally.skipped_late.push(SkippedLate {
                key: listed.key.clone(),
                written: listed.last_modified.map(Time),
            });
            starts.late_skipped += 1;
            continue;
        }
        if free == 0 || room == 0 {
            break;
        }
        if spec.skip_existing == Some(true) && exists.is_none() {
            starts.check_outputs.push(listed.key.clone());
        } else if exists != Some(true) {
            starts.create.push((listed.clone(), late));
        } else {
            continue;
        }
        free -= 1;
        room -= 1;
    }
    starts
}

/// How an object ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Its outputs existed already (`skipExisting`).
    Skipped,
}

/// When to look again: soon while work is in flight (children's own changes also wake the
/// set), at the next listing in inbox mode, never for a finished set.
pub fn requeue_after(
    spec: &MediaJobSetSpec,
    phase: SetPhase,
    interval: Option<Duration>,
) -> Option<Duration> {
    match phase {
        SetPhase::Running => Some(Duration::from_secs(30)),
        SetPhase::Watching => interval,
        SetPhase::Planned => spec.watch.as_ref().and(interval),
        SetPhase::Succeeded | SetPhase::Failed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn spec(extra: serde_json::Value) -> MediaJobSetSpec {
        let mut value = serde_json::json!({
            "source": {"prefix": "s3://raw/season/"},
            "template": {"operation": "enhance", "output": {"url": "s3://out/{key}"}},
            "parallelism": 2,
        });
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(value).unwrap()
    }

    fn listed(keys: &[&str]) -> Vec<Listed> {
        keys.iter()
            .map(|k| Listed {
                key: k.to_string(),
                size: 10,
                last_modified: None,
            })
            .collect()
    }

    fn child(key: &str, state: ChildState) -> Child {
        Child {
            name: format!("c-{key}"),
            key: key.into(),
            state,
            written: None,
            late: false,
        }
    }

    fn run(
        spec: &MediaJobSetSpec,
        status: &MediaJobSetStatus,
        children: &[Child],
        window: &[Listed],
        outputs_exist: &HashMap<String, bool>,
    ) -> SetStep {
        step(&SetView {
            spec,
            status,
            children,
            window,
            listing_ended: true,
            late: &[],
            outputs_exist,
        })
    }

    fn created(step: &SetStep) -> Vec<&str> {
        step.create.iter().map(|(l, _)| l.key.as_str()).collect()
    }

    #[test]
    fn a_new_set_starts_parallelism_children_in_key_order() {
        let spec = spec(serde_json::json!({}));
        let window = listed(&["a", "b", "c", "d", "e"]);
        let step = run(&spec, &Default::default(), &[], &window, &HashMap::new());
        assert_eq!(created(&step), ["a", "b"]);
        assert_eq!(step.status.phase, Some(SetPhase::Running));
        assert_eq!(step.status.running, Some(2));
        assert_eq!(step.status.pending, Some(3));
        assert_eq!(step.status.cursor, None);
    }

    #[test]
    fn the_cursor_moves_over_the_done_keys_at_the_front_only() {
        let spec = spec(serde_json::json!({}));
        let window = listed(&["a", "b", "c", "d"]);
        let children = [
            child("a", ChildState::Succeeded),
            child("b", ChildState::Running),
            child("c", ChildState::Succeeded),
        ];
        let step = run(
            &spec,
            &Default::default(),
            &children,
            &window,
            &HashMap::new(),
        );
        assert_eq!(step.status.cursor.as_deref(), Some("a"));
        assert_eq!(
            step.status.succeeded,
            Some(1),
            "c is counted when the cursor passes it"
        );
        assert_eq!(step.delete, ["c-a"]);
        assert_eq!(created(&step), ["d"], "one slot free: b runs");
        assert_eq!(step.status.running, Some(2));
    }

    /// The report's lines are the counts: each step names exactly the objects it counts, once,
    /// across steps (a child counted by one step and deleted later is not named again).
    #[test]
    fn each_object_counted_is_named_once_for_the_report() {
        let spec = spec(serde_json::json!({"skipExisting": true}));
        let window = listed(&["a", "b", "c", "d"]);
        let exist: HashMap<String, bool> = [("c".to_string(), true)].into();
        let children = [
            child("a", ChildState::Succeeded),
            child("b", ChildState::Failed),
            child("d", ChildState::Running),
        ];
        let first = run(&spec, &Default::default(), &children, &window, &exist);
        let named = |step: &SetStep| -> Vec<(String, Option<String>, Outcome)> {
            (step.counted.iter())
                .map(|c| (c.key.clone(), c.child.clone(), c.outcome))
                .collect()
        };
        assert_eq!(
            named(&first),
            [
                ("a".into(), Some("c-a".into()), Outcome::Succeeded),
                ("b".into(), Some("c-b".into()), Outcome::Failed),
                ("c".into(), None, Outcome::Skipped),
            ]
        );
        // A crash before the deletes: a and b are still there, and counted already.
        let children = [
            child("a", ChildState::Succeeded),
            child("b", ChildState::Failed),
            child("d", ChildState::Succeeded),
        ];
        // The window is what lies past the cursor.
        let window = listed(&["d"]);
        let second = run(&spec, &first.status, &children, &window, &exist);
        assert_eq!(
            named(&second),
            [("d".into(), Some("c-d".into()), Outcome::Succeeded)]
        );
        let third = run(&spec, &second.status, &[], &window, &exist);
        assert!(third.counted.is_empty());
        let status = &third.status;
        let counts = status.succeeded.unwrap() + status.failed.unwrap() + status.skipped.unwrap();
        assert_eq!(counts, 4, "one line per count");
    }

    #[test]
    fn a_child_at_or_before_the_cursor_is_counted_already_and_only_deleted() {
        // A crash after the status write, before the delete.
        let spec = spec(serde_json::json!({}));
        let status = MediaJobSetStatus {
            cursor: Some("a".into()),
            succeeded: Some(1),
            ..Default::default()
        };
        let children = [child("a", ChildState::Succeeded)];
        let step = run(&spec, &status, &children, &listed(&["b"]), &HashMap::new());
        assert_eq!(step.delete, ["c-a"]);
        assert_eq!(step.status.succeeded, Some(1));
        assert_eq!(created(&step), ["b"]);
    }

    #[test]
    fn every_object_done_ends_the_set_or_keeps_watching() {
        let children = [
            child("a", ChildState::Succeeded),
            child("b", ChildState::Failed),
        ];
        let window = listed(&["a", "b"]);
        let step = run(
            &spec(serde_json::json!({})),
            &Default::default(),
            &children,
            &window,
            &HashMap::new(),
        );
        assert_eq!(step.status.phase, Some(SetPhase::Succeeded));
        assert_eq!(
            (step.status.succeeded, step.status.failed),
            (Some(1), Some(1))
        );
        assert_eq!(step.status.failed_keys, Some(vec!["b".to_string()]));
        assert_eq!(step.status.cursor.as_deref(), Some("b"));
        let inbox = spec(serde_json::json!({"watch": {"interval": "5m"}}));
        let step = run(
            &inbox,
            &Default::default(),
            &children,
            &window,
            &HashMap::new(),
        );
        assert_eq!(step.status.phase, Some(SetPhase::Watching));
    }

    #[test]
    fn more_failures_than_max_failed_stop_new_starts_and_fail_the_set() {
        let spec = spec(serde_json::json!({"maxFailed": 0}));
        let children = [
            child("b", ChildState::Failed),
            child("c", ChildState::Running),
        ];
        let window = listed(&["a", "b", "c", "d"]);
        let step = run(
            &spec,
            &Default::default(),
            &children,
            &window,
            &HashMap::new(),
        );
        assert!(step.create.is_empty(), "no new starts past the budget");
        assert_eq!(step.status.phase, Some(SetPhase::Running), "c still runs");
        assert_eq!(
            step.status.failed,
            Some(0),
            "counted when the cursor passes it"
        );
        assert_eq!(step.status.failed_keys, Some(vec!["b".to_string()]));
        let children = [
            child("b", ChildState::Failed),
            child("c", ChildState::Succeeded),
        ];
        let step = run(
            &spec,
            &Default::default(),
            &children,
            &window,
            &HashMap::new(),
        );
        assert_eq!(step.status.phase, Some(SetPhase::Failed));
    }

    #[test]
    fn a_suspended_set_plans_and_starts_nothing() {
        let spec = spec(serde_json::json!({"suspend": true}));
        let step = run(
            &spec,
            &Default::default(),
            &[],
            &listed(&["a", "b"]),
            &HashMap::new(),
        );
        assert!(step.create.is_empty());
        assert_eq!(step.status.phase, Some(SetPhase::Planned));
        assert_eq!(step.status.pending, Some(2));
    }

    #[test]
    fn skip_existing_looks_for_the_outputs_first_and_counts_what_exists() {
        let spec = spec(serde_json::json!({"skipExisting": true}));
        let window = listed(&["a", "b", "c"]);
        let step = run(&spec, &Default::default(), &[], &window, &HashMap::new());
        assert!(step.create.is_empty());
        assert_eq!(step.check_outputs, ["a", "b"]);
        assert_eq!(step.status.phase, Some(SetPhase::Running));
        let seen = HashMap::from([("a".to_string(), true), ("b".to_string(), false)]);
        let step = run(&spec, &Default::default(), &[], &window, &seen);
        assert_eq!(step.status.skipped, Some(1));
        assert_eq!(step.status.cursor.as_deref(), Some("a"));
        assert_eq!(created(&step), ["b"]);
        assert_eq!(
            step.check_outputs,
            ["c"],
            "the second slot looks at the next key"
        );
    }

    #[test]
    fn children_and_their_window_stay_bounded() {
        let spec = spec(serde_json::json!({"parallelism": 3}));
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i:04}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        // The first key runs for ever; the others finish.
        let mut children = vec![child("k0000", ChildState::Running)];
        children.extend(
            refs[1..max_children(&spec)]
                .iter()
                .map(|k| child(k, ChildState::Succeeded)),
        );
        let step = run(
            &spec,
            &Default::default(),
            &children,
            &listed(&refs),
            &HashMap::new(),
        );
        assert!(
            step.create.is_empty(),
            "the window of finished children is full"
        );
        assert_eq!(step.status.cursor, None);
    }

    #[test]
    fn a_late_object_is_counted_once_and_its_child_kept_until_a_listing_saw_it_done() {
        let spec = spec(serde_json::json!({"watch": {"interval": "5m"}}));
        let written = Timestamp::from_second(1_800_000_000).unwrap();
        let status = MediaJobSetStatus {
            cursor: Some("z".into()),
            succeeded: Some(5),
            last_listed_at: Some(Time(written)),
            ..Default::default()
        };
        let late = [Listed {
            key: "b".into(),
            size: 1,
            last_modified: Some(written),
        }];
        let step = step(&SetView {
            spec: &spec,
            status: &status,
            children: &[],
            window: &[],
            listing_ended: true,
            late: &late,
            outputs_exist: &HashMap::new(),
        });
        assert_eq!(step.create, vec![(late[0].clone(), true)]);
        // It finished: counted once, kept.
        let mut finished = child("b", ChildState::Succeeded);
        finished.late = true;
        finished.written = Some(written);
        let children = [finished];
        let step1 = run(&spec, &status, &children, &[], &HashMap::new());
        assert_eq!(step1.status.succeeded, Some(6));
        assert!(step1.delete.is_empty());
        assert_eq!(step1.status.counted_late, Some(vec!["c-b".to_string()]));
        let step2 = run(&spec, &step1.status, &children, &[], &HashMap::new());
        assert_eq!(step2.status.succeeded, Some(6), "not counted twice");
        // A listing began well after it was written: the child goes, then its name.
        let mut relisted = step2.status.clone();
        relisted.last_listed_at = Some(Time(written + jiff::SignedDuration::from_secs(600)));
        let step3 = run(&spec, &relisted, &children, &[], &HashMap::new());
        assert_eq!(step3.delete, ["c-b"]);
        assert_eq!(step3.status.succeeded, Some(6));
        let step4 = run(&spec, &step3.status, &[], &[], &HashMap::new());
        assert_eq!(step4.status.counted_late, None);
        assert_eq!(step4.status.succeeded, Some(6));
    }

    #[test]
    fn a_failure_behind_a_slow_key_is_counted_once_when_the_cursor_passes_it() {
        let spec = spec(serde_json::json!({"maxFailed": 5}));
        let window = listed(&["a", "b", "c"]);
        let children = [
            child("a", ChildState::Running),
            child("b", ChildState::Failed),
        ];
        let mut status = MediaJobSetStatus::default();
        for _ in 0..3 {
            status = run(&spec, &status, &children, &window, &HashMap::new()).status;
            assert_eq!(
                status.failed,
                Some(0),
                "not counted before the cursor passes it"
            );
        }
        let children = [
            child("a", ChildState::Succeeded),
            child("b", ChildState::Failed),
        ];
        let step = run(&spec, &status, &children, &window, &HashMap::new());
        assert_eq!(
            (step.status.succeeded, step.status.failed),
            (Some(1), Some(1))
        );
        let again = run(&spec, &step.status, &[], &listed(&["c"]), &HashMap::new());
        assert_eq!(again.status.failed, Some(1));
    }

    #[test]
    fn children_past_the_window_still_count_against_the_parallelism() {
        // Parallelism lowered to 2 while 3 children beyond the listed part run.
        let spec = spec(serde_json::json!({"parallelism": 2}));
        let children = [
            child("x", ChildState::Running),
            child("y", ChildState::Running),
            child("z", ChildState::Running),
        ];
        let step = step(&SetView {
            spec: &spec,
            status: &Default::default(),
            children: &children,
            window: &listed(&["a", "b"]),
            listing_ended: false,
            late: &[],
            outputs_exist: &HashMap::new(),
        });
        assert!(step.create.is_empty(), "{:?}", step.create);
        assert_eq!(step.status.running, Some(3));
        assert_eq!(step.status.phase, Some(SetPhase::Running));
    }

    #[test]
    fn an_inbox_keeps_the_recent_children_it_counted_until_a_listing_began_after_them() {
        let spec = spec(serde_json::json!({"watch": {"interval": "1m"}}));
        let listed_at = Timestamp::from_second(1_800_000_000).unwrap();
        let status = MediaJobSetStatus {
            last_listed_at: Some(Time(listed_at)),
            ..Default::default()
        };
        let mut recent = child("a", ChildState::Succeeded);
        recent.written = Some(listed_at + jiff::SignedDuration::from_secs(30));
        let mut old = child("b", ChildState::Succeeded);
        old.written = Some(listed_at - jiff::SignedDuration::from_secs(600));
        let step = run(
            &spec,
            &status,
            &[recent, old],
            &listed(&["a", "b"]),
            &HashMap::new(),
        );
        assert_eq!(step.status.succeeded, Some(2));
        assert_eq!(
            step.delete,
            ["c-b"],
            "a's key must stay taken for the next listing"
        );
        assert_eq!(step.status.phase, Some(SetPhase::Watching));
    }

    #[test]
    fn a_late_object_whose_outputs_exist_is_counted_as_skipped_with_skip_existing() {
        let spec = spec(serde_json::json!({"watch": {"interval": "1m"}, "skipExisting": true}));
        let status = MediaJobSetStatus {
            cursor: Some("z".into()),
            ..Default::default()
        };
        let late = listed(&["b", "c"]);
        let exist = HashMap::from([("b".to_string(), true), ("c".to_string(), false)]);
        let step = step(&SetView {
            spec: &spec,
            status: &status,
            children: &[],
            window: &[],
            listing_ended: true,
            late: &late,
            outputs_exist: &exist,
        });
        assert_eq!(step.status.skipped, Some(1));
        assert_eq!(step.create, vec![(late[1].clone(), true)]);
        assert_eq!(step.oldest_waiting_late, None);
    }

    /// A late object counted as skipped has no child to mark it: the set remembers it, so a
    /// listing held back to an older waiting object does not count (and report) it again; the
    /// record goes once a listing has begun after it.
    #[test]
    fn a_late_object_counted_as_skipped_is_not_counted_again() {
        let spec = spec(serde_json::json!({"watch": {"interval": "1m"}, "skipExisting": true}));
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let mut late = listed(&["b"]);
        late[0].last_modified = Some(t(100));
        let exist = HashMap::from([("b".to_string(), true)]);
        let view = |status, late| SetView {
            spec: &spec,
            status,
            children: &[],
            window: &[],
            listing_ended: true,
            late,
            outputs_exist: &exist,
        };
        let first_status = MediaJobSetStatus {
            cursor: Some("z".into()),
            last_listed_at: Some(Time(t(90))),
            ..Default::default()
        };
        let first = step(&view(&first_status, &late));
        assert_eq!((first.status.skipped, first.counted.len()), (Some(1), 1));
        // The next listing is held back before it (another late object waited): b again.
        let again = step(&view(&first.status, &late));
        assert_eq!(again.status.skipped, Some(1), "not counted twice");
        assert!(again.counted.is_empty(), "no second report line");
        assert_eq!(again.status.phase, Some(SetPhase::Watching));
        // A listing that began after it: the record goes.
        let mut later = again.status.clone();
        later.last_listed_at = Some(Time(t(200)));
        let gone = step(&view(&later, &[]));
        assert_eq!(gone.status.skipped_late, None);
    }
}
