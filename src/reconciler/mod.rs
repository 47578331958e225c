//! The reconciler: a pure decision core (`decide`) and the shell that carries out its actions.
pub mod admission;
pub mod conditions;
pub mod decide;
pub mod events;
pub mod kube_writes;
pub mod memory;
pub mod remote;
pub mod timing;
