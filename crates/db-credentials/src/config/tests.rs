use super::*;
use crate::tls::TlsError;
use secrecy::ExposeSecret;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn no_source_lists_every_variable_it_looked_for() {
    let msg = Config::from_vars(&vars(&[])).unwrap_err().to_string();
    for var in [
        "DB_SECRET_ARN",
        "DB_SECRET_ID",
        "DB_SSM_PREFIX",
        "DB_IAM_AUTH",
        "DATABASE_URL",
        "DATABASE_HOST",
    ] {
        assert!(msg.contains(var), "{msg} should mention {var}");
    }
    assert!(msg.contains("DATABASE_PASSWORD") && msg.contains("DB_PASSWORD"));
}

#[test]
fn auto_takes_the_first_configured_source_and_reports_the_rest() {
    let c = Config::from_vars(&vars(&[
        ("DATABASE_URL", "postgres://u:p@h/db"),
        ("DB_SSM_PREFIX", "/app/"),
        ("DB_SECRET_ARN", "arn:s"),
        ("DATABASE_PASSWORD", "pw"),
        ("DATABASE_HOST", "h"),
    ]))
    .unwrap();
    assert_eq!(c.source.kind(), SourceKind::SecretsManager);
    assert_eq!(
        c.ignored_sources,
        vec![SourceKind::Ssm, SourceKind::Url, SourceKind::Env]
    );
    assert_eq!(
        c.overrides.host.as_deref(),
        Some("h"),
        "discrete vars still override the secret"
    );
}

#[test]
fn forced_source_wins_and_must_be_configured() {
    let c = Config::from_vars(&vars(&[
        ("DB_SECRET_ARN", "arn:s"),
        ("DATABASE_URL", "postgres://u:p@h/db"),
        ("DB_CREDENTIALS_SOURCE", "url"),
    ]))
    .unwrap();
    assert_eq!(c.source.kind(), SourceKind::Url);
    let err = Config::from_vars(&vars(&[("DB_SECRET_ARN", "arn:s"), ("DB_CREDENTIALS_SOURCE", "ssm")])).unwrap_err();
    assert!(err.to_string().contains("DB_SSM_PREFIX"), "{err}");
    let err = Config::from_vars(&vars(&[("DB_SECRET_ARN", "a"), ("DB_CREDENTIALS_SOURCE", "vault")])).unwrap_err();
    assert!(err.to_string().contains("DB_CREDENTIALS_SOURCE"), "{err}");
}

#[test]
fn secret_id_is_an_alias_and_conflicts_are_refused() {
    let c = Config::from_vars(&vars(&[("DB_SECRET_ID", "app/db")])).unwrap();
    assert!(matches!(c.source, SourceConfig::SecretsManager { ref secret_id } if secret_id == "app/db"));
    let err = Config::from_vars(&vars(&[("DB_SECRET_ID", "a"), ("DB_SECRET_ARN", "b")])).unwrap_err();
    assert!(matches!(err, ConfigError::SecretIdConflict { .. }));
}

