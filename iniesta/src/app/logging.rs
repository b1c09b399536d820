//! The log output the entry points (`iniesta::run`, `App::from_env`) install when the program
//! has none: `RUST_LOG` (default `info`) to stderr, as text or JSON (`INIESTA_LOG_FORMAT`);
//! with the `otlp` feature and the `OTEL_*` variables asking for it, span export too.
//!
//! `App::builder()` never installs one: a library user's program owns its subscriber.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing::{Dispatch, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, FilterFn, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;
use crate::trace::ExportLayer;

/// The filter when `RUST_LOG` is unset.
const DEFAULT_DIRECTIVES: &str = "info";

/// Targets held at `info` whatever `RUST_LOG` says: at `debug` and `trace` the AWS SDK and the
/// HTTP stack print requests and response bodies, and message bodies are confidential.
/// Each entry covers every target it prefixes (`aws_smithy` covers `aws_smithy_runtime`).
const CAPPED_TARGETS: &[&str] = &[
    "aws_smithy",
    "aws_sdk",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_credential_types",
    "aws_types",
    "hyper",
    "h2",
    "rustls",
    "tower",
];

/// The most verbose level of [`CAPPED_TARGETS`].
const CAP: LevelFilter = LevelFilter::INFO;

/// Installs the default log output unless the program already set a global subscriber.
///
/// Never panics: a subscriber set before (by the program, or an earlier call) stays.
pub(crate) fn install_default(format: LogFormat) {
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let rust_log = std::env::var("RUST_LOG").ok();
    let ansi = std::io::stderr().is_terminal();
    let (export, export_warnings) = crate::trace::export_layer();
    let (dispatch, rejected) =
        default_dispatch(rust_log.as_deref(), export, format, ansi, std::io::stderr);
    if dispatch.try_init().is_err() {
        return;
    }
    if let Some(reason) = rejected {
        tracing::warn!(
            rust_log = rust_log.as_deref().unwrap_or_default(),
            %reason,
            "RUST_LOG does not parse; logging at {DEFAULT_DIRECTIVES}"
        );
    }
    for warning in export_warnings {
        tracing::warn!("{warning}");
    }
}

/// The default subscriber: log lines to `writer` through [`log_filter`], and spans exported
/// through `export`, when set, by the same filter; with `RUST_LOG`'s parse error, if any.
fn default_dispatch<W>(
    rust_log: Option<&str>,
    export: Option<ExportLayer>,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> (Dispatch, Option<String>)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, rejected) = env_filter(rust_log);
    // No `Option` layer when nothing is exported: an absent layer still counts as one that
    // wants every callsite, which turns the log filter's cached "never" for delivery spans
    // into "sometimes" and runs every filter for three spans of every delivery.
    let dispatch = match export {
        Some(export) => {
            let export = export.with_filter(env_filter(rust_log).0.and(capped()));
            let log = layer(format, ansi, writer).with_filter(log_filter(filter));
            Dispatch::new(Registry::default().with(export).with(log))
        }
        None => {
            let log = layer(format, ansi, writer).with_filter(log_filter(filter));
            Dispatch::new(Registry::default().with(log))
        }
    };
    (dispatch, rejected)
}

/// What the log lines show: `filter`, [`capped`], and no delivery spans. Those would prefix
/// every line with a dozen span fields (each line names its message already), and cost a
/// formatted string per delivery even when nothing inside logs.
fn log_filter<S>(filter: EnvFilter) -> impl tracing_subscriber::layer::Filter<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let not_a_delivery_span =
        FilterFn::new(|meta: &Metadata<'_>| !(meta.is_span() && meta.target() == SPAN_TARGET));
    filter.and(capped()).and(not_a_delivery_span)
}

/// The target of iniesta's delivery spans.
const SPAN_TARGET: &str = crate::trace::span::TARGET;

/// `RUST_LOG`'s filter, or `info` with the parse error when it does not parse.
fn env_filter(rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let directives = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_DIRECTIVES);
    match EnvFilter::builder().parse(directives) {
        Ok(filter) => (filter, None),
        Err(err) => (EnvFilter::new(DEFAULT_DIRECTIVES), Some(err.to_string())),
    }
}

/// Everything passes, but [`CAPPED_TARGETS`] only up to [`CAP`].
fn capped() -> Targets {
    CAPPED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, name| t.with_target(*name, CAP),
    )
}

