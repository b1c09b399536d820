//! The HTTP side of the listener: hyper's HTTP/1.1 server, three routes, plain-text answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::health::{self, Inputs};
use crate::pipeline::Pipeline;

/// How often histogram samples are folded into their buckets between scrapes, so an app
/// nobody scrapes does not hold every sample.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What every request reads.
pub(super) struct State {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) prometheus: PrometheusHandle,
    pub(super) stall_after: Duration,
}

/// Accepts connections until `stop`, then drops the open ones.
pub(super) async fn serve(
    socket: std::net::TcpListener,
    state: Arc<State>,
    stop: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(socket) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "the metrics listener could not start");
            return;
        }
    };
    // A thread, not a tokio timer: upkeep must not move a paused test clock, and it does no
    // I/O. It ends when `_upkeep` is dropped with this future.
    let (_upkeep, ticks) = mpsc::channel::<()>();
    let prometheus = state.prometheus.clone();
    std::thread::Builder::new()
        .name("iniesta-metrics-upkeep".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = ticks.recv_timeout(UPKEEP_EVERY) {
                prometheus.run_upkeep();
            }
        })
        .ok();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(%error, "the metrics listener could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = state.respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
}

impl State {
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
        }
        match request.uri().path() {
            "/metrics" => self.metrics(),
            "/health/live" => verdict(health::live(&self.inputs())),
            "/health/ready" => verdict(health::ready(&self.inputs())),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /health/live, /health/ready\n".to_owned(),
            ),
        }
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        super::sample(&self.pipeline);
        let mut response = text(StatusCode::OK, self.prometheus.render());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
        response
    }

    fn inputs(&self) -> Inputs {
        let pipeline = &self.pipeline;
        Inputs {
            poll: pipeline.metrics.poll_health(),
            paused: pipeline.paused(),
            stopping: pipeline.stopping.is_cancelled(),
            stall_after: self.stall_after,
            in_flight: pipeline.in_flight.get(),
            concurrency: pipeline.config.concurrency,
            handler_timeout: pipeline.config.handler_timeout,
        }
    }
}

fn verdict(result: Result<(), String>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, reason + "\n"),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
