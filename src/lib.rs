//! mediajob-operator: runs Dolby.io Media API jobs on media stored in S3.
pub mod crd;
pub mod emulator;
pub mod operation;
pub mod secret;
