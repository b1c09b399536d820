//! The command line (feature `cli`): the `iniesta` binary, and the same commands inside a
//! service's own binary.
//!
//! ```text
//! iniesta send --queue NAME --event KEY --body TEXT [--attribute NAME=VALUE]...
//! iniesta publish [--topic-arn ARN] --event KEY --body TEXT [--attribute NAME=VALUE]...
//! iniesta receive [--queue NAME] [--max N] [--wait 1s]
//! iniesta filter-policy
//! iniesta handlers
//! iniesta check [--topic-arn ARN]
//! iniesta redrive [--from DLQ] [--to QUEUE] [--max N]
//! iniesta asyncapi [--title NAME] [--contract-version V] [--topic-arn ARN]
//! iniesta db migrate
//! iniesta outbox relay
//! ```
//!
//! Every command reads the same `INIESTA_*` variables as [`iniesta::run`](crate::run)
//! ([`Config::from_env`]); `--endpoint-url`, `--region` and `--profile` take precedence over
//! them and the AWS defaults. `send` and `publish` print `{"message_id": ...}`; `receive`
//! prints one JSON object per message (bodies included: that is what it is for) and leaves the
//! messages visible. `db migrate` creates the transactional inbox and outbox's tables and
//! `outbox relay` sends the outbox's messages until SIGINT or SIGTERM (feature `postgres`, see
//! [`postgres`](crate::postgres)); both read `INIESTA_DATABASE_URL` and the other
//! [`DatabaseConfig`](crate::config::DatabaseConfig) variables.
//!
//! In a service's binary, [`run`] is a drop-in for `iniesta::run()`: with no command it
//! consumes, and `handlers`, `filter-policy`, `check` and `asyncapi` describe that binary's
//! own handlers (`asyncapi` prints its [AsyncAPI document](crate::asyncapi)):
//!
//! ```no_run,standalone_crate
//! #[iniesta::handler("UserUpdated.user")]
//! async fn user_updated(msg: iniesta::Message) {
//!     println!("{}", msg.id());
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), iniesta::Error> {
//!     // `my-service` consumes; `my-service filter-policy` prints the policy its handlers need.
//!     iniesta::cli::run().await
//! }
//! ```

mod args;
mod aws;
mod check;
#[cfg(feature = "postgres")]
mod db;
mod inspect;
mod produce;
#[cfg(feature = "postgres")]
mod relay;

use clap::Parser as _;

use crate::config::Config;
use crate::{App, AppBuilder, Result};
use args::{Cli, Command, DbCommand, OutboxCommand};

/// Runs the command on the command line; with none, consumes exactly as
/// [`iniesta::run`](crate::run) does, with the handlers this binary registered.
///
/// # Errors
///
/// The command's: a bad setting, a queue or topic that does not exist, a message that breaks
/// the broker's rules, a failed request. A bad command line prints clap's help and exits
/// with status 2.
pub async fn run() -> Result<()> {
    run_with(|builder| builder).await
}

/// As [`run`], with the app set up by `configure` (state, handlers added at runtime) for
/// consuming and for `handlers` and `filter-policy`.
///
/// # Errors
///
/// As [`run`].
pub async fn run_with(configure: impl FnOnce(AppBuilder) -> AppBuilder) -> Result<()> {
    let cli = Cli::parse();
    let mut config = Config::from_env()?;
    let Some(command) = cli.command else {
        if cli.aws.region.is_some() || cli.aws.profile.is_some() {
            return Err(crate::ConfigError::Conflict(
                "--region and --profile apply to commands; to consume, set AWS_REGION and AWS_PROFILE".into(),
            )
            .into());
        }
        // As for every command: one endpoint (an emulator) for SQS and SNS alike.
        if let Some(endpoint) = cli.aws.endpoint_url {
            config.sqs.endpoint_url = Some(endpoint.clone());
            config.sns.endpoint_url = Some(endpoint);
        }
        return configure(App::from_config_with_logs(config).await?)
            .build()?
            .run()
            .await;
    };
    let builder = configure(AppBuilder::from_settings(&config));
    execute(&cli.aws, command, builder, &config).await
}

/// The `iniesta` binary: as [`run`], but a command is required (the tool registers no
/// handlers of its own, so it has nothing to consume with): without one, it prints the usage
/// and exits with status 2.
///
/// # Errors
///
/// As [`run`].
pub async fn run_tool() -> Result<()> {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        use clap::CommandFactory as _;
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingSubcommand,
                "a command is required: send, publish, receive, filter-policy, handlers, check, redrive, asyncapi, db or outbox",
            )
            .exit();
    };
    let config = Config::from_env()?;
    let builder = AppBuilder::from_settings(&config);
    execute(&cli.aws, command, builder, &config).await
}

