//! Which SQS queue to consume and how to poll it: the SQS transport's settings.

use std::fmt;
use std::time::Duration;

use crate::ConfigError;
use crate::transport::sns::SnsTrust;

/// Which SQS queue to consume and how to poll it.
#[derive(Clone)]
#[non_exhaustive]
pub struct SqsConfig {
    /// `INIESTA_SQS_QUEUE_NAME`.
    pub queue_name: Option<String>,
    /// `INIESTA_SQS_QUEUE_NAME_TEMPLATE` (default `iniesta-{env}-{service_name}`).
    pub queue_name_template: Option<String>,
    /// `INIESTA_ENVIRONMENT`.
    pub environment: Option<String>,
    /// `INIESTA_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `INIESTA_SQS_QUEUE_URL`: skips `GetQueueUrl`.
    pub queue_url: Option<String>,
    /// `INIESTA_SQS_ENDPOINT_URL` (else `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Long-poll wait, 0-20 s (default 20).
    pub wait_time: Option<Duration>,
    /// Visibility timeout asked on receive (default: the queue's).
    pub visibility_timeout: Option<Duration>,
    /// Longest a delete waits to fill a batch of ten (default 10 ms).
    pub delete_flush_interval: Option<Duration>,
    /// Check bodies against `MD5OfBody` (default on).
    pub verify_md5: bool,
    /// How long startup retries a transient SQS failure (`INIESTA_STARTUP_TIMEOUT`, default 60 s).
    pub startup_timeout: Option<Duration>,
    /// Which SNS envelopes are trusted to name their message (`INIESTA_SNS_TOPIC_ARNS`,
    /// `INIESTA_SNS_VERIFY_SIGNATURES`).
    pub sns_trust: SnsTrust,
}

/// The default queue-name template, as in iniesta.
pub const DEFAULT_QUEUE_NAME_TEMPLATE: &str = "iniesta-{env}-{service_name}";

impl Default for SqsConfig {
    fn default() -> Self {
        SqsConfig {
            queue_name: None,
            queue_name_template: None,
            environment: None,
            service_name: None,
            queue_url: None,
            endpoint_url: None,
            wait_time: None,
            visibility_timeout: None,
            delete_flush_interval: None,
            verify_md5: true,
            startup_timeout: None,
            sns_trust: SnsTrust::default(),
        }
    }
}

impl SqsConfig {
    /// Whether any queue setting is present (otherwise `iniesta::run` has nothing to consume).
    pub fn is_configured(&self) -> bool {
        self.queue_url.is_some()
            || self.queue_name.is_some()
            || (self.environment.is_some() && self.service_name.is_some())
    }

    /// The queue name: `queue_name`, else the template filled with environment and service.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Missing`] listing the variables when neither is set.
    pub fn resolved_queue_name(&self) -> Result<String, ConfigError> {
        if let Some(name) = &self.queue_name {
            return Ok(name.clone());
        }
        let template = self
            .queue_name_template
            .as_deref()
            .unwrap_or(DEFAULT_QUEUE_NAME_TEMPLATE);
        let missing_env = template.contains("{env}") && self.environment.is_none();
        let missing_service = template.contains("{service_name}") && self.service_name.is_none();
        if !missing_env && !missing_service {
            return Ok(template
                .replace("{env}", self.environment.as_deref().unwrap_or_default())
                .replace(
                    "{service_name}",
                    self.service_name.as_deref().unwrap_or_default(),
                ));
        }
        Err(ConfigError::Missing {
            what: "the SQS queue".into(),
            variables: "INIESTA_SQS_QUEUE_URL, INIESTA_SQS_QUEUE_NAME, or INIESTA_ENVIRONMENT and INIESTA_SERVICE_NAME (with INIESTA_SQS_QUEUE_NAME_TEMPLATE, default iniesta-{env}-{service_name})".into(),
        })
    }
}

impl fmt::Debug for SqsConfig {
    // Queue URLs carry the account id: show whether one is set, not its value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsConfig")
            .field("queue_name", &self.queue_name)
            .field("queue_name_template", &self.queue_name_template)
            .field("environment", &self.environment)
            .field("service_name", &self.service_name)
            .field("queue_url", &self.queue_url.as_ref().map(|_| "<set>"))
            .field("endpoint_url", &self.endpoint_url)
            .field("wait_time", &self.wait_time)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("delete_flush_interval", &self.delete_flush_interval)
            .field("verify_md5", &self.verify_md5)
            .field("startup_timeout", &self.startup_timeout)
            .field("sns_trust", &self.sns_trust)
            .finish()
    }
}
