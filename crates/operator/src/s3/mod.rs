//! S3 access for the Media API: where an object is (`location`), whose keys open it
//! (`credentials`), and time-limited URLs for exactly that object (`presign`). The reconciler
//! turns these into the request's locations: pre-signed URLs, auth blocks, or public URLs.
//! Keys come from a MediaJob's Secret, or from the operator's own identity (`ambient`) where
//! the job's namespace may use it.

mod ambient;
mod credentials;
mod error;
mod location;
mod presign;

pub use ambient::{AmbientCredentials, AmbientNamespaces, RefreshPolicy};
pub use credentials::{S3Credentials, SecretKeyNames};
pub use error::S3Error;
pub use location::S3Location;
pub use presign::{MAX_PRESIGN_TTL, PresignedUrl, Presigner, S3Connection, effective_expiry};
