//! Plays the Secrets Manager service rotating a secret (design §9).
//!
//! AWS's rotation starts with RotateSecret, which creates an `AWSPENDING` version *without a
//! value* whose id is the token, then invokes the function once per step with that token, then
//! removes `AWSPENDING` itself. moto only creates that placeholder when RotateSecret names a
//! Lambda function it knows, and it would try to run that function in Docker. So the driver
//! switches moto's Lambda backend off Docker, registers a stub function, and passes its ARN: moto
//! makes the placeholder exactly as AWS does, its "invocation" of the stub does nothing, and the
//! driver runs the real steps through a [`StepRunner`]. The cleanup after finishSecret is
//! mandatory with moto: its "rotation in progress" check refuses the next RotateSecret while
//! `AWSPENDING` sits on the current version.

use crate::{DevstackError, moto::MotoEndpoint};
use aws_sdk_secretsmanager::{Client, error::DisplayErrorContext};
use std::{
    future::Future,
    time::{Duration, Instant},
};

/// Name of the stub function registered in moto.
pub const STUB_FUNCTION: &str = "rotation-stub";

/// A rotation step, as the service names it in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// createSecret.
    Create,
    /// setSecret.
    Set,
    /// testSecret.
    Test,
    /// finishSecret.
    Finish,
}

impl Step {
    /// All four, in order.
    pub const ALL: [Step; 4] = [Step::Create, Step::Set, Step::Test, Step::Finish];

    /// The event's `Step` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }
}

/// One invocation of the rotation function.
#[derive(Debug, Clone)]
pub struct RotationEvent {
    /// Secret ARN or name.
    pub secret_id: String,
    /// The rotation's token (the pending version id).
    pub token: String,
    /// The step.
    pub step: Step,
    /// The `RotationToken` the service sends for cross-account and assumed-role rotation; the
    /// function passes it to PutSecretValue and must never log it.
    pub rotation_token: Option<String>,
}

impl RotationEvent {
    /// The JSON payload Secrets Manager sends.
    pub fn payload(&self) -> serde_json::Value {
        let mut payload = serde_json::json!({"SecretId": self.secret_id, "ClientRequestToken": self.token, "Step": self.step.as_str()});
        if let Some(t) = &self.rotation_token {
            payload["RotationToken"] = t.clone().into();
        }
        payload
    }
}

/// Runs one step: in process, through `cargo lambda watch`'s Invoke API, or `cargo lambda invoke`.
pub trait StepRunner: Sync {
    /// Runs the step; `Err` carries the function's error message.
    fn run(&self, event: &RotationEvent) -> impl Future<Output = Result<(), String>> + Send;
}

/// The Lambda Invoke API of `cargo lambda watch` (`POST /2015-03-31/functions/<name>/invocations`).
#[derive(Debug, Clone)]
pub struct InvokeApi {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// Function (binary) name.
    pub function: String,
    client: reqwest::Client,
}

impl InvokeApi {
    /// A runner for `function` behind `base_url`.
    pub fn new(base_url: &str, function: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            function: function.to_owned(),
            client: reqwest::Client::new(),
        }
    }
}

