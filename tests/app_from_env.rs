//! `iniesta::run()` configuration: fails fast, naming what is missing or wrong.

use std::collections::HashMap;

use iniesta::App;
use iniesta::config::Config;

fn config(vars: &[(&str, &str)]) -> Result<Config, iniesta::Error> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(move |name| map.get(name).cloned())
}

#[tokio::test]
async fn without_a_queue_run_lists_the_variables() {
    let err = App::from_config(config(&[]).unwrap())
        .await
        .unwrap_err()
        .to_string();
    for variable in [
        "INIESTA_SQS_QUEUE_URL",
        "INIESTA_SQS_QUEUE_NAME",
        "INIESTA_ENVIRONMENT",
        "INIESTA_SERVICE_NAME",
    ] {
        assert!(err.contains(variable), "{err}");
    }
}

#[test]
fn a_bad_value_names_the_variable_and_what_it_takes() {
    let err = config(&[("INIESTA_CONCURRENCY", "lots")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("INIESTA_CONCURRENCY"), "{err}");
    assert!(err.contains("whole number"), "{err}");
    let err = config(&[("INIESTA_HEARTBEAT_FRACTION", "0.95")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("0.1 to 0.9"), "{err}");
}
