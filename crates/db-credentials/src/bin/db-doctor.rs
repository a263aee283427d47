//! `db-doctor`: resolves database credentials exactly as the items API does, then checks every
//! stage from configuration to a query and says what to do about the first one that fails.
//! Never prints a password. Exit status 0 when everything passes, 1 otherwise.

use clap::Parser;
use db_credentials::{Config, doctor};

/// Diagnose database access: configuration, AWS, the secret, DNS, TCP, TLS, login, a query.
///
/// Reads the same environment variables as the items API (DB_SECRET_ARN, DB_SSLMODE, …).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let report = doctor::diagnose(Config::from_env(), None).await;
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("cannot encode the report: {e}"),
        }
    } else {
        print!("{}", report.to_text());
    }
    std::process::exit(if report.ok { 0 } else { 1 });
}
