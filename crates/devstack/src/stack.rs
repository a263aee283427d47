//! Postgres and moto together, and the seeding every test needs.

use crate::{
    DevstackError, MasterKind, MasterLogin, Moto, MotoOptions, Postgres, PostgresOptions, random_token,
    rds::DEFAULT_MASTER,
};
use serde_json::{Value, json};
use std::sync::OnceLock;

/// How to start a stack.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Postgres settings.
    pub postgres: PostgresOptions,
    /// moto settings.
    pub moto: MotoOptions,
    /// Start moto's request recorder so tests can count AWS calls.
    pub record_calls: bool,
}

/// A Postgres cluster and a moto server. Dropping it stops both.
#[derive(Debug)]
pub struct Stack {
    /// The database server.
    pub postgres: Postgres,
    /// The AWS emulator.
    pub moto: Moto,
    master: tokio::sync::OnceCell<MasterLogin>,
}

/// An application role with its own database, as a DBA would set one up.
#[derive(Debug, Clone)]
pub struct AppDatabase {
    /// Login role.
    pub role: String,
    /// Its password (test material only).
    pub password: String,
    /// Database owned by the role.
    pub dbname: String,
}

static SHARED: OnceLock<Stack> = OnceLock::new();

impl Stack {
    /// Starts Postgres and moto side by side (about 1.5 s).
    ///
    /// # Errors
    /// The first failure of either.
    pub fn start(options: &StackOptions) -> Result<Self, DevstackError> {
        let (postgres, moto) = std::thread::scope(|s| {
            let pg = s.spawn(|| Postgres::start(&options.postgres));
            let moto = Moto::start(&options.moto);
            (
                pg.join()
                    .unwrap_or_else(|_| Err(DevstackError::Postgres("start panicked".into()))),
                moto,
            )
        });
        let stack = Self {
            postgres: postgres?,
            moto: moto?,
            master: tokio::sync::OnceCell::new(),
        };
        if options.record_calls {
            stack.moto.start_recording()?;
        }
        Ok(stack)
    }

    /// One stack per test binary, started on first use with call recording on. It lives until
    /// the process exits; the guardians stop its servers then. With `DEVSTACK_EVIDENCE_DIR` set,
    /// it also sends the binary's logs (TRACE, JSON) to the evidence directory.
    ///
    /// # Panics
    /// When the stack cannot start: every test that needs it would fail anyway, and the message
    /// says what to install.
    pub fn shared() -> &'static Stack {
        // The binary's in-process logs (functions run in process) join the leak check's evidence.
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
        crate::evidence::init_tracing(&format!("test-{}", binary.unwrap_or_default()));
        SHARED.get_or_init(|| {
            match Stack::start(&StackOptions {
                record_calls: true,
                ..Default::default()
            }) {
                Ok(s) => s,
                Err(e) => panic!("the devstack could not start: {e}"),
            }
        })
    }

    /// Creates a role `<prefix>_<random>` with a random password and a database it owns. The role
    /// is created by the master ([`Self::master`]), as a DBA on RDS would create it; the database
    /// by the superuser.
    ///
    /// # Errors
    /// When Postgres refuses.
    pub async fn create_app(&self, prefix: &str) -> Result<AppDatabase, DevstackError> {
        let suffix = &random_token()[..10];
        let app = AppDatabase {
            role: format!("{prefix}_{suffix}"),
            password: format!("Pw-{}", random_token()),
            dbname: format!("{prefix}_{suffix}_db"),
        };
        self.create_role_by_master(&app.role, &app.password).await?;
        self.postgres.create_database(&app.dbname, &app.role).await?;
        Ok(app)
    }

    /// The master login the tests use, as `DEVSTACK_MASTER` chooses: the superuser `postgres`
    /// (default), or an RDS-like master (`rds`: see [`crate::rds`]) made on first use.
    ///
    /// # Errors
    /// When `DEVSTACK_MASTER` is not understood, or the master cannot be created.
    pub async fn master(&self) -> Result<&MasterLogin, DevstackError> {
        self.master
            .get_or_try_init(|| async {
                match MasterKind::from_env()? {
                    MasterKind::Superuser => Ok(MasterLogin {
                        kind: MasterKind::Superuser,
                        username: "postgres".to_owned(),
                        password: self.postgres.superuser_password().to_owned(),
                    }),
                    MasterKind::RdsLike => {
                        self.postgres
                            .create_rds_master(DEFAULT_MASTER, &format!("Master-{}", random_token()))
                            .await
                    }
                }
            })
            .await
    }

    /// Creates a login role as the master ([`Self::master`]) would on RDS, so the master holds
    /// ADMIN OPTION on it (Postgres 16+); as the superuser when the master is the superuser.
    ///
    /// # Errors
    /// When Postgres refuses.
    pub async fn create_role_by_master(&self, role: &str, password: &str) -> Result<(), DevstackError> {
        let master = self.master().await?;
        match master.kind {
            MasterKind::Superuser => self.postgres.create_role(role, password).await,
            MasterKind::RdsLike => self.postgres.create_role_as(&master.username, role, password).await,
        }
    }

    /// The secret JSON RDS and the rotation templates use, for `app` on this stack's Postgres.
    pub fn secret_json(&self, app: &AppDatabase) -> Value {
        json!({
            "engine": "postgres",
            "host": self.postgres.host(),
            "port": self.postgres.port(),
            "username": app.role,
            "password": app.password,
            "dbname": app.dbname,
        })
    }

    /// Creates a Secrets Manager secret holding `value`; returns its ARN.
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn create_secret(&self, name: &str, value: &Value) -> Result<String, DevstackError> {
        let sm = aws_sdk_secretsmanager::Client::new(&self.moto.sdk_config().await);
        let out = sm
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .map_err(|e| DevstackError::Aws(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
        Ok(out.arn().unwrap_or_default().to_owned())
    }

    /// A unique secret name under `prefix/`.
    pub fn secret_name(prefix: &str) -> String {
        format!("{prefix}/{}", &random_token()[..12])
    }

    /// The environment a Lambda needs to use `secret_arn` on this stack: AWS pointed at moto,
    /// TLS verified against the cluster's CA.
    pub fn lambda_env(&self, secret_arn: &str) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        env.extend([
            ("DB_SECRET_ARN".to_owned(), secret_arn.to_owned()),
            (
                "DB_SSL_ROOT_CERT".to_owned(),
                self.postgres.ca_cert().display().to_string(),
            ),
            ("DB_SSLMODE".to_owned(), "verify-full".to_owned()),
        ]);
        env
    }
}
