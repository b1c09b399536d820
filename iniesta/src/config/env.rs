//! Typed reads of environment variables, each error naming its variable.

use std::time::Duration;

use crate::ConfigError;

/// A variable source: the process environment, or a map in tests.
pub(super) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env { lookup }
    }

    /// The trimmed value; an empty value counts as unset.
    pub(super) fn string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok((self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    pub(super) fn int(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<usize>, ConfigError> {
        let Some(raw) = self.string(name)? else {
            return Ok(None);
        };
        match raw.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::invalid(
                name,
                format!("a whole number from {min} to {max}"),
                raw,
            )),
        }
    }

    pub(super) fn fraction(
        &self,
        name: &str,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, ConfigError> {
        let Some(raw) = self.string(name)? else {
            return Ok(None);
        };
        match raw.parse::<f64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::invalid(
                name,
                format!("a number from {min} to {max}"),
                raw,
            )),
        }
    }

    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(raw) = self.string(name)? else {
            return Ok(None);
        };
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::invalid(name, "true or false", raw)),
        }
    }

    pub(super) fn duration(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(raw) = self.string(name)? else {
            return Ok(None);
        };
        parse_duration(&raw).map(Some).ok_or_else(|| {
            ConfigError::invalid(
                name,
                "a duration such as 250ms, 10s, 1m30s, 1h or a number of seconds",
                raw,
            )
        })
    }
}

/// Parses a [`humantime`] span (`250ms`, `10s`, `1m30s`, `2h 5m`) or a bare number of seconds
/// (`10`, `1.5`): iniesta's settings were numbers of seconds, so those still work.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return text
            .parse::<f64>()
            .ok()
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok());
    }
    humantime::parse_duration(text).ok()
}
