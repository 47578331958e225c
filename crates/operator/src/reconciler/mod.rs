//! The reconciler: a pure decision core (`decide`) and the shell that carries out its actions.
pub mod admission;
pub mod callback;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod decide;
pub mod events;
pub mod kube_writes;
pub mod lanes;
pub mod memory;
pub mod reason;
pub mod reconcile;
pub mod remote;
pub mod search;
pub mod signing;
pub mod timing;
pub mod validate;
