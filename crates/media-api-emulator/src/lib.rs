//! A local emulator of the Dolby.io Media API, written from `shared/docs/media-api.md` alone. It
//! depends on no crate of the operator's, so the rule "the emulator never learns from the client"
//! is kept by the compiler: a misunderstanding on either side shows up as a failing test.
//! It serves the token endpoint and the job endpoints on one port, really reads and writes media
//! through the URLs it is given, and can inject the faults the real service might show.

mod api;
mod auth;
mod callbacks;
pub mod cli;
pub mod config;
mod conn;
mod faults;
mod io;
mod jobs;
pub mod operation;
mod problem;
mod results;
pub mod secret;
mod server;
mod storage;
mod validate;
mod worker;

pub use config::{EmulatorConfig, Faults, LostAnswer, S3Settings, Speed};
pub use jobs::Status;
pub use server::{Emulator, JobView, RunningEmulator, StartError};
