//! Jobs to reconcile now, from outside their watch: completion callbacks and lane hand-overs.
//! A wake-up goes to every controller whose scope holds the job's namespace and is never dropped:
//! a job waiting for its submission lane has no timer of its own, so a lost hand-over would leave
//! it (and every job behind it) waiting until the lane sweeper noticed the free lane.

use std::sync::Mutex;

use futures::Stream;
use tokio::sync::mpsc;

/// A MediaJob to look at now: (namespace, name).
pub type Wakeup = (String, String);

/// The controllers' wake-up inboxes, one per scope (`None`: every namespace).
#[derive(Default)]
pub struct Wakeups {
    inboxes: Mutex<Vec<(Option<String>, mpsc::UnboundedSender<Wakeup>)>>,
}

impl Wakeups {
    /// A new inbox for a controller of `namespace` (`None`: all namespaces). Unbounded: a
    /// wake-up is two short strings, and each one stands for a job that exists.
    pub fn subscribe(&self, namespace: Option<String>) -> impl Stream<Item = Wakeup> + use<> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.inboxes.lock().unwrap().push((namespace, sender));
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|job| (job, receiver))
        })
    }

    /// Wakes `job` in every controller whose scope holds it; false when none does.
    pub fn send(&self, job: Wakeup) -> bool {
        let mut inboxes = self.inboxes.lock().unwrap();
        // A controller that ended has closed its inbox.
        inboxes.retain(|(_, sender)| !sender.is_closed());
        let mut delivered = false;
        for (namespace, sender) in inboxes.iter() {
            if namespace.as_ref().is_none_or(|ns| *ns == job.0) {
                delivered |= sender.send(job.clone()).is_ok();
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn every_wake_up_reaches_the_controllers_of_its_namespace() {
        let wakeups = Wakeups::default();
        let mut a = Box::pin(wakeups.subscribe(Some("a".into())));
        let mut all = Box::pin(wakeups.subscribe(None));
        // Far more than a bounded channel would hold before anyone reads.
        for i in 0..5_000 {
            assert!(wakeups.send(("a".into(), format!("job-{i}"))));
        }
        assert!(wakeups.send(("b".into(), "other".into())));
        for i in 0..5_000 {
            assert_eq!(a.next().await, Some(("a".into(), format!("job-{i}"))));
            assert_eq!(all.next().await, Some(("a".into(), format!("job-{i}"))));
        }
        assert_eq!(all.next().await, Some(("b".into(), "other".into())));
        drop(all);
        assert!(
            !wakeups.send(("b".into(), "unwatched".into())),
            "nobody watches b any more"
        );
    }
}
