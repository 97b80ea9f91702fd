//! Logging, and traces over OTLP.
//!
//! **Logs:** JSON lines in production, a compact human format on a terminal.
//! Every line written while a request is handled carries the request's span
//! fields (`request_id`, `trace_id`, route, user) because the HTTP middleware
//! runs the handler inside that span.
//!
//! **Traces:** off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Then the `tracing` spans kit
//! opens — each request (the gateway's and every service's), each SQL call,
//! each event the relay publishes and each event a consumer handles — are
//! exported by OpenTelemetry's batch processor over OTLP/HTTP (protobuf, or
//! JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`). The processor's queue
//! is bounded and drops spans when the collector is slow or down, so a request
//! never waits for it; [`Telemetry::shutdown`] sends what is queued.
//!
//! Span and trace ids are kit's own ([`TraceContext`]): the ids on log lines,
//! in `traceparent` headers and in events are the exported spans' ids, so a
//! trace in Jaeger and the log lines of a request are found by the same id.
//! The standard variables apply: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`.

use std::cell::Cell;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{IdGenerator, SdkTracerProvider};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;
use crate::trace::TraceContext;

/// Whether spans are exported: read on every request, so a plain flag.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What `main` keeps until it stops: the trace exporter, when there is one.
#[derive(Debug, Default)]
#[must_use = "call shutdown() before the runtime stops, or queued spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (waiting up to five seconds for the
    /// collector). Call it while the runtime that serves the exporter's HTTP
    /// client still runs.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "could not send every queued span");
            }
        }
    }
}

/// What a command-line program does first: reads the configuration
/// (`file`, else `./panal.toml` when it exists, then `PANAL_*`) and starts
/// logging by it, and trace export when the `OTEL_*` variables ask for it.
/// `service` names the process in traces unless `OTEL_SERVICE_NAME` does;
/// the exporter's HTTP client runs on `runtime`. The error is for the
/// operator, printed as it is.
pub fn start(
    file: Option<&std::path::Path>,
    service: &str,
    runtime: &tokio::runtime::Handle,
) -> Result<(crate::config::Config, Telemetry), String> {
    let config = crate::config::Config::load(file).map_err(|e| e.to_string())?;
    let traces = TraceExport::from_env(service, runtime).map_err(|e| e.to_string())?;
    let telemetry = init(&config.settings.log, config.settings.log_format, traces).map_err(|e| e.to_string())?;
    Ok((config, telemetry))
}

/// Installs the global subscriber: logs by `filter` (`tracing`'s syntax,
/// `info,sqlx=warn`) in `format`, and `traces` when given. Call once, from
/// `main`.
pub fn init(filter: &str, format: LogFormat, traces: Option<TraceExport>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid configuration: key \"log\" is not a valid filter: {e}"))?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let provider = match traces {
        // Without export, the filter is global, as it always was: callsites
        // it turns off cost nothing (per-layer filters keep some state per
        // span and event even then).
        None => {
            tracing_subscriber::registry().with(filter).with(log_lines(json)).try_init().map_err(already)?;
            None
        }
        Some(export) => {
            let provider = export.provider;
            let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "panal");
            let otel = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // kit's spans carry what matters; thread ids, source lines of
                // kit's own span sites and busy/idle times are noise.
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                // Nothing here reads `opentelemetry::Context::current()`.
                .with_context_activation(false)
                .with_filter(tracing_subscriber::filter::filter_fn(exported));
            tracing_subscriber::registry()
                .with(log_lines(json).with_filter(filter))
                .with(otel)
                .try_init()
                .map_err(already)?;
            Some(provider)
        }
    };
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { traces: provider })
}

/// The log-line layer: JSON, or the compact human format.
fn log_lines<S>(json: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_span_events(FmtSpan::NONE);
    if json {
        logs.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed()
    } else {
        logs.compact().with_ansi(std::io::stderr().is_terminal()).boxed()
    }
}

fn already(e: tracing_subscriber::util::TryInitError) -> anyhow::Error {
    anyhow::anyhow!("logging already initialised: {e}")
}

/// Which spans and events become trace data: spans at INFO and above from
/// anywhere, kit's own DEBUG spans (SQL calls, publications), and warnings
/// and errors as events on the span they happen in.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    if meta.is_span() {
        *meta.level() <= Level::INFO || (*meta.level() <= Level::DEBUG && meta.target().starts_with("kit"))
    } else {
        *meta.level() <= Level::WARN
    }
}