impl InvokeApi {
    /// Invokes the function with any `payload` (a rotation step, or an operator's `Preflight` or
    /// `Revoke`) and returns its JSON result; the function's error message when it failed.
    ///
    /// # Errors
    /// The function's `errorMessage`, or what went wrong reaching it.
    pub async fn invoke(&self, payload: &serde_json::Value) -> Result<serde_json::Value, String> {
        let url = format!("{}/2015-03-31/functions/{}/invocations", self.base_url, self.function);
        let resp = self
            .client
            .post(url)
            .timeout(Duration::from_secs(120))
            .json(payload)
            .send()
            .await
            .map_err(|e| format!("invoke failed: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str::<serde_json::Value>(&body).ok();
        let error = value
            .as_ref()
            .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(str::to_owned));
        match (status.is_success(), error, value) {
            (true, None, Some(v)) => Ok(v),
            (true, None, None) => Ok(serde_json::Value::Null),
            (_, Some(message), _) => Err(message),
            (false, None, _) => Err(format!("HTTP {status}: {body}")),
        }
    }
}

impl StepRunner for InvokeApi {
    async fn run(&self, event: &RotationEvent) -> Result<(), String> {
        self.invoke(&event.payload()).await.map(drop)
    }
}

/// `cargo lambda invoke <function> --invoke-address … --invoke-port …` against a running watch.
#[derive(Debug, Clone)]
pub struct CargoLambdaInvoke {
    /// Watch's port on 127.0.0.1.
    pub port: u16,
    /// Function (binary) name.
    pub function: String,
}

impl StepRunner for CargoLambdaInvoke {
    async fn run(&self, event: &RotationEvent) -> Result<(), String> {
        let out = tokio::process::Command::new("cargo")
            .args([
                "lambda",
                "invoke",
                &self.function,
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
            ])
            .arg(self.port.to_string())
            .arg("--data-ascii")
            .arg(event.payload().to_string())
            .output()
            .await
            .map_err(|e| format!("cannot run cargo lambda invoke: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned())
        }
    }
}

/// What one rotation took.
#[derive(Debug, Clone)]
pub struct RotationReport {
    /// The token (new version id).
    pub token: String,
    /// Wall time of each step.
    pub steps: Vec<(Step, Duration)>,
    /// Wall time of the whole rotation, RotateSecret and cleanup included.
    pub total: Duration,
}

/// The rotation driver. See the module docs.
#[derive(Debug, Clone)]
pub struct RotationDriver {
    sm: Client,
    stub_arn: String,
    rotation_token: String,
}

impl RotationDriver {
    /// Prepares moto: Lambda off Docker, the stub function registered (idempotent).
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn new(moto: &crate::Moto) -> Result<Self, DevstackError> {
        Self::attach(moto.handle()).await
    }

    /// Like [`Self::new`], for a moto server this process did not start.
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn attach(moto: MotoEndpoint) -> Result<Self, DevstackError> {
        moto.api("POST", "/moto-api/config", r#"{"lambda":{"use_docker":false}}"#)?;
        let stub_arn = format!(
            "arn:aws:lambda:{}:{}:function:{STUB_FUNCTION}",
            crate::moto::REGION,
            crate::moto::ACCOUNT
        );
        let exists = moto
            .aws_call(
                "lambda",
                "GET",
                &format!("/2015-03-31/functions/{STUB_FUNCTION}"),
                "application/json",
                "",
            )
            .is_ok();
        if !exists {
            let role = "devstack-rotation-stub";
            let _ = moto.aws_call(
                "iam",
                "POST",
                "/",
                "application/x-www-form-urlencoded",
                &format!("Action=CreateRole&Version=2010-05-08&RoleName={role}&AssumeRolePolicyDocument=%7B%7D"),
            );
            // An empty zip archive: moto stores it and, with Docker off, never runs it.
            let create = serde_json::json!({
                "FunctionName": STUB_FUNCTION,
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Role": format!("arn:aws:iam::{}:role/{role}", crate::moto::ACCOUNT),
                "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
            });
            if let Err(e) = moto.aws_call(
                "lambda",
                "POST",
                "/2015-03-31/functions",
                "application/json",
                &create.to_string(),
            ) {
                // A concurrent driver may have registered it first.
                if !e.to_string().contains("ResourceConflict") {
                    return Err(e);
                }
            }
        }
        // Sent with every step, as the service does; recorded so the leak check looks for it.
        let rotation_token = format!("rt-{}{}", crate::random_token(), crate::random_token());
        crate::evidence::record_secret(&rotation_token);
        Ok(Self {
            sm: Client::new(&moto.sdk_config().await),
            stub_arn,
            rotation_token,
        })
    }

    /// The Secrets Manager client the driver uses.
    pub fn client(&self) -> &Client {
        &self.sm
    }

    /// RotateSecret: enables rotation and leaves the empty `AWSPENDING` placeholder. Returns the token.
    ///
    /// # Errors
    /// When moto refuses (e.g. a previous rotation is still in progress).
    pub async fn begin(&self, secret_id: &str) -> Result<String, DevstackError> {
        let out = self
            .sm
            .rotate_secret()
            .secret_id(secret_id)
            .rotation_lambda_arn(&self.stub_arn)
            .rotation_rules(
                aws_sdk_secretsmanager::types::RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| DevstackError::Aws(DisplayErrorContext(e).to_string()))?;
        out.version_id()
            .map(str::to_owned)
            .ok_or_else(|| DevstackError::Aws("RotateSecret returned no VersionId".into()))
    }

    /// Runs `steps` in order with `token`; stops at the first failure.
    ///
    /// # Errors
    /// [`DevstackError::Step`] with the function's message.
    pub async fn run_steps<R: StepRunner>(
        &self,
        secret_id: &str,
        token: &str,
        steps: &[Step],
        runner: &R,
    ) -> Result<Vec<(Step, Duration)>, DevstackError> {
        let mut times = Vec::with_capacity(steps.len());
        for step in steps {
            let started = Instant::now();
            let event = RotationEvent {
                secret_id: secret_id.to_owned(),
                token: token.to_owned(),
                step: *step,
                rotation_token: Some(self.rotation_token.clone()),
            };
            let result = runner.run(&event).await;
            if *step == Step::Create && crate::evidence::dir().is_some() {
                self.record_pending_password(secret_id, token).await;
            }
            result.map_err(|message| DevstackError::Step {
                step: step.as_str(),
                message,
            })?;
            times.push((*step, started.elapsed()));
        }
        Ok(times)
    }

    /// The RotationToken this driver sends.
    pub fn rotation_token(&self) -> &str {
        &self.rotation_token
    }

    /// Records the generated password of the pending version for the leak check.
    async fn record_pending_password(&self, secret_id: &str, token: &str) {
        let value = self
            .sm
            .get_secret_value()
            .secret_id(secret_id)
            .version_id(token)
            .send()
            .await;
        if let Some(text) = value.ok().and_then(|v| v.secret_string().map(str::to_owned)) {
            crate::evidence::record_secret(&text);
            if let Some(p) = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["password"].as_str().map(str::to_owned))
            {
                crate::evidence::record_secret(&p);
            }
        }
    }

