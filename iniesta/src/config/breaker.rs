//! The circuit breaker's settings, and reading them from `INIESTA_CIRCUIT_BREAKER*`.

use std::time::Duration;

use super::env::Env;
use crate::ConfigError;

/// When to stop receiving because handlers keep failing, and how to start again: a circuit
/// breaker (MassTransit calls it a kill switch). Off unless set with
/// [`AppBuilder::circuit_breaker`](crate::AppBuilder::circuit_breaker) or
/// `INIESTA_CIRCUIT_BREAKER`.
///
/// Every receive spends one of a message's deliveries, so a consumer that keeps receiving
/// while a downstream is down walks its backlog into the dead-letter queue. With a breaker,
/// once [`threshold`](Self::threshold) of the last [`window`](Self::window) counted
/// deliveries failed, the consumer stops receiving for [`cooldown`](Self::cooldown)
/// (deliveries already running finish as usual; messages not received keep their receive
/// count). Then it receives a trial of at most [`trial`](Self::trial) messages: when that
/// many succeed it closes and receives as usual; when one fails it opens again for twice the
/// previous cool-down, up to [`max_cooldown`](Self::max_cooldown).
///
/// Handler errors, panics and timeouts count as failures and a handled message as a success.
/// Nothing else counts either way, since it says nothing about the downstream: no handler,
/// busy, already processed, a corrupt body, a message given back, an unavailable or lost lock,
/// a dead-lettered (permanent) failure.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `INIESTA_CIRCUIT_BREAKER` | `off` | `F/N`: open when `F` of the last `N` counted deliveries failed; `on`: `15/20` |
/// | `INIESTA_CIRCUIT_BREAKER_COOLDOWN` | `30s` | first pause in receiving |
/// | `INIESTA_CIRCUIT_BREAKER_MAX_COOLDOWN` | `5m` | the cool-down doubles after each failed trial, up to this |
/// | `INIESTA_CIRCUIT_BREAKER_TRIAL` | `5` | messages received as a trial, all of which must succeed |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use iniesta::{App, config::CircuitBreaker, transport::MemoryQueue};
///
/// let breaker = CircuitBreaker::default()
///     .with_threshold(10, 20)
///     .with_cooldown(Duration::from_secs(10))
///     .with_trial(3);
/// assert_eq!(breaker.max_cooldown, CircuitBreaker::DEFAULT_MAX_COOLDOWN);
///
/// let app = App::builder()
///     .transport(MemoryQueue::default())
///     .circuit_breaker(breaker)
///     .build()?;
/// # drop(app);
/// # Ok::<(), iniesta::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitBreaker {
    /// Failures among the last [`window`](Self::window) counted deliveries that open the
    /// circuit (1 to `window`).
    pub threshold: u32,
    /// Counted deliveries the failure rate is taken over (1 to
    /// [`MAX_WINDOW`](Self::MAX_WINDOW)).
    pub window: u32,
    /// How long receiving stops when the circuit opens.
    pub cooldown: Duration,
    /// The longest cool-down: it doubles after each failed trial, up to this.
    pub max_cooldown: Duration,
    /// Messages received while half-open; when that many succeed the circuit closes.
    pub trial: u32,
}

impl CircuitBreaker {
    /// Failures that open the circuit: 15 ...
    pub const DEFAULT_THRESHOLD: u32 = 15;
    /// ... of the last 20 counted deliveries.
    pub const DEFAULT_WINDOW: u32 = 20;
    /// The first cool-down.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
    /// The longest cool-down.
    pub const DEFAULT_MAX_COOLDOWN: Duration = Duration::from_secs(5 * 60);
    /// Messages in a trial.
    pub const DEFAULT_TRIAL: u32 = 5;
    /// The largest window (one byte of memory per delivery in it).
    pub const MAX_WINDOW: u32 = 10_000;
    /// The largest trial.
    pub const MAX_TRIAL: u32 = 1_000;

    /// Opens the circuit when `failures` of the last `window` counted deliveries failed.
    pub fn with_threshold(mut self, failures: u32, window: u32) -> Self {
        self.threshold = failures;
        self.window = window;
        self
    }

    /// How long receiving stops when the circuit opens.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The longest cool-down after failed trials.
    pub fn with_max_cooldown(mut self, max: Duration) -> Self {
        self.max_cooldown = max;
        self
    }

    /// Messages received as a trial when the cool-down is over.
    pub fn with_trial(mut self, messages: u32) -> Self {
        self.trial = messages;
        self
    }

