//! Logging: `tracing` to stderr, text or JSON, filtered by `MCP_LOG`; and
//! traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};

/// The standard variable that turns tracing on (`http://collector:4318`).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The spans exported: each request's and each tool call's, whatever the
/// log level.
const TRACED: &str = "mcp_serve=info,mcp_server=info";

static TRACER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber. Calling it twice is harmless (the second
/// call is ignored), so tests can start several servers in one process.
pub fn init(config: &Config) {
    // The config loader has already checked that the filter parses.
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    // Not `.with(Option<layer>)`: an absent layer (`None`) answers
    // `Interest::always` for every callsite, so every disabled span (the
    // request span at `warn`) would still be made, entered and closed.
    let _ = match tracer() {
        Some(provider) => registry
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("mcp-server"))
                    .with_filter(EnvFilter::new(TRACED)),
            )
            .try_init(),
        None => registry.try_init(),
    };
}

/// The OTLP exporter (HTTP, JSON) of `OTEL_EXPORTER_OTLP_ENDPOINT`, with the
/// W3C trace-context propagator; `None` when the variable is unset.
fn tracer() -> Option<&'static SdkTracerProvider> {
    std::env::var_os(OTLP_ENDPOINT).filter(|v| !v.is_empty())?;
    if let Some(provider) = TRACER.get() {
        return Some(provider);
    }
    // The exporter's blocking HTTP client has a runtime of its own, which
    // may be neither made nor dropped on an async worker: made on a thread.
    let built = std::thread::spawn(|| {
        use opentelemetry_otlp::WithExportConfig;
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
            .build()
    })
    .join();
    let exporter = match built {
        Ok(Ok(exporter)) => exporter,
        Ok(Err(error)) => {
            eprintln!("tracing off: the OTLP exporter cannot be made: {error}");
            return None;
        }
        Err(_) => return None,
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("mcp-server")
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Some(TRACER.get_or_init(|| provider))
}

/// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` was set).
pub fn exporting() -> bool {
    TRACER.get().is_some()
}

/// Exports the spans still buffered (at shutdown).
pub fn flush_traces() {
    if let Some(provider) = TRACER.get() {
        // The batch processor's own thread does the export: off the workers.
        let provider = provider.clone();
        let _ = std::thread::spawn(move || provider.force_flush()).join();
    }
}

/// The parent context a tool call continues: its `_meta.traceparent`
/// (MCP's way to carry the trace through a message), else its HTTP
/// request's `traceparent` header.
pub fn tool_call_parent(
    meta_traceparent: Option<&str>,
    headers: Option<&http::HeaderMap>,
) -> opentelemetry::Context {
    use opentelemetry::propagation::TextMapPropagator as _;
    let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    if let Some(traceparent) = meta_traceparent {
        let carrier =
            std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        return propagator.extract(&carrier);
    }
    match headers {
        Some(headers) => propagator.extract(&opentelemetry_http::HeaderExtractor(headers)),
        None => opentelemetry::Context::new(),
    }
}

/// Drains the recorder's histogram samples into their buckets every five
/// seconds. A recorder made with `build_recorder` keeps every sample until
/// it is rendered or upkept: without this, a server nobody scrapes grows by
/// the latency of every request it serves (measured: about 20 MiB per ten
/// seconds under load).
pub fn start_upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    })
}

/// The process's Prometheus recorder, installed on first use. `None` when
/// an embedding program installed another `metrics` recorder first: then
/// its exporter serves the counters and `/metrics` answers `404`.
pub fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "http_request_duration_seconds".to_owned(),
                    ),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(_) => {
                    tracing::warn!("another metrics recorder is installed; /metrics is off");
                    None
                }
            }
        })
        .clone()
}
