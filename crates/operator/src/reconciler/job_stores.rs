//! The MediaJobs every controller's store holds: one reader for the services that must look
//! across all of them (the lanes' seeding and sweeping, the memory's sweep, the slots, the
//! scrape-time gauges). Only a *complete* view counts for anything that frees or forgets: a store
//! that has not had its first list would make every job look gone.

use std::sync::{Arc, Mutex};

use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::MediaJob;

#[derive(Default)]
pub struct JobStores {
    stores: Mutex<Vec<Store<MediaJob>>>,
    /// How many stores there will be once every controller runs.
    expected: Mutex<usize>,
}

impl JobStores {
    pub fn new() -> Self {
        Self {
            stores: Mutex::new(vec![]),
            expected: Mutex::new(1),
        }
    }

    pub fn add(&self, store: Store<MediaJob>) {
        self.stores.lock().unwrap().push(store);
    }

    /// How many stores to wait for (one per controller).
    pub fn expect(&self, stores: usize) {
        *self.expected.lock().unwrap() = stores.max(1);
    }

    /// Every controller's store, once each has its first complete list; `None` before.
    pub fn complete(&self) -> Option<Vec<Store<MediaJob>>> {
        use futures::FutureExt;
        let stores = self.stores.lock().unwrap().clone();
        let complete = stores.len() >= *self.expected.lock().unwrap()
            && stores
                .iter()
                .all(|s| s.wait_until_ready().now_or_never().is_some());
        complete.then_some(stores)
    }

    /// Every MediaJob the stores hold now, complete or not (for gauges and claims, which only
    /// add).
    pub fn all(&self) -> Vec<Arc<MediaJob>> {
        let stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores.iter().flat_map(|s| s.state()).collect()
    }

    /// A MediaJob as the controllers last saw it.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<MediaJob>> {
        let stores = self.stores.lock().unwrap();
        let reference = ObjectRef::new(name).within(namespace);
        stores.iter().find_map(|s| s.get(&reference))
    }
}
