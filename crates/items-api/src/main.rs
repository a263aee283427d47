//! The items API Lambda. Configuration, SDK clients and the credential provider are built once at
//! init; the handler borrows them for every invocation.

use db_credentials::{Config, CredentialProvider, Database, config::LoadedVars};
use items_api::{App, Settings, emf};
use lambda_http::{Error, Request, service_fn};
use std::{convert::Infallible, sync::Arc};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // lambda_runtime's default format and levels, with caps on what dependencies log at TRACE.
    db_credentials::logging::init();
    // One snapshot (environment, plus .env on a developer machine) for every setting.
    let loaded = LoadedVars::load().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let config = Config::from_loaded(&loaded).inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    config.log();
    let settings =
        Settings::from_vars(&loaded.vars).inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let function_name = loaded
        .vars
        .get("AWS_LAMBDA_FUNCTION_NAME")
        .cloned()
        .unwrap_or_else(|| "items-api".to_owned());
    let metrics = emf::install(&function_name);

    let provider = CredentialProvider::new(config).await;
    let eager = settings.eager_init;
    let app = Arc::new(App::new(Database::new(provider, "items-api"), settings));
    if eager {
        app.warm_up().await;
    }
    spawn_shutdown_handler(app.clone());

    lambda_http::run_concurrent(service_fn(move |req: Request| {
        let app = app.clone();
        async move {
            let response = app.handle(req).await;
            if let Some(collector) = metrics {
                emf::flush(collector, std::io::stdout().lock());
            }
            Ok::<_, Infallible>(response)
        }
    }))
    .await
}

/// On SIGTERM (Lambda shutting the environment down) or SIGINT (a developer's Ctrl-C): close every
/// database connection cleanly, then exit. lambda_runtime's `spawn_graceful_shutdown_handler`
/// does the same after registering a no-op extension, but panics at init when the Runtime API has
/// no Extensions API (devstack's stand-in, older emulators); this keeps init infallible.
fn spawn_shutdown_handler(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("could not listen for SIGTERM; connections will not be closed on shutdown");
        return;
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        app.shutdown().await;
        std::process::exit(0);
    });
}
