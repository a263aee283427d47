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
    register_for_sigterm().await;

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
/// does the same, with [`register_for_sigterm`]'s extension, but panics at init when the Runtime
/// API has no Extensions API (devstack's stand-in, older emulators); this keeps init infallible.
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

/// Lambda sends SIGTERM at shutdown only to a function with an extension registered: register a
/// no-op internal extension (no events) and park its `next` call, as lambda_runtime's helper does.
/// Must run before the runtime's first poll (the end of init). Where the Runtime API has no
/// Extensions API the registration fails, is logged, and the function runs on without it.
async fn register_for_sigterm() {
    use lambda_runtime_api_client::{Client, body::Body, build_request};
    const NAME: &str = "items-api-graceful-shutdown";
    let Ok(client) = Client::builder().build() else { return };
    let register = build_request()
        .method("POST")
        .uri("/2020-01-01/extension/register")
        .header("Lambda-Extension-Name", NAME)
        .body(Body::from(&br#"{"events":[]}"#[..]));
    let Ok(register) = register else { return };
    // Bounded: a Runtime API that does not answer must not hold init.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(2), client.call(register)).await;
    let id = match answer.unwrap_or_else(|_| Err("no answer within 2 s".into())) {
        Ok(resp) if resp.status().is_success() => resp
            .headers()
            .get("Lambda-Extension-Identifier")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Ok(resp) => {
            tracing::info!(
                status = resp.status().as_u16(),
                "no Extensions API here; SIGTERM may not be sent at shutdown"
            );
            return;
        }
        Err(e) => {
            tracing::info!(error = %e, "no Extensions API here; SIGTERM may not be sent at shutdown");
            return;
        }
    };
    let Some(id) = id else { return };
    let next = build_request()
        .method("GET")
        .uri("/2020-01-01/extension/event/next")
        .header("Lambda-Extension-Identifier", id)
        .body(Body::empty());
    let Ok(next) = next else { return };
    // Subscribed to nothing, so this waits for the environment's end; it must be sent for init to
    // complete.
    tokio::spawn(async move {
        let _ = client.call(next).await;
    });
}
