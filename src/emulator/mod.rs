//! A local emulator of the Dolby.io Media API, written from `docs/media-api.md` alone (never from
//! the client in `media_api`), so a misunderstanding in either shows up as a failing test.
//! It serves the token endpoint and the job endpoints on one port, really reads and writes media
//! through the URLs it is given, and can inject the faults the real service might show.

mod api;
mod auth;
mod callbacks;
pub mod cli;
pub mod config;
mod faults;
mod io;
mod jobs;
mod problem;
mod results;
mod server;
mod storage;
mod validate;
mod worker;

pub use config::{EmulatorConfig, Faults, S3Settings, Speed};
pub use jobs::Status;
pub use server::{Emulator, JobView, RunningEmulator, StartError};