#[test]
fn both_password_variables_must_agree_and_are_never_echoed() {
    let base = [("DATABASE_HOST", "h"), ("DATABASE_USER", "u")];
    let mut v = vars(&base);
    v.insert("DATABASE_PASSWORD".into(), "s3cret-one".into());
    v.insert("DB_PASSWORD".into(), "s3cret-two".into());
    let msg = Config::from_vars(&v).unwrap_err().to_string();
    assert!(
        msg.contains("DATABASE_PASSWORD") && msg.contains("DB_PASSWORD"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret"), "{msg}");
    v.insert("DB_PASSWORD".into(), "s3cret-one".into());
    assert!(Config::from_vars(&v).is_ok(), "equal values are fine");
    v.remove("DATABASE_PASSWORD");
    let c = Config::from_vars(&v).unwrap();
    let SourceConfig::Env(creds) = c.source else {
        panic!("env source expected")
    };
    assert_eq!(
        creds.password.expose_secret(),
        "s3cret-one",
        "the older DB_PASSWORD alone works"
    );
}

#[test]
fn env_source_names_missing_variables() {
    let msg = Config::from_vars(&vars(&[("DB_PASSWORD", "pw")]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("DATABASE_HOST") && msg.contains("DATABASE_USER"), "{msg}");
}

#[test]
fn iam_needs_host_and_user() {
    let msg = Config::from_vars(&vars(&[("DB_IAM_AUTH", "true"), ("DATABASE_HOST", "h")]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("DATABASE_USER"), "{msg}");
    let c = Config::from_vars(&vars(&[
        ("DB_IAM_AUTH", "1"),
        ("DATABASE_HOST", "h"),
        ("DATABASE_USER", "u"),
    ]));
    assert!(matches!(c.unwrap().source, SourceConfig::Iam { ref user, port: 5432, .. } if user == "u"));
    let err = Config::from_vars(&vars(&[("DB_IAM_AUTH", "maybe")])).unwrap_err();
    assert!(err.to_string().contains("DB_IAM_AUTH"));
}

#[test]
fn database_url_is_decoded_and_never_echoed() {
    let c = Config::from_vars(&vars(&[(
        "DATABASE_URL",
        "postgresql://app%40corp:p%40ss%3Aw%2Fd@db.example.com:6543/items%20db?sslmode=verify-full&sslrootcert=/ca.pem",
    )]))
    .unwrap();
    let SourceConfig::Url(credentials) = c.source else {
        panic!("url expected")
    };
    let (ssl_mode, ssl_root_cert) = (c.tls.ssl_mode, c.tls.ssl_root_cert);
    assert_eq!(credentials.user, "app@corp");
    assert_eq!(credentials.password.expose_secret(), "p@ss:w/d");
    assert_eq!(credentials.host, "db.example.com");
    assert_eq!(credentials.port, 6543);
    assert_eq!(credentials.dbname, "items db");
    assert_eq!(ssl_mode, Some(SslMode::VerifyFull));
    assert_eq!(ssl_root_cert, Some(PathBuf::from("/ca.pem")));

    for bad in [
        "mysql://u:topsecret@h/db",
        "postgres://u:topsecret@h/db?options=x",
        "postgres://:topsecret@h/",
    ] {
        let msg = Config::from_vars(&vars(&[("DATABASE_URL", bad)]))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("DATABASE_URL"), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");
    }
}

#[test]
fn numbers_and_modes_are_validated() {
    let base = [("DB_SECRET_ARN", "a")];
    for (var, val) in [
        ("DB_SECRET_TTL_SECS", "ten"),
        ("DB_SECRET_TTL_SECS", "100000"),
        ("DB_CONNECT_TIMEOUT_MS", "5"),
        ("DB_SSLMODE", "allow"),
        ("DATABASE_PORT", "0"),
        ("ENVIRONMENT", "prod"),
    ] {
        let mut v = vars(&base);
        v.insert(var.into(), val.into());
        let msg = Config::from_vars(&v).unwrap_err().to_string();
        assert!(msg.contains(var), "{var}={val}: {msg}");
    }
    let mut v = vars(&base);
    v.insert("DB_SECRET_TTL_SECS".into(), "0".into());
    v.insert("DB_CONNECT_TIMEOUT_MS".into(), "250".into());
    let c = Config::from_vars(&v).unwrap();
    assert_eq!(c.secret_ttl, Duration::ZERO);
    assert_eq!(c.connect_timeout, Duration::from_millis(250));
    assert_eq!(Config::from_vars(&vars(&base)).unwrap().secret_ttl, DEFAULT_SECRET_TTL);
}

#[test]
fn production_refuses_plaintext_sslmode_up_front() {
    for mode in ["disable", "prefer"] {
        let v = vars(&[
            ("DB_SECRET_ARN", "a"),
            ("ENVIRONMENT", "production"),
            ("DB_SSLMODE", mode),
        ]);
        assert!(
            matches!(
                Config::from_vars(&v),
                Err(ConfigError::Tls(TlsError::PlaintextInProduction { .. }))
            ),
            "{mode}"
        );
    }
}

#[test]
fn ssm_path_prefix_gets_a_trailing_slash() {
    let c = Config::from_vars(&vars(&[("DB_SSM_PREFIX", "/app/prod")])).unwrap();
    assert!(matches!(c.source, SourceConfig::Ssm { ref prefix } if prefix == "/app/prod/"));
    let c = Config::from_vars(&vars(&[("DB_SSM_PREFIX", "app-prod-")])).unwrap();
    assert!(matches!(c.source, SourceConfig::Ssm { ref prefix } if prefix == "app-prod-"));
}

#[test]
fn likely_typos_are_reported() {
    let c = Config::from_vars(&vars(&[("DB_SECRET_ARN", "a"), ("DB_SECRET_TLL_SECS", "5")])).unwrap();
    assert_eq!(c.unknown_vars, vec!["DB_SECRET_TLL_SECS".to_owned()]);
}

#[test]
fn booleans_parse_like_aws_templates() {
    for t in ["true", "TRUE", "1", "y", "Yes", " yes "] {
        assert!(parse_bool("DB_IAM_AUTH", t).unwrap(), "{t}");
    }
    for f in ["false", "0", "n", "NO", ""] {
        assert!(!parse_bool("DB_IAM_AUTH", f).unwrap(), "{f}");
    }
    let err = parse_bool("DB_IAM_AUTH", "treu").unwrap_err().to_string();
    assert!(err.contains("DB_IAM_AUTH") && err.contains("treu"), "{err}");
    assert!(bool_var(&Vars::new(), "X", true).unwrap());
    assert!(!bool_var(&vars(&[("X", "")]), "X", true).unwrap());
}

#[test]
fn numbers_name_their_unit_and_range() {
    let v = vars(&[("A_MS", " 250 "), ("B_MS", "5s"), ("C_MS", "")]);
    assert_eq!(
        millis_var(&v, "A_MS", 100, 1000).unwrap(),
        Some(Duration::from_millis(250))
    );
    assert_eq!(millis_var(&v, "C_MS", 100, 1000).unwrap(), None);
    assert_eq!(millis_var(&v, "D_MS", 100, 1000).unwrap(), None);
    let err = millis_var(&v, "B_MS", 100, 1000).unwrap_err().to_string();
    assert_eq!(
        err,
        r#"B_MS must be a whole number of milliseconds from 100 to 1000, got "5s""#
    );
    let err = number_var(&v, "A_MS", "seconds", 0, 10).unwrap_err().to_string();
    assert!(err.contains("from 0 to 10"), "{err}");
}

#[test]
fn tls_env_is_read_once_for_every_function() {
    assert_eq!(TlsEnv::from_vars(&Vars::new()).unwrap(), TlsEnv::default());
    let t = TlsEnv::from_vars(&vars(&[
        ("ENVIRONMENT", "Production"),
        ("DB_SSLMODE", "verify-full"),
        ("DB_SSL_ROOT_CERT", "/opt/rds.pem"),
    ]))
    .unwrap();
    assert_eq!(t.environment, Environment::Production);
    assert_eq!(t.ssl_mode, Some(SslMode::VerifyFull));
    assert_eq!(t.ssl_root_cert, Some(PathBuf::from("/opt/rds.pem")));
    let err = TlsEnv::from_vars(&vars(&[("ENVIRONMENT", "production"), ("DB_SSLMODE", "prefer")])).unwrap_err();
    assert!(
        matches!(err, ConfigError::Tls(TlsError::PlaintextInProduction { .. })),
        "{err}"
    );
}

#[test]
fn database_user_beside_a_secret_is_refused_naming_both() {
    // With alternating users the secret's user changes at every rotation (app, app_clone, app...):
    // an override would pair one user with the other's password, and every version would be
    // refused (design §4).
    for (source, var, value) in [
        (
            "secretsmanager",
            "DB_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:1:secret:app",
        ),
        ("ssm", "DB_SSM_PREFIX", "/app/"),
    ] {
        let err = Config::from_vars(&vars(&[(var, value), ("DATABASE_USER", "app")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("DATABASE_USER") && msg.contains(var) && msg.contains(source),
            "{source}: {msg}"
        );
    }
    // Host, port and database still override a secret's.
    let c = Config::from_vars(&vars(&[
        ("DB_SECRET_ARN", "arn:s"),
        ("DATABASE_HOST", "proxy.internal"),
        ("DATABASE_PORT", "6432"),
        ("DATABASE_NAME", "items"),
    ]))
    .unwrap();
    assert_eq!(c.overrides.host.as_deref(), Some("proxy.internal"));
    assert_eq!(c.overrides.port, Some(6432));
    assert_eq!(c.overrides.dbname.as_deref(), Some("items"));
    // The sources whose user is DATABASE_USER keep it.
    let c = Config::from_vars(&vars(&[
        ("DB_IAM_AUTH", "true"),
        ("DATABASE_HOST", "h"),
        ("DATABASE_USER", "u"),
    ]));
    assert!(c.is_ok(), "{c:?}");
}

/// `DATABASE_URL` read as libpq reads a connection URI
/// (<https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS>): what each
/// case means to libpq, and that we either understand it the same way or refuse it by name.
#[test]
fn database_url_means_what_it_means_to_libpq() {
    struct Case {
        url: &'static str,
        /// (host, port, dbname, user, password), or the start of the refusal.
        expect: Result<(&'static str, u16, &'static str, &'static str, &'static str), &'static str>,
        why: &'static str,
    }
    let ok = |h, p, d, u, pw| Ok((h, p, d, u, pw));
    let cases = [
        Case {
            url: "postgres://app:pw@db:5433/items",
            expect: ok("db", 5433, "items", "app", "pw"),
            why: "every part",
        },
        Case {
            url: "postgresql://app:pw@db/items",
            expect: ok("db", 5432, "items", "app", "pw"),
            why: "port defaults to 5432",
        },
        Case {
            url: "postgres://app:pw@db",
            expect: ok("db", 5432, "app", "app", "pw"),
            why: "dbname defaults to the user name",
        },
        Case {
            url: "postgres://app:pw@db/",
            expect: ok("db", 5432, "app", "app", "pw"),
            why: "an empty path is no dbname",
        },
        Case {
            url: "postgres://app%40corp:p%2Bw%40x@db/my%20db",
            expect: ok("db", 5432, "my db", "app@corp", "p+w@x"),
            why: "percent-decoding",
        },
        Case {
            url: "postgres://app:p+w@db/d+b",
            expect: ok("db", 5432, "d+b", "app", "p+w"),
            why: "+ is a plus, not a space",
        },
        Case {
            url: "postgres://app:pw@[::1]:6000/d",
            expect: ok("::1", 6000, "d", "app", "pw"),
            why: "IPv6 literal",
        },
        Case {
            url: "postgres://app:pw@h1:5432,h2:5432/d",
            expect: Err("DATABASE_URL is not a usable"),
            why: "several hosts: refused",
        },
        Case {
            url: "postgres://app:pw@%2Fvar%2Frun%2Fpostgresql/d",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: a Unix-domain socket"),
            why: "socket directory: refused",
        },
        Case {
            url: "postgres://app:pw@/d",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: it has no host"),
            why: "no host means a local socket to libpq: refused",
        },
        Case {
            url: "postgres://app:pw@db/d?options=-c%20search_path%3Dx",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: parameter options"),
            why: "options: refused by name",
        },
        Case {
            url: "postgres://app:pw@db/d?sslmode=allow",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: sslmode=allow"),
            why: "allow tries plaintext first: refused",
        },
        Case {
            url: "postgres://app:pw@db/d?target_session_attrs=standby",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: target_session_attrs=standby"),
            why: "a standby cannot take writes",
        },
        Case {
            url: "postgres://app:pw@db/d?connect_timeout=0",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: connect_timeout=0"),
            why: "0 waits forever in libpq",
        },
        Case {
            url: "postgres://app:pw@db/d?connect_timeout=ten",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: connect_timeout"),
            why: "not an integer",
        },
        Case {
            url: "postgres://app:pw@db/d?sslcert=/c.pem",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: parameter sslcert"),
            why: "client certificates: refused by name",
        },
        Case {
            url: "postgres://app:pw@db/d?sslmode=require&sslmode=disable",
            expect: Err("DATABASE_URL is not a usable postgres:// URL: parameter sslmode is given more than once"),
            why: "duplicates",
        },
    ];
    for case in cases {
        let got = Config::from_vars(&vars(&[("DATABASE_URL", case.url)]));
        match (got, case.expect) {
            (Ok(c), Ok((host, port, dbname, user, password))) => {
                let SourceConfig::Url(s) = c.source else {
                    panic!("{}: url source", case.why)
                };
                assert_eq!(
                    (
                        s.host.as_str(),
                        s.port,
                        s.dbname.as_str(),
                        s.user.as_str(),
                        s.password.expose_secret()
                    ),
                    (host, port, dbname, user, password),
                    "{}: {}",
                    case.why,
                    case.url
                );
            }
            (Err(e), Err(start)) => {
                let msg = e.to_string();
                assert!(msg.starts_with(start), "{}: {msg}", case.why);
                assert!(!msg.contains("pw"), "{}: the password leaked: {msg}", case.why);
            }
            (got, want) => panic!(
                "{} ({}): got {:?}, want {want:?}",
                case.why,
                case.url,
                got.map(|c| c.source)
            ),
        }
    }
}

#[test]
fn database_url_parameters_are_understood() {
    let c = Config::from_vars(&vars(&[(
        "DATABASE_URL",
        "postgres://app:pw@db/d?connect_timeout=7&application_name=batch+job&target_session_attrs=read-write&sslmode=verify-full&sslrootcert=system",
    )]))
    .unwrap();
    assert_eq!(c.connect_timeout, Duration::from_secs(7), "seconds, as libpq");
    assert_eq!(c.application_name.as_deref(), Some("batch+job"));
    assert_eq!(c.target_session_attrs, crate::SessionTarget::ReadWrite);
    assert_eq!(c.tls.ssl_root_cert, Some(PathBuf::from("system")));
    // libpq: "a value of 1 is interpreted as 2"; `primary` also means a writer to an API that writes.
    let c = Config::from_vars(&vars(&[(
        "DATABASE_URL",
        "postgres://app:pw@db/d?connect_timeout=1&target_session_attrs=primary",
    )]))
    .unwrap();
    assert_eq!(c.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.target_session_attrs, crate::SessionTarget::ReadWrite);
    let c = Config::from_vars(&vars(&[(
        "DATABASE_URL",
        "postgres://app:pw@db/d?target_session_attrs=any",
    )]))
    .unwrap();
    assert_eq!(c.target_session_attrs, crate::SessionTarget::Any);
    assert_eq!(c.application_name, None);
    // sslrootcert=system with verify-ca: refused, as libpq 16+ does.
    let err = Config::from_vars(&vars(&[(
        "DATABASE_URL",
        "postgres://app:pw@db/d?sslmode=verify-ca&sslrootcert=system",
    )]))
    .unwrap_err();
    assert!(err.to_string().contains("verify-full"), "{err}");
}
