//! The function: state built once (configuration, clients), then one [`Rotator::handle`] per
//! invocation, bounded in time and logged with secret, step, token, user, host and duration.

use crate::{
    config::Config,
    db::{Logins, PgLogins},
    error::{Error, StepError},
    event::RotationEvent,
    failpoint::Failpoints,
    secrets::SecretsApi,
    steps::{Ctx, Outcome},
};
use aws_config::SdkConfig;
use db_credentials::{
    rds::{RdsApi, RdsEndpoints},
    secrets_manager::SdkSecrets,
};
use std::{
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};
use tracing::{Instrument, field::Empty};

/// Time kept back from the Lambda deadline so a step that runs out of time can still report why.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// The rotation function over a [`SecretsApi`], [`Logins`] and an [`RdsEndpoints`].
#[derive(Debug)]
pub struct Rotator<S, L, R> {
    pub(crate) config: Config,
    pub(crate) secrets: S,
    pub(crate) logins: L,
    pub(crate) rds: R,
    pub(crate) failpoints: Failpoints,
}

/// The production function: AWS SDK, Postgres, RDS API.
pub type AwsRotator = Rotator<SdkSecrets, PgLogins, RdsApi>;

impl AwsRotator {
    /// Clients from one SDK configuration. `SECRETS_MANAGER_ENDPOINT`, when set, overrides the
    /// Secrets Manager endpoint as in AWS's templates.
    pub fn from_sdk(config: Config, sdk: &SdkConfig) -> Self {
        let mut sm = aws_sdk_secretsmanager::config::Builder::from(sdk);
        if let Some(endpoint) = &config.secrets_manager_endpoint {
            sm = sm.endpoint_url(endpoint);
        }
        let secrets = SdkSecrets::new(aws_sdk_secretsmanager::Client::from_conf(sm.build()));
        Self::new(config, secrets, PgLogins, RdsApi::new(sdk))
    }
}

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Rotator<S, L, R> {
    /// A function with these parts. An armed `config.failpoint` fires only in builds with the
    /// `failpoints` feature.
    pub fn new(config: Config, secrets: S, logins: L, rds: R) -> Self {
        let failpoints = Failpoints::new(config.failpoint);
        Self {
            config,
            secrets,
            logins,
            rds,
            failpoints,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Secrets Manager side.
    pub fn secrets(&self) -> &S {
        &self.secrets
    }

    /// The failpoints, to arm one from an in-process test (`failpoints` feature).
    pub fn failpoints(&self) -> &Failpoints {
        &self.failpoints
    }

    /// Runs one step from the JSON the service sends, within `ROTATION_STEP_TIMEOUT_MS`.
    ///
    /// # Errors
    /// [`StepError`] naming step, secret and token.
    pub async fn handle_json(&self, payload: &serde_json::Value) -> Result<Outcome, StepError> {
        let event = RotationEvent::from_json(payload).map_err(|e| StepError {
            step: None,
            secret: String::new(),
            token: String::new(),
            error: e.into(),
        })?;
        self.handle(&event, None).await
    }

    /// Runs one step. The step's budget is `ROTATION_STEP_TIMEOUT_MS`, lowered to the Lambda
    /// `deadline` (minus [`DEADLINE_MARGIN`]) when one is given; every login gets at most what is
    /// left of it.
    ///
    /// # Errors
    /// [`StepError`] naming step, secret and token.
    pub async fn handle(&self, event: &RotationEvent, deadline: Option<SystemTime>) -> Result<Outcome, StepError> {
        let budget = self.budget(deadline);
        let span = tracing::info_span!(
            "rotation",
            secret = %event.secret_id,
            secret_arn = Empty,
            step = event.step.as_str(),
            token = %event.token,
            strategy = self.config.strategy.as_str(),
            user = Empty,
            host = Empty,
        );
        async {
            let started = Instant::now();
            let result = self.run(event, budget).await;
            let duration_ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok(outcome) => tracing::info!(outcome = outcome.as_str(), duration_ms, "step finished"),
                Err(e) => tracing::error!(error = %e, duration_ms, "step failed"),
            }
            result.map_err(|error| StepError {
                step: Some(event.step),
                secret: event.secret_id.clone(),
                token: event.token.clone(),
                error,
            })
        }
        .instrument(span)
        .await
    }

    pub(crate) fn budget(&self, deadline: Option<SystemTime>) -> Duration {
        // A deadline already past when the invocation starts is not one Lambda would send: it is
        // an emulator's placeholder (`cargo lambda watch` sends Lambda-Runtime-Deadline-Ms: 600000,
        // ten minutes after 1970), and honouring it would cut every step to the 1 s floor below.
        let now = SystemTime::now();
        let from_deadline = deadline.filter(|d| *d > now).map(|d| {
            d.duration_since(now)
                .unwrap_or_default()
                .saturating_sub(DEADLINE_MARGIN)
        });
        match from_deadline {
            // A deadline already (nearly) past would fail the step before it starts; Lambda will
            // stop us at the deadline anyway.
            Some(left) => self.config.step_timeout.min(left.max(Duration::from_secs(1))),
            None => self.config.step_timeout,
        }
    }

    /// The context every event runs in: this function's clients and settings, `event`, and a
    /// deadline `budget` from now.
    pub(crate) fn ctx<'a>(&'a self, event: &'a RotationEvent, budget: Duration) -> Ctx<'a, S, L, R> {
        Ctx {
            config: &self.config,
            secrets: &self.secrets,
            logins: &self.logins,
            rds: &self.rds,
            failpoints: &self.failpoints,
            event,
            deadline: Instant::now() + budget,
            progress: Mutex::new("start"),
        }
    }

    async fn run(&self, event: &RotationEvent, budget: Duration) -> Result<Outcome, Error> {
        let cx = self.ctx(event, budget);
        match tokio::time::timeout(budget, cx.run()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                budget_ms: budget.as_millis(),
                doing: cx.progress(),
            }),
        }
    }
}