/// A configured span exporter, from the standard `OTEL_*` variables.
#[derive(Debug)]
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// `None` unless an OTLP endpoint is set (and neither `OTEL_SDK_DISABLED`
    /// nor `OTEL_TRACES_EXPORTER=none` turns export off).
    pub fn from_env(service: &str, runtime: &tokio::runtime::Handle) -> anyhow::Result<Option<Self>> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => anyhow::bail!("OTEL_TRACES_EXPORTER={other:?} is not supported (use otlp or none)"),
        }
        if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
            return Ok(None);
        }
        // The specification's default is protobuf; the crate would pick JSON
        // when both are built in.
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => Protocol::HttpBinary,
            Some("http/json") => Protocol::HttpJson,
            Some(other) => {
                anyhow::bail!("OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (use http/protobuf or http/json)")
            }
        };
        // The exporter leaves the request timeout to its client.
        let timeout = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .map(|ms| {
                ms.parse::<u64>()
                    .map_err(|_| anyhow::anyhow!("OTEL_EXPORTER_OTLP_TIMEOUT={ms:?} is not a number of milliseconds"))
            })
            .transpose()?
            .map_or(Duration::from_secs(10), Duration::from_millis);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("the OTLP exporter's HTTP client: {e}"))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_http_client(OtlpClient { http, runtime: runtime.clone() })
            .build()
            .map_err(|e| anyhow::anyhow!("the OTLP span exporter: {e}"))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if var("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service.to_owned());
        }
        let resource = resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(KitIds)
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider }))
    }
}

/// The exporter's HTTP client: the workspace's reqwest, run on the service's
/// runtime (the batch processor exports from a thread of its own, which has
/// no runtime to drive reqwest).
#[derive(Debug)]
struct OtlpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = http.execute(request).await?;
                let (status, headers) = (response.status(), response.headers().clone());
                Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
            })
            .await??;
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

thread_local! {
    /// The ids [`adopt`] is about to give the span it starts.
    static ASSIGNED: Cell<Option<([u8; 16], [u8; 8])>> = const { Cell::new(None) };
}

/// Span and trace ids: the ones kit assigned ([`adopt`]), else random.
#[derive(Debug)]
struct KitIds;

impl IdGenerator for KitIds {
    fn new_trace_id(&self) -> TraceId {
        TraceId::from_bytes(ASSIGNED.get().map_or_else(crate::trace::random_id, |(trace, _)| trace))
    }

    fn new_span_id(&self) -> SpanId {
        SpanId::from_bytes(ASSIGNED.get().map_or_else(crate::trace::random_id, |(_, span)| span))
    }
}

/// Makes `span` the exported span of `trace`: its parent is `trace`'s
/// (the caller's span, from `traceparent`) or none, and its ids are
/// `trace`'s own. The sampler's decision is written back into `trace`, so
/// calls made on its behalf carry it. Does nothing when spans are not
/// exported.
pub fn adopt(span: &tracing::Span, trace: &mut TraceContext) {
    if !exporting() {
        return;
    }
    let parent = match trace.parent_id {
        Some(parent) => {
            let flags = if trace.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
            let remote = SpanContext::new(
                TraceId::from_bytes(trace.trace_id),
                SpanId::from_bytes(parent),
                flags,
                true,
                TraceState::NONE,
            );
            Context::new().with_remote_span_context(remote)
        }
        None => Context::new(),
    };
    if span.set_parent(parent).is_err() {
        return;
    }
    ASSIGNED.set(Some((trace.trace_id, trace.span_id)));
    let started = span.context();
    ASSIGNED.set(None);
    let context = started.span().span_context().clone();
    if context.is_valid() {
        trace.sampled = context.is_sampled();
    }
}

/// Names an exported span (OpenTelemetry's names are per span, `tracing`'s
/// per call site) and adds `attributes`; for a span not exported, nothing.
pub fn describe(span: &tracing::Span, name: impl FnOnce() -> String, attributes: impl FnOnce() -> Vec<KeyValue>) {
    if !exporting() {
        return;
    }
    let context = span.context();
    let exported = context.span();
    if exported.is_recording() {
        exported.update_name(name());
        for attribute in attributes() {
            exported.set_attribute(attribute);
        }
    }
}

/// The name and attributes of a request's span, and its status.
pub(crate) fn describe_request(span: &tracing::Span, method: &http::Method, route: &str, status: u16) {
    if !exporting() {
        return;
    }
    describe(
        span,
        || format!("{method} {route}"),
        || {
            vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ]
        },
    );
    if status >= 500 {
        span.set_status(Status::error(format!("answered {status}")));
    }
}
