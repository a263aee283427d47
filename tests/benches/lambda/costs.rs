//! What the rotation contract's unit operations cost in CPU, measured in the harness's own
//! process: one Secrets Manager call, one database login (TLS verify-full + SCRAM), one refused
//! login, one SCRAM verifier. Multiplied by how many of each a rotation makes, they give the
//! CPU floor of a rotation, against which the function's own CPU is read.

use crate::{Ctx, Result, procfs};
use db_credentials::{Credentials, SslMode, TlsSettings, connect};
use devstack::AppDatabase;
use secrecy::SecretString;
use std::{
    future::Future,
    time::{Duration, Instant},
};

/// CPU per operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosts {
    /// One Secrets Manager call (DescribeSecret) through the SDK, to moto over HTTP.
    pub sdk_call: Duration,
    /// One login that succeeds: TCP, TLS handshake (verify-full), SCRAM-SHA-256.
    pub login: Duration,
    /// One login the server refuses (wrong password): the client still computes its SCRAM proof.
    pub refused_login: Duration,
    /// One SCRAM-SHA-256 verifier (4096 PBKDF2 rounds), as setSecret sends.
    pub verifier: Duration,
}

async fn cpu_per<F, Fut>(n: u32, mut op: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    op().await?;
    let me = std::process::id();
    let before = procfs::cpu_time(me).unwrap_or_default();
    for _ in 0..n {
        op().await?;
    }
    let used = procfs::cpu_time(me).unwrap_or_default().saturating_sub(before);
    Ok(used / n)
}

/// Measures each `n` times (after one warm-up).
///
/// # Errors
/// When a call that should succeed fails.
pub async fn measure(ctx: &Ctx, app: &AppDatabase, secret_arn: &str, n: u32) -> Result<UnitCosts> {
    let sm = aws_sdk_secretsmanager::Client::new(&ctx.sdk);
    let sdk_call = cpu_per(n, || async {
        sm.describe_secret().secret_id(secret_arn).send().await?;
        Ok(())
    })
    .await?;
    let creds = |password: &str| {
        Credentials::new(
            &app.role,
            SecretString::from(password.to_owned()),
            ctx.stack.postgres.host(),
            ctx.stack.postgres.port(),
            &app.dbname,
            TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some(ctx.stack.postgres.ca_cert()),
            },
        )
    };
    let good = creds(&app.password);
    let login = cpu_per(n, || async {
        let conn = connect(&good, Duration::from_secs(5), "bench-costs").await?;
        drop(conn);
        Ok(())
    })
    .await?;
    let bad = creds("not-the-password");
    let refused_login = cpu_per(n, || async {
        match connect(&bad, Duration::from_secs(5), "bench-costs").await {
            Err(e) if e.is_auth() => Ok(()),
            Err(e) => Err(e.into()),
            Ok(_) => Err("a wrong password logged in".into()),
        }
    })
    .await?;
    let started = Instant::now();
    for i in 0..n {
        std::hint::black_box(devstack::postgres::verifier(&format!("bench-password-{i}")));
    }
    let verifier = started.elapsed() / n;
    Ok(UnitCosts {
        sdk_call,
        login,
        refused_login,
        verifier,
    })
}
