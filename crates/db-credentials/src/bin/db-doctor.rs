//! `db-doctor`: resolves database credentials exactly as the items API does, then checks every
//! stage from configuration to a query and says what to do about the first one that fails.
//! Never prints a password. Exit status 0 when everything passes (with or without warnings, such
//! as an over-privileged user), 1 otherwise, 2 for a bad flag.
//!
//! Reads the same environment variables as the items API (DB_SECRET_ARN, DB_SSLMODE, …). One flag,
//! so no argument-parsing crate: it would be compiled into every Lambda build of this package.

use db_credentials::{Config, doctor};

const USAGE: &str = "usage: db-doctor [--json]\n\nDiagnose database access: configuration, AWS, the secret, DNS, TCP, TLS, login, a query.\nReads the items API's environment variables (DB_SECRET_ARN, DB_SSLMODE, ...).\n\n  --json      print the report as JSON\n  --version   print the version\n";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut json = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return;
            }
            "-V" | "--version" => {
                println!("db-doctor {}", env!("CARGO_PKG_VERSION"));
                return;
            }
            other => {
                eprint!("db-doctor: unknown argument {other:?}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let report = doctor::diagnose(Config::from_env(), None).await;
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("cannot encode the report: {e}"),
        }
    } else {
        print!("{}", report.to_text());
    }
    std::process::exit(if report.ok { 0 } else { 1 });
}
