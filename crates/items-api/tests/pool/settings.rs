//! The pool's size and lifetime from the environment.

use items_api::Settings;
use std::time::Duration;

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
    let vars = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Settings::from_vars(&vars).map_err(|e| e.to_string())
}

#[test]
fn the_pool_is_sized_from_db_pool_size_else_max_concurrency_else_one() {
    assert_eq!(settings(&[]).unwrap().pool.size, 1, "classic Lambda: one connection");
    assert_eq!(settings(&[("AWS_LAMBDA_MAX_CONCURRENCY", "8")]).unwrap().pool.size, 8);
    assert_eq!(
        settings(&[("AWS_LAMBDA_MAX_CONCURRENCY", "16"), ("DB_POOL_SIZE", "4")])
            .unwrap()
            .pool
            .size,
        4
    );
}

#[test]
fn the_lifetime_defaults_to_fifteen_minutes() {
    assert_eq!(settings(&[]).unwrap().pool.max_lifetime, Duration::from_secs(900));
    assert_eq!(
        settings(&[("DB_MAX_LIFETIME_SECS", "60")]).unwrap().pool.max_lifetime,
        Duration::from_secs(60)
    );
}

#[test]
fn bad_values_are_errors_naming_the_variable() {
    for (var, value) in [
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_SIZE", "eight"),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "-1"),
        ("DB_MAX_LIFETIME_SECS", "0"),
        ("DB_MAX_LIFETIME_SECS", "15m"),
    ] {
        let e = settings(&[(var, value)]).expect_err(var);
        assert!(e.contains(var), "{var}={value}: {e}");
    }
}

#[test]
fn only_provisioned_concurrency_opens_a_connection_during_init() {
    assert!(
        settings(&[("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")])
            .unwrap()
            .eager_init
    );
    for other in ["on-demand", "snap-start", ""] {
        assert!(
            !settings(&[("AWS_LAMBDA_INITIALIZATION_TYPE", other)])
                .unwrap()
                .eager_init,
            "{other}"
        );
    }
    assert!(!settings(&[]).unwrap().eager_init);
}
