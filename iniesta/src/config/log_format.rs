//! `INIESTA_LOG_FORMAT`: how the entry point's default log output looks.

use std::fmt;

use super::env::Env;
use crate::ConfigError;

/// The format of the log output `iniesta::run` and `App::from_env` install
/// (`INIESTA_LOG_FORMAT`).
///
/// # Examples
///
/// ```
/// use iniesta::config::{Config, LogFormat};
///
/// let config = Config::from_lookup(|name| {
///     (name == "INIESTA_LOG_FORMAT").then(|| "json".to_owned())
/// })?;
/// assert_eq!(config.log_format, LogFormat::Json);
/// # Ok::<(), iniesta::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event (`text`, the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors (`json`).
    Json,
}

impl LogFormat {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        const NAME: &str = "INIESTA_LOG_FORMAT";
        match env.string(NAME)? {
            None => Ok(LogFormat::default()),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(ConfigError::invalid(NAME, "text or json", raw)),
            },
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}
