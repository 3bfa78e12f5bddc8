//! Logging: tracing with an env-filter, text or JSON lines, to any writer (tests capture it).

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber. `filter` uses the env-filter syntax (`info`,
/// `provisioner=debug,actix_web=warn`); `json` selects JSON lines; `ansi` colours text lines
/// (only for a terminal: a file or a pipe gets plain text). Calling it twice is harmless.
pub fn init<W>(filter: &str, json: bool, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_current_span(true)
                    .with_writer(writer),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_target(true)
                    .with_ansi(ansi)
                    .with_writer(writer),
            )
            .try_init()
    };
    // Already installed (tests start several apps in one process): keep the first.
    let _ = result;
}
