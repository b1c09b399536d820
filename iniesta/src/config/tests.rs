use std::collections::HashMap;
use std::time::Duration;

use super::env::parse_duration;
use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(move |name| map.get(name).cloned())
}

#[test]
fn defaults_match_iniesta() {
    let c = config(&[]).unwrap();
    assert_eq!(c.consumer.decode.event_attribute, "iniesta_pass");
    assert_eq!(c.consumer.max_batch, 10);
    assert!(c.lock.enabled);
    // None: the lock ttl follows the queue's visibility timeout.
    #[cfg(feature = "redis")]
    {
        assert_eq!(c.lock.redlock.ttl, None);
        assert_eq!(c.lock.redlock.retry_count, 1);
        assert_eq!(c.lock.redlock.key_prefix, "sqs:event:");
        assert_eq!(c.lock.redlock.urls, vec!["redis://127.0.0.1:6379"]);
    }
    assert_eq!(c.lock.policy, crate::lock::LockPolicy::default());
    assert!(!c.sqs.is_configured());
}

#[test]
fn lock_settings_go_to_their_owners() {
    let c = config(&[
        ("INIESTA_LOCK_TIMEOUT", "1m30s"),
        ("INIESTA_LOCK_RETRY_DELAY", "50ms"),
        ("INIESTA_LOCK_FENCING", "true"),
        ("INIESTA_PROCESSED_MARKER", "false"),
        ("INIESTA_PROCESSED_MARKER_TTL", "2days"),
        ("INIESTA_LOCK_FAIL_OPEN", "yes"),
        ("INIESTA_LOCK_LOST", "run-on"),
        ("INIESTA_LOCK_ENABLED", "false"),
    ])
    .unwrap();
    assert!(!c.lock.enabled);
    #[cfg(feature = "redis")]
    {
        assert_eq!(c.lock.redlock.ttl, Some(Duration::from_secs(90)));
        assert_eq!(c.lock.redlock.retry_delay, Duration::from_millis(50));
        assert!(c.lock.redlock.fencing);
    }
    let policy = &c.lock.policy;
    assert!(!policy.processed_marker && policy.fail_open);
    assert_eq!(policy.processed_ttl, Some(Duration::from_secs(2 * 86_400)));
    assert_eq!(policy.on_lock_lost, crate::lock::OnLockLost::RunOn);

    let err = config(&[("INIESTA_LOCK_LOST", "ignore")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("INIESTA_LOCK_LOST") && err.contains("cancel or run-on"),
        "{err}"
    );
    assert!(!c.sqs.is_configured());
}

#[test]
fn out_of_range_values_name_the_variable() {
    let err = config(&[("INIESTA_SQS_RECEIVE_MESSAGE_MAX_NUMBER_OF_MESSAGES", "11")]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("INIESTA_SQS_RECEIVE_MESSAGE_MAX_NUMBER_OF_MESSAGES"),
        "{text}"
    );
    assert!(text.contains("1 to 10"), "{text}");
    let err = config(&[("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", "abc")]).unwrap_err();
    assert!(err.to_string().contains("0 to 20"));
    // The Redlock's settings are read only in a build that has it.
    #[cfg(feature = "redis")]
    {
        let err = config(&[("INIESTA_LOCK_TIMEOUT", "ten")]).unwrap_err();
        assert!(err.to_string().contains("INIESTA_LOCK_TIMEOUT"));
    }
    let err = config(&[("INIESTA_LOG_BODIES", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("true or false"));
}

#[cfg(feature = "redis")]
#[test]
fn redis_urls_are_validated_and_redacted() {
    let c = config(&[("INIESTA_REDIS_URLS", "redis://a:1, rediss://:pw@b:2")]).unwrap();
    assert_eq!(c.lock.redlock.urls, vec!["redis://a:1", "rediss://:pw@b:2"]);
    assert!(!format!("{:?}", c.lock).contains("pw"));
    let err = config(&[("INIESTA_REDIS_URLS", "http://u:secret@a")]).unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn queue_name_comes_from_the_template() {
    let c = config(&[
        ("INIESTA_ENVIRONMENT", "prod"),
        ("INIESTA_SERVICE_NAME", "billing"),
    ])
    .unwrap();
    assert_eq!(c.sqs.resolved_queue_name().unwrap(), "iniesta-prod-billing");
    let c = config(&[
        ("INIESTA_SQS_QUEUE_NAME", "q1"),
        ("INIESTA_ENVIRONMENT", "prod"),
    ])
    .unwrap();
    assert_eq!(c.sqs.resolved_queue_name().unwrap(), "q1");
    let c = config(&[("INIESTA_ENVIRONMENT", "prod")]).unwrap();
    let err = c.sqs.resolved_queue_name().unwrap_err().to_string();
    assert!(err.contains("INIESTA_SERVICE_NAME"), "{err}");
}

#[test]
fn endpoint_falls_back_to_the_aws_variables() {
    let c = config(&[("AWS_ENDPOINT_URL", "http://a")]).unwrap();
    assert_eq!(c.sqs.endpoint_url.as_deref(), Some("http://a"));
    let c = config(&[
        ("AWS_ENDPOINT_URL", "http://a"),
        ("AWS_ENDPOINT_URL_SQS", "http://b"),
    ])
    .unwrap();
    assert_eq!(c.sqs.endpoint_url.as_deref(), Some("http://b"));
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h 5m"), Some(Duration::from_secs(3900)));
    assert_eq!(parse_duration(" 0.25 "), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration(""), None);
    assert_eq!(parse_duration("."), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("-1"), None);
    assert_eq!(parse_duration("5 fortnights"), None);
    assert_eq!(
        parse_duration("99999999999999999999999"),
        None,
        "overflow is an error, not a panic"
    );
}

#[test]
fn durations_beyond_twelve_hours_are_rejected() {
    let c = config(&[("INIESTA_HANDLER_TIMEOUT", "13h")]).unwrap();
    let err = c.consumer.validate().unwrap_err().to_string();
    assert!(
        err.contains("handler_timeout") && err.contains("at most 12h"),
        "{err}"
    );
}

#[test]
fn sns_trust_reads_the_topic_allow_list() {
    let a = "arn:aws:sns:us-east-1:123456789012:orders";
    let b = "arn:aws:sns:eu-west-1:123456789012:users.fifo";
    let c = config(&[("INIESTA_SNS_TOPIC_ARNS", &format!(" {a} ,, {b},"))]).unwrap();
    let trust = &c.sqs.sns_trust;
    assert_eq!(trust.topics().collect::<Vec<_>>(), [b, a]);
    assert!(!trust.verifies_signatures());
    assert_eq!(config(&[]).unwrap().sqs.sns_trust.topics().count(), 0);
    let err = config(&[("INIESTA_SNS_TOPIC_ARNS", &format!("{a},orders"))]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("INIESTA_SNS_TOPIC_ARNS") && text.contains("orders"),
        "{text}"
    );
}

#[test]
fn sns_signature_verification_is_opt_in() {
    let on = config(&[("INIESTA_SNS_VERIFY_SIGNATURES", "true")]);
    #[cfg(feature = "sns-signature")]
    assert!(on.unwrap().sqs.sns_trust.verifies_signatures());
    #[cfg(not(feature = "sns-signature"))]
    assert!(on.unwrap_err().to_string().contains("sns-signature"));
    let off = config(&[("INIESTA_SNS_VERIFY_SIGNATURES", "false")]).unwrap();
    assert!(!off.sqs.sns_trust.verifies_signatures());
    assert!(config(&[("INIESTA_SNS_VERIFY_SIGNATURES", "maybe")]).is_err());
}

#[test]
fn metrics_listener_settings() {
    let off = config(&[]).unwrap();
    assert_eq!(off.ops.metrics_addr, None);
    assert_eq!(off.ops.stall_after, None);
    let on = config(&[
        ("INIESTA_METRICS_ADDR", "0.0.0.0:9464"),
        ("INIESTA_LIVENESS_STALL_AFTER", "2m"),
    ])
    .unwrap();
    assert_eq!(on.ops.metrics_addr, Some("0.0.0.0:9464".parse().unwrap()));
    assert_eq!(on.ops.stall_after, Some(Duration::from_secs(120)));
    let bad = config(&[("INIESTA_METRICS_ADDR", "9464")]).unwrap_err();
    assert!(bad.to_string().contains("INIESTA_METRICS_ADDR"), "{bad}");
}

#[test]
fn dead_letters_are_off_by_default_and_read_when_set() {
    let c = config(&[]).unwrap();
    assert_eq!(c.dead_letter, DeadLetterConfig::default());
    assert_eq!(c.dead_letter.queue_name, None);
    assert_eq!(c.dead_letter.after_receives, None);
    let c = config(&[
        ("INIESTA_DEAD_LETTER_QUEUE_NAME", " orders-dlq "),
        ("INIESTA_DEAD_LETTER_AFTER_RECEIVES", "4"),
    ])
    .unwrap();
    assert_eq!(c.dead_letter.queue_name.as_deref(), Some("orders-dlq"));
    assert_eq!(c.dead_letter.after_receives, Some(4));
    for bad in ["0", "1001", "three", "-1"] {
        let err = config(&[("INIESTA_DEAD_LETTER_AFTER_RECEIVES", bad)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("INIESTA_DEAD_LETTER_AFTER_RECEIVES") && err.contains("1 to 1000"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn the_circuit_breaker_is_off_unless_switched_on() {
    use crate::config::CircuitBreaker;
    assert_eq!(config(&[]).unwrap().consumer.circuit_breaker, None);
    let on = config(&[("INIESTA_CIRCUIT_BREAKER", "on")]).unwrap();
    assert_eq!(on.consumer.circuit_breaker, Some(CircuitBreaker::default()));
    let c = config(&[
        ("INIESTA_CIRCUIT_BREAKER", "5/10"),
        ("INIESTA_CIRCUIT_BREAKER_COOLDOWN", "1m"),
        ("INIESTA_CIRCUIT_BREAKER_MAX_COOLDOWN", "10m"),
        ("INIESTA_CIRCUIT_BREAKER_TRIAL", "3"),
    ])
    .unwrap();
    let breaker = c.consumer.circuit_breaker.unwrap();
    assert_eq!(
        (breaker.threshold, breaker.window, breaker.trial),
        (5, 10, 3)
    );
    assert_eq!(breaker.cooldown, Duration::from_secs(60));
    assert_eq!(breaker.max_cooldown, Duration::from_secs(600));

    let err = config(&[("INIESTA_CIRCUIT_BREAKER", "20/15")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("INIESTA_CIRCUIT_BREAKER") && err.contains("15/20"),
        "{err}"
    );
    let err = config(&[("INIESTA_CIRCUIT_BREAKER_COOLDOWN", "1m")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("the circuit breaker is off"), "{err}");
    let err = config(&[
        ("INIESTA_CIRCUIT_BREAKER", "on"),
        ("INIESTA_CIRCUIT_BREAKER_COOLDOWN", "1h"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("INIESTA_CIRCUIT_BREAKER_COOLDOWN:"), "{err}");
}
