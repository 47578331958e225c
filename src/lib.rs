//! mediajob-operator: runs Dolby.io Media API jobs on media stored in S3.
pub mod apiserver_double;
pub mod crd;
pub mod operation;
pub mod secret;