async fn execute(
    aws_args: &args::AwsArgs,
    command: Command,
    builder: AppBuilder,
    config: &Config,
) -> Result<()> {
    match command {
        Command::Handlers => {
            inspect::handlers(&builder);
            Ok(())
        }
        Command::FilterPolicy => inspect::filter_policy(&builder, config),
        Command::Asyncapi(args) => inspect::asyncapi(&args, &builder, config),
        Command::Send(args) => {
            let sdk = aws::sdk(aws_args).await;
            produce::send(&args, aws::sqs(&sdk, aws_args, config), config).await
        }
        Command::Publish(args) => publish(aws_args, &args, config).await,
        Command::Receive(args) => {
            let sdk = aws::sdk(aws_args).await;
            inspect::receive(&args, aws::sqs(&sdk, aws_args, config), config).await
        }
        Command::Check(args) => {
            let sdk = aws::sdk(aws_args).await;
            let inputs = check::Inputs {
                sqs: aws::sqs(&sdk, aws_args, config),
                #[cfg(feature = "sns")]
                sns: aws::sns(&sdk, aws_args, config),
                topic_arn: args::subscribed_topic(args.topic_arn.as_ref(), config),
                strict: args.strict,
                policy: check::wanted_policy(&builder, config)?,
                handler_timeout: builder.consumer_config().handler_timeout,
                config,
            };
            check::run(inputs).await
        }
        Command::Redrive(args) => {
            let sdk = aws::sdk(aws_args).await;
            let Some(from) = args
                .from
                .as_ref()
                .or(config.dead_letter.queue_name.as_ref())
            else {
                return Err(crate::ConfigError::Missing {
                    what: "the dead-letter queue".into(),
                    variables: "--from or INIESTA_DEAD_LETTER_QUEUE_NAME".into(),
                }
                .into());
            };
            let client = aws::sqs(&sdk, aws_args, config);
            let sink = crate::dead_letter::SqsDeadLetterSink::connect(client, from).await?;
            let moved = sink.redrive(args.to.as_deref(), args.max).await?;
            println!("{}", serde_json::json!({ "moved": moved }));
            Ok(())
        }
        Command::Db(DbCommand::Migrate) => migrate(config).await,
        Command::Outbox(OutboxCommand::Relay) => relay(aws_args, config).await,
    }
}

#[cfg(feature = "postgres")]
async fn migrate(config: &Config) -> Result<()> {
    db::migrate(config).await
}

#[cfg(feature = "postgres")]
async fn relay(aws_args: &args::AwsArgs, config: &Config) -> Result<()> {
    relay::run(aws_args, config).await
}

#[cfg(not(feature = "postgres"))]
async fn migrate(_: &Config) -> Result<()> {
    Err(without_postgres("db migrate"))
}

#[cfg(not(feature = "postgres"))]
async fn relay(_: &args::AwsArgs, _: &Config) -> Result<()> {
    Err(without_postgres("outbox relay"))
}

#[cfg(not(feature = "postgres"))]
fn without_postgres(command: &str) -> crate::Error {
    crate::ConfigError::Conflict(format!(
        "`{command}` needs iniesta's `postgres` feature: this binary was built without it"
    ))
    .into()
}

#[cfg(feature = "sns")]
async fn publish(
    aws_args: &args::AwsArgs,
    args: &args::PublishArgs,
    config: &Config,
) -> Result<()> {
    let sdk = aws::sdk(aws_args).await;
    produce::publish(args, aws::sns(&sdk, aws_args, config), config).await
}

#[cfg(not(feature = "sns"))]
async fn publish(_: &args::AwsArgs, _: &args::PublishArgs, _: &Config) -> Result<()> {
    Err(crate::ConfigError::Conflict(
        "`publish` needs iniesta's `sns` feature: this binary was built without it".into(),
    )
    .into())
}
