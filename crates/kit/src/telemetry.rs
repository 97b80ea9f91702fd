//! Logging: JSON lines in production, a compact human format on a terminal.
//!
//! Every line written while a request is handled carries the request's span
//! fields (`request_id`, `trace_id`, route, user) because the HTTP middleware
//! runs the handler inside that span.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// What a command-line program does first: reads the configuration
/// (`file`, else `./panal.toml` when it exists, then `PANAL_*`) and starts
/// logging by it. The error is for the operator, printed as it is.
pub fn start(file: Option<&std::path::Path>) -> Result<crate::config::Config, String> {
    let config = crate::config::Config::load(file).map_err(|e| e.to_string())?;
    init(&config.settings.log, config.settings.log_format).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Installs the global subscriber. `filter` uses `tracing`'s syntax
/// (`info,sqlx=warn`). Call once, from `main`.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid configuration: key \"log\" is not a valid filter: {e}"))?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_span_events(FmtSpan::NONE);
    let result = if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.compact().with_ansi(std::io::stderr().is_terminal()).try_init()
    };
    result.map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))
}
