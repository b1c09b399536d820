//! `check`: is the deployment what the consumer needs? Each check passes, fails (saying what
//! is wrong and how to fix it) or is skipped (saying why: not applicable, or to be checked by
//! hand); any failure makes the command exit non-zero, and with `--strict` any skip too.

mod lock;
mod policy;
mod queue;
mod subscription;

use std::fmt;
use std::time::Duration;

use crate::config::Config;
use crate::subscription::FilterPolicy;
use crate::{AppBuilder, Error, Result};

/// How one check came out.
#[derive(Debug)]
pub(super) enum Verdict {
    Pass(String),
    Fail { wrong: String, fix: String },
    Skip(String),
}

/// One check's name and verdict.
#[derive(Debug)]
pub(super) struct Finding {
    pub(super) name: &'static str,
    pub(super) verdict: Verdict,
}

impl Finding {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            name,
            verdict: Verdict::Pass(detail.into()),
        }
    }

    fn fail(name: &'static str, wrong: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            name,
            verdict: Verdict::Fail {
                wrong: wrong.into(),
                fix: fix.into(),
            },
        }
    }

    fn skip(name: &'static str, why: impl Into<String>) -> Self {
        Finding {
            name,
            verdict: Verdict::Skip(why.into()),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Pass(detail) => write!(f, "ok    {}: {detail}", self.name),
            Verdict::Skip(why) => write!(f, "skip  {}: {why}", self.name),
            Verdict::Fail { wrong, fix } => {
                write!(f, "FAIL  {}: {wrong}\n      fix: {fix}", self.name)
            }
        }
    }
}

/// What the checks need: the settings, the clients, the topic (if any), and what the app the
/// service configured asks for: its handler timeout and the filter policy its handlers (or
/// `INIESTA_SQS_CONSUMER_FILTERS`) need.
pub(super) struct Inputs<'a> {
    pub(super) config: &'a Config,
    /// The app's handler timeout: set in code (`AppBuilder::handler_timeout` in
    /// `cli::run_with`) it overrides `INIESTA_HANDLER_TIMEOUT`, so `config` may not have it.
    pub(super) handler_timeout: Option<Duration>,
    pub(super) sqs: aws_sdk_sqs::Client,
    #[cfg(feature = "sns")]
    pub(super) sns: aws_sdk_sns::Client,
    pub(super) topic_arn: Option<String>,
    /// `--strict`: a skipped check fails the command too.
    pub(super) strict: bool,
    /// `None`: every event is wanted (a fallback handler).
    #[cfg_attr(
        not(feature = "sns"),
        allow(
            dead_code,
            reason = "only the subscription checks read it, and they need SNS"
        )
    )]
    pub(super) policy: Option<FilterPolicy>,
}

/// The filter policy the subscription should have: `INIESTA_SQS_CONSUMER_FILTERS`'s, else
/// the handlers' (`None`: a fallback wants every event).
pub(super) fn wanted_policy(builder: &AppBuilder, config: &Config) -> Result<Option<FilterPolicy>> {
    let policy = match &config.sns.consumer_filters {
        Some(filters) => FilterPolicy::from_keys(
            builder.consumer_config().decode.event_attribute.as_str(),
            filters,
        )
        .map(Some),
        None => builder.filter_policy(),
    };
    policy
        .map_err(|error| crate::ConfigError::Conflict(format!("the filter policy: {error}")).into())
}

/// Runs every check, prints each finding, and fails when one failed.
pub(super) async fn run(inputs: Inputs<'_>) -> Result<()> {
    let mut findings = Vec::new();
    let queue = queue::check(&inputs, &mut findings).await;
    subscription::check(&inputs, queue.as_ref(), &mut findings).await;
    lock::check(inputs.config, &mut findings);
    let count =
        |verdict: fn(&Verdict) -> bool| findings.iter().filter(|f| verdict(&f.verdict)).count();
    let failed = count(|v| matches!(v, Verdict::Fail { .. }));
    let skipped = count(|v| matches!(v, Verdict::Skip(_)));
    for finding in &findings {
        println!("{finding}");
    }
    println!(
        "{} checks: {} passed, {failed} failed, {skipped} skipped",
        findings.len(),
        count(|v| matches!(v, Verdict::Pass(_))),
    );
    let failed = if inputs.strict {
        failed + skipped
    } else {
        failed
    };
    if failed > 0 {
        return Err(Error::ChecksFailed { failed });
    }
    Ok(())
}
