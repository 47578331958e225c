//! The reconciler: a pure decision core (`decide`) and the shell that carries out its actions.
pub mod conditions;
pub mod decide;
pub mod timing;