    /// What the service does after a successful finishSecret: removes `AWSPENDING` from the token
    /// if it still carries it. First checks the function kept its side of the contract: the token
    /// is `AWSCURRENT` and `AWSPENDING` is on no other version.
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn end(&self, secret_id: &str, token: &str) -> Result<(), DevstackError> {
        let desc = self
            .sm
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| DevstackError::Aws(DisplayErrorContext(e).to_string()))?;
        // The function's side of the contract, checked before the service's cleanup hides it:
        // finishSecret made the token AWSCURRENT, and AWSPENDING sits on no other version.
        let stages = desc.version_ids_to_stages().cloned().unwrap_or_default();
        let has = |version: &str, stage: &str| stages.get(version).is_some_and(|s| s.iter().any(|l| l == stage));
        if !has(token, "AWSCURRENT") {
            return Err(DevstackError::Contract(format!(
                "after finishSecret, version {token} is not AWSCURRENT: {stages:?}"
            )));
        }
        if let Some(other) = stages.keys().find(|v| *v != token && has(v, "AWSPENDING")) {
            return Err(DevstackError::Contract(format!(
                "after finishSecret, AWSPENDING is left on version {other}: {stages:?}"
            )));
        }
        let pending_on_token = has(token, "AWSPENDING");
        if pending_on_token {
            self.sm
                .update_secret_version_stage()
                .secret_id(secret_id)
                .version_stage("AWSPENDING")
                .remove_from_version_id(token)
                .send()
                .await
                .map_err(|e| DevstackError::Aws(DisplayErrorContext(e).to_string()))?;
        }
        Ok(())
    }

    /// A whole rotation: begin, the four steps, end.
    ///
    /// # Errors
    /// The first failure; the secret is left as the failing step left it, for a retry with the
    /// same token (see [`Self::resume`]).
    pub async fn rotate<R: StepRunner>(&self, secret_id: &str, runner: &R) -> Result<RotationReport, DevstackError> {
        let started = Instant::now();
        let token = self.begin(secret_id).await?;
        let steps = self.run_steps(secret_id, &token, &Step::ALL, runner).await?;
        self.end(secret_id, &token).await?;
        Ok(RotationReport {
            token,
            steps,
            total: started.elapsed(),
        })
    }

    /// Retries an interrupted rotation with its token, as the service does: all four steps again,
    /// then cleanup.
    ///
    /// # Errors
    /// The first failure.
    pub async fn resume<R: StepRunner>(
        &self,
        secret_id: &str,
        token: &str,
        runner: &R,
    ) -> Result<RotationReport, DevstackError> {
        let started = Instant::now();
        let steps = self.run_steps(secret_id, token, &Step::ALL, runner).await?;
        self.end(secret_id, token).await?;
        Ok(RotationReport {
            token: token.to_owned(),
            steps,
            total: started.elapsed(),
        })
    }
}
