//! The lock's settings as read from the environment: whether to lock, the Redlock's, the policy.

use std::fmt;

use super::env::Env;
#[cfg(feature = "redis")]
use super::redact_urls;
use crate::ConfigError;
use crate::lock::LockPolicy;
#[cfg(feature = "redis")]
use crate::lock::redlock::RedlockConfig;

/// The idempotency lock: whether to take one, where ([`RedlockConfig`], feature `redis`), and
/// how the pipeline uses it ([`LockPolicy`]).
///
/// `Debug` hides the passwords in the Redis URLs.
#[derive(Clone)]
#[non_exhaustive]
pub struct LockConfig {
    /// Take the lock before handling (`INIESTA_LOCK_ENABLED`, default on).
    pub enabled: bool,
    /// The Redlock's servers and settings.
    #[cfg(feature = "redis")]
    pub redlock: RedlockConfig,
    /// The processed marker, fail-open, a lost lock.
    pub policy: LockPolicy,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            enabled: true,
            #[cfg(feature = "redis")]
            redlock: RedlockConfig::default(),
            policy: LockPolicy::default(),
        }
    }
}

impl LockConfig {
    /// Refuses a lock that is on in a build without the Redlock (iniesta's `redis` feature):
    /// the app cannot take it, and handling without it would drop the promise silently.
    /// `App::from_env` and `iniesta check` both ask here.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Conflict`] saying why and how to fix it.
    pub(crate) fn refuse_unbuilt(&self) -> Result<(), ConfigError> {
        refuse_unbuilt(self.enabled, cfg!(feature = "redis"))
    }

    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let d = LockPolicy::default();
        let on_lock_lost = match env.string("INIESTA_LOCK_LOST")? {
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError::invalid("INIESTA_LOCK_LOST", "cancel or run-on", raw))?,
            None => d.on_lock_lost,
        };
        let policy = LockPolicy {
            processed_marker: env
                .bool("INIESTA_PROCESSED_MARKER")?
                .unwrap_or(d.processed_marker),
            processed_ttl: env.duration("INIESTA_PROCESSED_MARKER_TTL")?,
            fail_open: env.bool("INIESTA_LOCK_FAIL_OPEN")?.unwrap_or(d.fail_open),
            on_lock_lost,
        };
        Ok(LockConfig {
            enabled: env.bool("INIESTA_LOCK_ENABLED")?.unwrap_or(true),
            #[cfg(feature = "redis")]
            redlock: read_redlock(env)?,
            policy,
        })
    }
}

fn refuse_unbuilt(enabled: bool, redlock_built: bool) -> Result<(), ConfigError> {
    if enabled && !redlock_built {
        return Err(ConfigError::Conflict(
            "the lock is enabled but iniesta was built without its `redis` feature: set INIESTA_LOCK_ENABLED=false or enable the feature".into(),
        ));
    }
    Ok(())
}

#[cfg(feature = "redis")]
fn read_redlock(env: &Env<'_>) -> Result<RedlockConfig, ConfigError> {
    let d = RedlockConfig::default();
    let urls = match env.string("INIESTA_REDIS_URLS")? {
        Some(list) => {
            let urls: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            if urls.is_empty()
                || urls
                    .iter()
                    .any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
            {
                return Err(ConfigError::invalid(
                    "INIESTA_REDIS_URLS",
                    "comma-separated redis:// or rediss:// URLs",
                    redact_urls(&list),
                ));
            }
            urls
        }
        None => d.urls,
    };
    Ok(RedlockConfig {
        urls,
        ttl: env.duration("INIESTA_LOCK_TIMEOUT")?,
        retry_count: env
            .int("INIESTA_LOCK_RETRY_COUNT", 0, 100)?
            .map_or(d.retry_count, |n| n as u32),
        retry_delay: env
            .duration("INIESTA_LOCK_RETRY_DELAY")?
            .unwrap_or(d.retry_delay),
        key_prefix: env
            .string("INIESTA_LOCK_KEY_PREFIX")?
            .unwrap_or(d.key_prefix),
        done_prefix: d.done_prefix,
        fencing: env.bool("INIESTA_LOCK_FENCING")?.unwrap_or(d.fencing),
        call_timeout: env
            .duration("INIESTA_REDIS_TIMEOUT")?
            .unwrap_or(d.call_timeout),
    })
}

impl fmt::Debug for LockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("LockConfig");
        debug.field("enabled", &self.enabled);
        // RedlockConfig's own Debug redacts the URLs.
        #[cfg(feature = "redis")]
        debug.field("redlock", &self.redlock);
        debug.field("policy", &self.policy).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::refuse_unbuilt;

    #[test]
    fn a_lock_that_is_on_needs_the_redlock_built_in() {
        assert!(refuse_unbuilt(true, true).is_ok());
        assert!(refuse_unbuilt(false, false).is_ok());
        let refused = refuse_unbuilt(true, false).unwrap_err().to_string();
        assert!(refused.contains("`redis` feature"), "{refused}");
    }
}
