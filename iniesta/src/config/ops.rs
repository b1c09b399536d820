//! The metrics and health listener's settings as read from the environment.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::env::Env;
use crate::ConfigError;

/// The metrics and health listener: where it listens, and when the pollers count as stalled.
///
/// # Examples
///
/// ```
/// use iniesta::config::Config;
///
/// let config = Config::from_lookup(|name| match name {
///     "INIESTA_METRICS_ADDR" => Some("127.0.0.1:9464".into()),
///     _ => None,
/// })
/// .unwrap();
/// assert_eq!(config.ops.metrics_addr.unwrap().port(), 9464);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OpsConfig {
    /// Serve `/metrics`, `/health/live` and `/health/ready` on this address
    /// (`INIESTA_METRICS_ADDR=HOST:PORT`; port 0 picks a free one). `None`: no listener.
    pub metrics_addr: Option<SocketAddr>,
    /// Liveness fails when a receive call has been outstanding and no receive finished for
    /// this long, or when every handler slot has been busy with no delivery finished for
    /// this long plus the handler timeout (`INIESTA_LIVENESS_STALL_AFTER`). `None`: three
    /// long-poll waits plus 30 s (90 s with SQS's 20 s wait).
    pub stall_after: Option<Duration>,
}

impl OpsConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        const ADDR: &str = "INIESTA_METRICS_ADDR";
        let metrics_addr = match env.string(ADDR)? {
            None => None,
            Some(raw) => Some(
                raw.to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| {
                        ConfigError::invalid(ADDR, "HOST:PORT, such as 0.0.0.0:9464", raw)
                    })?,
            ),
        };
        Ok(OpsConfig {
            metrics_addr,
            stall_after: env.duration("INIESTA_LIVENESS_STALL_AFTER")?,
        })
    }
}
