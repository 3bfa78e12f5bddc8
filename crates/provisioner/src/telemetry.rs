//! Logging: tracing with an env-filter, text or JSON lines, to any writer (tests capture it);
//! with the `otlp` feature and `PROVISIONER_OTLP_ENDPOINT`, spans exported over OTLP/HTTP too.

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
    // No endpoint: nothing to build, nothing to fail.
    let _ = init_exporting(filter, json, ansi, writer, None);
}

/// As [`init`], and exports the spans (those the filter lets through) in batches to the
/// OTLP/HTTP `otlp_endpoint` when it is set and this build has the `otlp` feature (a build
/// without it ignores the endpoint here: `startup::check_settings` refuses it). Keep the
/// returned [`Export`] until the end and [`Export::shutdown`] it to send the last spans.
pub fn init_exporting<W>(
    filter: &str,
    json: bool,
    ansi: bool,
    writer: W,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Export>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    #[cfg(feature = "otlp")]
    let (export, otel) = match otlp_endpoint {
        Some(endpoint) => {
            let (export, tracer) = otlp::start(endpoint)?;
            (
                export,
                Some(tracing_opentelemetry::OpenTelemetryLayer::new(tracer)),
            )
        }
        None => (Export::default(), None),
    };
    #[cfg(not(feature = "otlp"))]
    let (export, otel) = {
        let _ = otlp_endpoint;
        (
            Export::default(),
            None::<tracing_subscriber::layer::Identity>,
        )
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
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
    Ok(export)
}

/// The URL spans are posted to: `{endpoint}/v1/traces` (the OTLP/HTTP path of traces), for an
/// `http://` or `https://` endpoint. Errors never show the endpoint's password nor its query.
pub fn otlp_traces_url(endpoint: &str) -> anyhow::Result<String> {
    let shown = crate::config::redact_url(endpoint.split(['?', '#']).next().unwrap_or_default());
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| anyhow::anyhow!("PROVISIONER_OTLP_ENDPOINT {shown:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        anyhow::bail!(
            "PROVISIONER_OTLP_ENDPOINT {shown:?} must be an http:// or https:// URL (e.g. http://127.0.0.1:4318)"
        );
    }
    // The exporter's errors are logged with the URL: no secret may be in it.
    if url.query().is_some() || url.fragment().is_some() {
        anyhow::bail!("PROVISIONER_OTLP_ENDPOINT {shown:?} must not have a query or a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        anyhow::bail!(
            "PROVISIONER_OTLP_ENDPOINT {shown:?} must not carry credentials (the exporter's errors are logged with its URL)"
        );
    }
    Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
}

/// The span export started by [`init_exporting`] (nothing without an endpoint or the feature).
/// [`Export::shutdown`], or dropping it, sends the spans still queued and stops the exporter.
#[derive(Default)]
pub struct Export {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Export {
    /// Whether spans are exported.
    pub fn is_active(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.provider.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }

    /// Sends the queued spans (waits a few seconds at most) and stops the exporter. Blocks:
    /// call it once the server has stopped. Calling it again does nothing.
    pub fn shutdown(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "exporting the last spans over OTLP failed");
        }
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

    use super::{Export, otlp_traces_url};

    /// The batch exporter to `endpoint` (its own thread, a blocking HTTP client) and the
    /// tracer the tracing layer feeds.
    pub(super) fn start(endpoint: &str) -> anyhow::Result<(Export, SdkTracer)> {
        let url = otlp_traces_url(endpoint)?;
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| anyhow::anyhow!("building the OTLP span exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("provisioner").build())
            .build();
        let tracer = provider.tracer("provisioner");
        Ok((
            Export {
                provider: Some(provider),
            },
            tracer,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_the_endpoint_with_the_otlp_path() {
        assert_eq!(
            otlp_traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            otlp_traces_url("https://otel.example/base/").unwrap(),
            "https://otel.example/base/v1/traces"
        );
        for bad in [
            "127.0.0.1:4318",
            "ftp://x",
            "http://x/?a=1",
            "http://user:pw@x",
            "not a url",
        ] {
            assert!(otlp_traces_url(bad).is_err(), "{bad} accepted");
        }
        for secret in [
            "ftp://user:s3cret@x",
            "http://user:s3cret@x",
            "http://x/?token=s3cret",
        ] {
            let e = otlp_traces_url(secret).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