    /// Rejects settings that cannot work.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the setting.
    ///
    /// # Examples
    ///
    /// ```
    /// use iniesta::config::CircuitBreaker;
    ///
    /// assert!(CircuitBreaker::default().validate().is_ok());
    /// let err = CircuitBreaker::default().with_threshold(21, 20).validate().unwrap_err();
    /// assert!(err.to_string().contains("circuit_breaker.threshold"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=Self::MAX_WINDOW).contains(&self.window) {
            return Err(ConfigError::invalid(
                "circuit_breaker.window",
                format!("1 to {}", Self::MAX_WINDOW),
                self.window.to_string(),
            ));
        }
        if !(1..=self.window).contains(&self.threshold) {
            return Err(ConfigError::invalid(
                "circuit_breaker.threshold",
                format!("1 to the window ({})", self.window),
                self.threshold.to_string(),
            ));
        }
        if !(1..=Self::MAX_TRIAL).contains(&self.trial) {
            return Err(ConfigError::invalid(
                "circuit_breaker.trial",
                format!("1 to {}", Self::MAX_TRIAL),
                self.trial.to_string(),
            ));
        }
        // Past 12 hours every message has long come back: a longer pause only stalls.
        const LONGEST: Duration = Duration::from_secs(12 * 3600);
        if self.cooldown.is_zero() || self.cooldown > self.max_cooldown {
            return Err(ConfigError::invalid(
                "circuit_breaker.cooldown",
                "more than 0 and at most max_cooldown",
                format!("{:?}", self.cooldown),
            ));
        }
        if self.max_cooldown > LONGEST {
            return Err(ConfigError::invalid(
                "circuit_breaker.max_cooldown",
                "at most 12h",
                format!("{:?}", self.max_cooldown),
            ));
        }
        Ok(())
    }

    /// Reads `INIESTA_CIRCUIT_BREAKER*`; `None` when the breaker is off.
    pub(super) fn read(env: &Env<'_>) -> Result<Option<Self>, ConfigError> {
        const SWITCH: &str = "INIESTA_CIRCUIT_BREAKER";
        const COOLDOWN: &str = "INIESTA_CIRCUIT_BREAKER_COOLDOWN";
        const MAX_COOLDOWN: &str = "INIESTA_CIRCUIT_BREAKER_MAX_COOLDOWN";
        const TRIAL: &str = "INIESTA_CIRCUIT_BREAKER_TRIAL";
        let d = CircuitBreaker::default();
        let cooldown = env.duration(COOLDOWN)?;
        let max_cooldown = env.duration(MAX_COOLDOWN)?;
        let trial = env.int(TRIAL, 1, Self::MAX_TRIAL as usize)?;
        let breaker = match env.string(SWITCH)? {
            None => None,
            Some(raw) => match parse_switch(&raw) {
                Some(Switch::Off) => None,
                Some(Switch::On) => Some(d),
                Some(Switch::Threshold(failures, window)) => {
                    Some(d.with_threshold(failures, window))
                }
                None => {
                    return Err(ConfigError::invalid(
                        SWITCH,
                        "FAILURES/WINDOW such as 15/20 (FAILURES at most WINDOW), on or off",
                        raw,
                    ));
                }
            },
        };
        let Some(mut breaker) = breaker else {
            // A setting that would silently do nothing is a mistake worth reporting.
            let stray = [
                (COOLDOWN, cooldown.is_some()),
                (MAX_COOLDOWN, max_cooldown.is_some()),
                (TRIAL, trial.is_some()),
            ];
            if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(ConfigError::Conflict(format!(
                    "{name} is set but the circuit breaker is off: set {SWITCH} (15/20, or on)"
                )));
            }
            return Ok(None);
        };
        breaker.cooldown = cooldown.unwrap_or(breaker.cooldown);
        breaker.max_cooldown = max_cooldown.unwrap_or(breaker.max_cooldown);
        breaker.trial = trial.map_or(breaker.trial, |n| n as u32);
        // Name the variable, not the field.
        breaker.validate().map_err(|error| match error {
            ConfigError::Invalid {
                name,
                expected,
                got,
            } => ConfigError::Invalid {
                name: match name.as_str() {
                    "circuit_breaker.cooldown" => COOLDOWN,
                    "circuit_breaker.max_cooldown" => MAX_COOLDOWN,
                    "circuit_breaker.trial" => TRIAL,
                    _ => SWITCH,
                }
                .to_owned(),
                expected,
                got,
            },
            other => other,
        })?;
        Ok(Some(breaker))
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            threshold: Self::DEFAULT_THRESHOLD,
            window: Self::DEFAULT_WINDOW,
            cooldown: Self::DEFAULT_COOLDOWN,
            max_cooldown: Self::DEFAULT_MAX_COOLDOWN,
            trial: Self::DEFAULT_TRIAL,
        }
    }
}

/// What `INIESTA_CIRCUIT_BREAKER` says.
#[derive(Debug, PartialEq, Eq)]
enum Switch {
    Off,
    On,
    Threshold(u32, u32),
}

/// `F/N` (1 <= F <= N <= [`CircuitBreaker::MAX_WINDOW`]), `on`/`true` or `off`/`false`.
fn parse_switch(raw: &str) -> Option<Switch> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "off" | "false" | "no" | "0" => return Some(Switch::Off),
        "on" | "true" | "yes" | "1" => return Some(Switch::On),
        _ => {}
    }
    let (failures, window) = raw.split_once('/')?;
    let failures: u32 = failures.trim().parse().ok()?;
    let window: u32 = window.trim().parse().ok()?;
    (1 <= failures && failures <= window && window <= CircuitBreaker::MAX_WINDOW)
        .then_some(Switch::Threshold(failures, window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_reads_a_ratio_or_on_off() {
        assert_eq!(parse_switch("15/20"), Some(Switch::Threshold(15, 20)));
        assert_eq!(parse_switch(" 1 / 1 "), Some(Switch::Threshold(1, 1)));
        assert_eq!(parse_switch("ON"), Some(Switch::On));
        assert_eq!(parse_switch("off"), Some(Switch::Off));
        for bad in ["21/20", "0/20", "15", "15/", "a/b", "75%", "5/20000"] {
            assert_eq!(parse_switch(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_combinations_are_not() {
        assert!(CircuitBreaker::default().validate().is_ok());
        let bad = [
            CircuitBreaker::default().with_threshold(0, 20),
            CircuitBreaker::default().with_threshold(5, 0),
            CircuitBreaker::default().with_trial(0),
            CircuitBreaker::default().with_cooldown(Duration::ZERO),
            CircuitBreaker::default().with_cooldown(Duration::from_secs(600)),
            CircuitBreaker::default().with_max_cooldown(Duration::from_secs(13 * 3600)),
        ];
        for breaker in bad {
            assert!(breaker.validate().is_err(), "{breaker:?}");
        }
    }
}
