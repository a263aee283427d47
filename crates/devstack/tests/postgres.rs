//! The cluster's choices: Postgres 15 or 18, an RDS-like master, md5, a small connection budget.

use devstack::{PasswordEncryption, Postgres, PostgresInstall, PostgresOptions, postgres::verifier};
use std::time::Duration;
use tokio_postgres::{Client, error::SqlState};

fn start(options: PostgresOptions) -> Postgres {
    Postgres::start(&options).expect("the cluster starts")
}

async fn login(pg: &Postgres, user: &str, password: &str, db: &str) -> Result<Client, tokio_postgres::Error> {
    let pem = std::fs::read(pg.ca_cert()).unwrap();
    let tls = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&pem).unwrap())
        .disable_built_in_roots(true)
        .build()
        .unwrap();
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg.port())
        .user(user)
        .password(password)
        .dbname(db)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres_native_tls::MakeTlsConnector::new(tls))
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test]
async fn postgres_18_from_npm_serves_tls_verify_full_and_scram() {
    let pg = start(PostgresOptions {
        install: PostgresInstall::Npm18,
        ..Default::default()
    });
    assert_eq!(pg.major_version(), 18);
    pg.create_role("app18", "Pw-eighteen-1234567").await.unwrap();
    let client = login(&pg, "app18", "Pw-eighteen-1234567", "postgres")
        .await
        .expect("TLS verify-full + SCRAM against the npm build's OpenSSL");
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i32>(0) >= 180000);
    assert!(row.get::<_, bool>(1));
}

/// On both versions: the master logs in, is not a superuser, and reaches the roles it created;
/// a role someone else created is out of its reach from 16 on, with the privilege named.
#[tokio::test]
async fn rds_like_master_is_not_superuser_and_since_16_reaches_only_roles_it_administers() {
    for install in [PostgresInstall::Debian, PostgresInstall::Npm18] {
        let pg = start(PostgresOptions {
            install: install.clone(),
            ..Default::default()
        });
        let master = pg
            .create_rds_master("rds_master", "Master-pw-1234567890")
            .await
            .unwrap();
        let client = login(&pg, &master.username, &master.password, "postgres")
            .await
            .expect("the master logs in over TLS");
        let row = client
            .query_one(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication,
                        pg_has_role('rds_superuser', 'MEMBER'), pg_has_role('pg_signal_backend', 'USAGE')
                   FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .unwrap();
        let flags: (bool, bool, bool, bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        assert_eq!(flags, (false, true, true, false, true, true), "{install:?}");

        pg.create_role_as(&master.username, "made_by_master", "Pw-made-by-master-1")
            .await
            .unwrap();
        client
            .batch_execute(&format!(
                "ALTER ROLE made_by_master PASSWORD {}",
                verifier("Pw-changed-by-master-2")
            ))
            .await
            .expect("the master administers the roles it created");

        pg.create_role("made_by_rdsadmin", "Pw-made-by-admin-123")
            .await
            .unwrap();
        let other = client
            .batch_execute(&format!(
                "ALTER ROLE made_by_rdsadmin PASSWORD {}",
                verifier("Pw-changed-by-master-3")
            ))
            .await;
        if pg.major_version() >= 16 {
            let e = other.expect_err("CREATEROLE without ADMIN OPTION reaches no role since 16");
            assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
            let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default().to_owned();
            assert!(detail.contains("ADMIN"), "{detail}");
        } else {
            other.expect("on 15 CREATEROLE alone reaches every non-superuser role");
        }
        let superuser = client
            .batch_execute(&format!(
                "ALTER ROLE postgres PASSWORD {}",
                verifier("x-not-allowed-xyz")
            ))
            .await;
        assert_eq!(
            superuser.unwrap_err().code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "the master cannot touch the superuser"
        );
    }
}

#[tokio::test]
async fn md5_server_stores_md5_hashes_and_logs_in_with_them() {
    let pg = start(PostgresOptions {
        password_encryption: PasswordEncryption::Md5,
        ..Default::default()
    });
    pg.create_role("md5user", "Pw-md5-user-123456789").await.unwrap();
    let admin = pg.admin().await.unwrap();
    let stored: String = admin
        .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5user'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("md5"), "{stored}");
    let setting: String = admin.query_one("SHOW password_encryption", &[]).await.unwrap().get(0);
    assert_eq!(setting, "md5");
    login(&pg, "md5user", "Pw-md5-user-123456789", "postgres")
        .await
        .expect("md5 login over TLS");
    let wrong = login(&pg, "md5user", "not-the-password", "postgres").await.unwrap_err();
    assert_eq!(wrong.code(), Some(&SqlState::INVALID_PASSWORD));
}

#[tokio::test]
async fn small_connection_budget_refuses_the_eighth_ordinary_session_but_not_the_superuser() {
    let pg = start(PostgresOptions {
        max_connections: 10,
        superuser_reserved_connections: 3,
        ..Default::default()
    });
    pg.create_role("crowd", "Pw-crowd-1234567890").await.unwrap();
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(login(&pg, "crowd", "Pw-crowd-1234567890", "postgres").await.unwrap());
    }
    let refused = login(&pg, "crowd", "Pw-crowd-1234567890", "postgres")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{refused:?}");
    let admin = pg.admin().await.expect("a reserved slot is left for the superuser");
    let count: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = 'crowd'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 7);
}
