//! The custom resources of `mediajob.io/v1alpha1`: MediaJob, the contract users write against;
//! MediaJobSet, every object under a prefix; and MediaApiAccountClaim, the operator's own record
//! of which release submits on an account.
mod account_claim;
pub mod admission_policy;
mod defaults;
mod schema;
mod set;
mod spec;
mod status;

pub use account_claim::*;
pub use defaults::*;
pub use schema::{CRD_FILES, crd_yaml, crds_yaml};
pub use set::*;
pub use spec::*;
pub use status::*;