/// The formatting layer, writing to `writer`.
fn layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log output captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Runs `emit` under the default output built from `rust_log` and `format`.
    fn capture(rust_log: Option<&str>, format: LogFormat, emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let (filter, rejected) = env_filter(rust_log);
        assert_eq!(rejected, None);
        let subscriber = Registry::default()
            .with(layer(format, false, captured.clone()).with_filter(log_filter(filter)));
        tracing::subscriber::with_default(subscriber, emit);
        captured.text()
    }

    #[test]
    fn the_sdk_and_http_stack_stay_at_info_when_everything_else_traces() {
        let out = capture(Some("trace"), LogFormat::Text, || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "response body secret-1");
            tracing::debug!(target: "aws_sdk_sqs::operation", "request secret-2");
            tracing::trace!(target: "hyper_util::client", "bytes secret-3");
            tracing::trace!(target: "h2::codec", "frame secret-4");
            tracing::info!(target: "aws_config::meta", "region from the environment");
            tracing::trace!(target: "my_service", "my trace line");
        });
        for secret in ["secret-1", "secret-2", "secret-3", "secret-4"] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(out.contains("region from the environment"), "{out}");
        assert!(out.contains("my trace line"), "{out}");
    }

    #[test]
    fn default_is_info_and_rust_log_narrows_further() {
        let out = capture(None, LogFormat::Text, || {
            tracing::info!(target: "my_service", "started");
            tracing::debug!(target: "my_service", "details");
        });
        assert!(out.contains("started") && !out.contains("details"), "{out}");
        let out = capture(Some("warn,my_service=debug"), LogFormat::Text, || {
            tracing::info!(target: "aws_config", "sdk chatter");
            tracing::debug!(target: "my_service", "details");
        });
        assert!(
            out.contains("details") && !out.contains("sdk chatter"),
            "{out}"
        );
    }

    #[test]
    fn json_prints_one_object_per_line() {
        let out = capture(None, LogFormat::Json, || {
            tracing::info!(target: "my_service", queue = "orders", "consuming");
            tracing::warn!(target: "my_service", "slow");
        });
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["fields"]["message"], "consuming");
        assert_eq!(lines[0]["fields"]["queue"], "orders");
        assert_eq!(lines[1]["level"], "WARN");
    }

    #[test]
    fn delivery_spans_stay_out_of_log_lines() {
        let out = capture(Some("trace"), LogFormat::Text, || {
            let span = tracing::info_span!(target: "iniesta::trace", "process", messaging.message.id = "m-secret");
            let _entered = span.enter();
            tracing::info!(target: "my_service", "inside");
            let mine = tracing::info_span!(target: "my_service", "my_span", tenant = "acme");
            let _mine = mine.enter();
            tracing::info!(target: "my_service", "nested");
        });
        assert!(out.contains("inside") && out.contains("nested"), "{out}");
        assert!(
            !out.contains("m-secret") && !out.contains("process"),
            "{out}"
        );
        assert!(out.contains("my_span") && out.contains("acme"), "{out}");
    }

    /// The `'static` metadata of a span at `target`, as a callsite registers it.
    fn span_metadata(delivery: bool) -> &'static Metadata<'static> {
        tracing::subscriber::with_default(Registry::default(), || {
            let span = if delivery {
                tracing::info_span!(target: "iniesta::trace", "process")
            } else {
                tracing::info_span!(target: "my_service", "my_span")
            };
            span.metadata().expect("the registry enables every span")
        })
    }

    #[test]
    fn without_export_delivery_spans_are_never_wanted_once_and_for_all() {
        let (dispatch, _) = default_dispatch(
            Some("trace"),
            None,
            LogFormat::Text,
            false,
            Captured::default(),
        );
        // `never` is cached by the callsite: no filter runs for a delivery span again.
        let delivery = dispatch.register_callsite(span_metadata(true));
        assert!(delivery.is_never(), "{delivery:?}");
        let mine = dispatch.register_callsite(span_metadata(false));
        assert!(mine.is_always(), "{mine:?}");
    }

    #[test]
    fn a_bad_rust_log_falls_back_to_info_with_the_reason() {
        let (filter, rejected) = env_filter(Some("my_service=loud"));
        assert!(rejected.is_some());
        assert_eq!(filter.to_string(), "info");
        let (_, rejected) = env_filter(Some("   "));
        assert_eq!(rejected, None);
    }
}
