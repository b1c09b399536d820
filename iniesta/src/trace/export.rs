//! OTLP export of the delivery spans from the default subscriber (feature `otlp`), switched on
//! and configured by the standard `OTEL_*` variables.
//!
//! The `OTEL_*` variables are OpenTelemetry's, not iniesta's settings: the SDK and the exporter
//! read most of them themselves (endpoint, headers, timeout, sampler, resource, batch sizes);
//! this file only decides whether to export at all.

use tracing_subscriber::{Layer, Registry};

/// The layer the default subscriber exports through, first on its registry.
pub(crate) type ExportLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The one protocol the `otlp` feature speaks.
const HTTP_PROTOBUF: &str = "http/protobuf";

/// Whether the environment asks for OTLP trace export, with what is worth a warning.
///
/// - `OTEL_SDK_DISABLED=true`: no.
/// - `OTEL_TRACES_EXPORTER` set: yes when its list names `otlp` (`none` and other exporters
///   mean no; others are warned about).
/// - otherwise: yes when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
///   is set.
pub(crate) fn wanted(var: impl Fn(&str) -> Option<String>) -> (bool, Vec<String>) {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut warnings = Vec::new();
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return (false, warnings);
    }
    let wanted = match set("OTEL_TRACES_EXPORTER") {
        Some(list) => {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            for name in names.iter().filter(|n| !matches!(**n, "otlp" | "none")) {
                warnings.push(format!(
                    "OTEL_TRACES_EXPORTER names `{name}`: iniesta exports traces over otlp only"
                ));
            }
            names.contains(&"otlp")
        }
        None => {
            set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    };
    if wanted {
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = set(name).filter(|p| p != HTTP_PROTOBUF) {
                warnings.push(format!(
                    "{name}={protocol}: iniesta exports {HTTP_PROTOBUF} only, using it"
                ));
            }
        }
    }
    (wanted, warnings)
}

/// The OpenTelemetry layer of the default subscriber, when the environment asks for export,
/// and warnings to log once the subscriber is installed.
pub(crate) fn layer() -> (Option<ExportLayer>, Vec<String>) {
    let (wanted, mut warnings) = wanted(|name| std::env::var(name).ok());
    if !wanted {
        return (None, warnings);
    }
    #[cfg(feature = "otlp")]
    match otlp::layer() {
        Ok(layer) => return (Some(layer), warnings),
        Err(error) => warnings.push(format!("OTLP trace export is off: {error}")),
    }
    #[cfg(not(feature = "otlp"))]
    warnings.push(
        "the OTEL_* variables ask for OTLP trace export, but iniesta was built without its \
         `otlp` feature: no traces are exported"
            .to_owned(),
    );
    (None, warnings)
}

/// Sends the spans still buffered; called when the app stops.
pub(crate) async fn flush() {
    #[cfg(feature = "otlp")]
    otlp::flush().await;
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::sync::OnceLock;

    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{ExporterBuildError, Protocol, SpanExporter, WithExportConfig as _};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer as _;

    use super::ExportLayer;

    /// The provider the default subscriber exports through, kept to flush it at the end.
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    pub(super) fn layer() -> Result<ExportLayer, ExporterBuildError> {
        // Endpoint, headers, timeout and compression come from OTEL_EXPORTER_OTLP_*.
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        // The batch processor exports from its own thread; the sampler (OTEL_TRACES_SAMPLER)
        // and the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) come from the SDK.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().build())
            .build();
        let scope = InstrumentationScope::builder("iniesta")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        // The program's own OpenTelemetry calls then reach the same exporter.
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let _ = PROVIDER.set(provider);
        Ok(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
    }

    pub(super) async fn flush() {
        if let Some(provider) = PROVIDER.get().cloned() {
            // Blocking: it waits for the exporter's thread.
            let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!(%error, "could not flush the last spans");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn decide(vars: &[(&str, &str)]) -> (bool, Vec<String>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wanted(|name| vars.get(name).cloned())
    }

    #[test]
    fn an_endpoint_or_the_otlp_exporter_turns_export_on() {
        assert!(!decide(&[]).0);
        assert!(decide(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).0);
        assert!(
            decide(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )])
            .0
        );
        assert!(decide(&[("OTEL_TRACES_EXPORTER", "otlp")]).0);
        assert!(!decide(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).0);
    }

    #[test]
    fn none_and_sdk_disabled_turn_it_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(!decide(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).0);
        assert!(!decide(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).0);
        assert!(decide(&[endpoint, ("OTEL_SDK_DISABLED", "false")]).0);
    }

    #[test]
    fn unsupported_exporters_and_protocols_are_warned_about() {
        let (on, warnings) = decide(&[("OTEL_TRACES_EXPORTER", "zipkin")]);
        assert!(!on);
        assert!(warnings[0].contains("zipkin"), "{warnings:?}");
        let (on, warnings) = decide(&[
            ("OTEL_TRACES_EXPORTER", "otlp,console"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert!(on);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[1].contains("grpc"), "{warnings:?}");
        let (_, warnings) = decide(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
