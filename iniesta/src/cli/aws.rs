//! The AWS clients the commands use: the default credential chain, with the command line's
//! endpoint, region and profile over the environment's.

use aws_config::{BehaviorVersion, Region, SdkConfig};

use super::args::AwsArgs;
use crate::config::Config;

/// The shared AWS settings: `--region` and `--profile` over the default chain's.
pub(super) async fn sdk(args: &AwsArgs) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    loader.load().await
}

/// An SQS client: `--endpoint-url`, else `INIESTA_SQS_ENDPOINT_URL`, else the SDK's own.
pub(super) fn sqs(sdk: &SdkConfig, args: &AwsArgs, config: &Config) -> aws_sdk_sqs::Client {
    let mut builder = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(endpoint) = args
        .endpoint_url
        .as_ref()
        .or(config.sqs.endpoint_url.as_ref())
    {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_sqs::Client::from_conf(builder.build())
}

/// An SNS client: `--endpoint-url`, else `INIESTA_SNS_ENDPOINT_URL`, else the SDK's own.
#[cfg(feature = "sns")]
pub(super) fn sns(sdk: &SdkConfig, args: &AwsArgs, config: &Config) -> aws_sdk_sns::Client {
    let mut builder = aws_sdk_sns::config::Builder::from(sdk);
    if let Some(endpoint) = args
        .endpoint_url
        .as_ref()
        .or(config.sns.endpoint_url.as_ref())
    {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_sns::Client::from_conf(builder.build())
}
