//! The MediaJob custom resource, `mediajob.io/v1alpha1`: the contract users write against.
mod defaults;
mod schema;
mod spec;
mod status;

pub use defaults::*;
pub use schema::crd_yaml;
pub use spec::*;
pub use status::*;
