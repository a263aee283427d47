//! `devstack`: the local stack for people. `make run` and `make rotate` call it.

use clap::{Parser, Subcommand};
use devstack::{Stack, StackOptions};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Local Postgres + moto for the items API and the rotation function")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Postgres and moto, create the app role, database and secret, write the environment
    /// file, and run until interrupted.
    Up {
        /// Where to write the environment for the Lambdas.
        #[arg(long, default_value = ".devstack/env")]
        env_file: PathBuf,
    },
    /// Start a stack, print its PIDs and directories, and exit without cleaning up (tests prove
    /// the guardians stop everything anyway).
    #[command(hide = true)]
    Abandon,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up { env_file } => up(&env_file).await,
        Command::Abandon => abandon(),
    };
    if let Err(e) = result {
        eprintln!("devstack: {e}");
        std::process::exit(1);
    }
}

async fn up(env_file: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let stack = Stack::start(&StackOptions::default())?;
    let app = stack.create_app("app").await?;
    let arn = stack.create_secret("items-api/db", &stack.secret_json(&app)).await?;
    write_env(env_file, &stack.lambda_env(&arn))?;
    println!(
        "Postgres  127.0.0.1:{} (TLS, SCRAM), log {}",
        stack.postgres.port(),
        stack.postgres.log_path().display()
    );
    println!("moto      {}", stack.moto.endpoint());
    println!("secret    {arn} (user {})", app.role);
    println!("env       {}", env_file.display());
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    drop(stack);
    Ok(())
}

fn write_env(path: &std::path::Path, env: &[(String, String)]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(path, text)
}

fn abandon() -> Result<(), Box<dyn std::error::Error>> {
    let stack = Stack::start(&StackOptions::default())?;
    println!("postgres_pid={}", stack.postgres.pid().unwrap_or_default());
    println!(
        "postgres_dir={}",
        stack
            .postgres
            .data_dir()
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("moto_pid={}", stack.moto.pid());
    // Leave without dropping anything, like a test binary whose stack lives in a static.
    std::mem::forget(stack);
    std::process::exit(0);
}
