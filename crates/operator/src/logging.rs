//! Log output: JSON lines for a cluster (`MEDIAJOB_LOG_FORMAT=json`, the default for `run`),
//! plain text for people at a terminal. `RUST_LOG` filters as usual.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// `MEDIAJOB_LOG_FORMAT` if set, else `default`.
    pub fn from_env(default: LogFormat) -> LogFormat {
        match std::env::var("MEDIAJOB_LOG_FORMAT").ok().as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            _ => default,
        }
    }
}

/// Installs the global subscriber; later calls are ignored (tests may call it repeatedly).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
