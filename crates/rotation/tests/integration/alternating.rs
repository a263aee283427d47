//! Alternating-users rotation end to end: the master secret's user creates `<user>_clone` once,
//! then the two users take turns.

use crate::support::*;
use devstack::Stack;
use rotation::Strategy;
use serde_json::json;

async fn is_member(stack: &Stack, member: &str, of: &str) -> bool {
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1 AND u.rolname = $2",
            &[&of, &member],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

#[tokio::test]
async fn full_rotation_twice_in_a_row_alternating_users() {
    let stack = Stack::shared();
    let app = stack.create_app("alt").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_secret(stack).await);
    let arn = stack.create_secret(&Stack::secret_name("alt"), &secret).await.unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let driver = driver(stack).await;
    let clone = format!("{}_clone", app.role);

    driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let first = current(stack, &arn).await;
    assert_eq!(first["username"], clone.as_str());
    assert_eq!(first["masterarn"], secret["masterarn"]);
    assert!(logs_in(stack, &first).await);
    login(stack, &app.role, &app.password, &app.dbname)
        .await
        .expect("the original user keeps its password");
    assert!(is_member(stack, &clone, &app.role).await, "GRANT app TO app_clone");
    let clone_oid = role_oid(stack, &clone).await;

    driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let second = current(stack, &arn).await;
    assert_eq!(second["username"], app.role.as_str());
    assert!(logs_in(stack, &second).await);
    assert!(logs_in(stack, &first).await, "the previous user still works");
    assert!(
        login(stack, &app.role, &app.password, &app.dbname)
            .await
            .unwrap_err()
            .is_auth()
    );
    assert_eq!(role_oid(stack, &clone).await, clone_oid, "the clone was not recreated");

    driver.rotate(&arn, &InProcess(&rotator)).await.unwrap();
    let third = current(stack, &arn).await;
    assert_eq!(third["username"], clone.as_str());
    assert!(logs_in(stack, &third).await);
    assert_refused(stack, &first, "the clone's password changed again").await;
    assert_eq!(role_oid(stack, &clone).await, clone_oid);
    assert!(
        rolpassword(stack, &clone)
            .await
            .unwrap()
            .starts_with("SCRAM-SHA-256$4096:")
    );
    assert_no_password_in_server_log(stack, &arn, &[]).await;
}

async fn role_oid(stack: &Stack, role: &str) -> u32 {
    stack
        .postgres
        .admin()
        .await
        .unwrap()
        .query_one("SELECT oid FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn clone_creation_is_one_transaction() {
    // A master with CREATEROLE but not superuser may create the clone but not grant it a
    // superuser role: the GRANT fails after the CREATE, and the CREATE must not survive it.
    let stack = Stack::shared();
    let suffix = &devstack::random_token()[..8];
    let (user, master) = (format!("tx_app_{suffix}"), format!("tx_master_{suffix}"));
    let dbname = create_role(stack, &user, "Tx-app-pw-1").await;
    stack.postgres.create_role(&master, "Tx-master-pw-1").await.unwrap();
    let admin = stack.postgres.admin().await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{user}\" SUPERUSER; ALTER ROLE \"{master}\" CREATEROLE"
        ))
        .await
        .unwrap();
    let master_arn = stack
        .create_secret(
            &Stack::secret_name("txmaster"),
            &secret_json(stack, &master, "Tx-master-pw-1", "postgres"),
        )
        .await
        .unwrap();
    let mut secret = secret_json(stack, &user, "Tx-app-pw-1", &dbname);
    secret["masterarn"] = json!(master_arn);
    let arn = stack.create_secret(&Stack::secret_name("tx"), &secret).await.unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let err = driver(stack)
        .await
        .rotate(&arn, &InProcess(&rotator))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("setSecret")
            && err.contains("not allowed to create or change the password of role")
            && err.contains("42501"),
        "{err}"
    );
    assert_eq!(
        rolpassword(stack, &format!("{user}_clone")).await,
        None,
        "the clone must not exist after the failed GRANT"
    );
}

#[tokio::test]
async fn current_credentials_must_work_before_the_master_is_used() {
    let stack = Stack::shared();
    let app = stack.create_app("altcur").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master_secret(stack).await);
    let arn = stack
        .create_secret(&Stack::secret_name("altcur"), &secret)
        .await
        .unwrap();
    stack
        .postgres
        .set_password(&app.role, "Changed-behind-our-back-1")
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let err = driver(stack)
        .await
        .rotate(&arn, &InProcess(&rotator))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unable to log in with the current credentials") && err.contains("28P01"),
        "{err}"
    );
    assert_eq!(rolpassword(stack, &format!("{}_clone", app.role)).await, None);
}

#[tokio::test]
async fn rds_managed_master_is_resolved_through_the_rds_api() {
    let stack = Stack::shared();
    let sdk = stack.moto.sdk_config().await;
    let instance = format!("itemsdb-{}", &devstack::random_token()[..8]);
    // Arranged without retries: a retried CreateDBInstance answers DBInstanceAlreadyExists.
    let rds = aws_sdk_rds::Client::new(&stack.moto.setup_sdk_config().await);
    let created = rds
        .create_db_instance()
        .db_instance_identifier(&instance)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .master_username("postgres")
        .master_user_password(devstack::evidence::secret("Unused-pw-1"))
        .allocated_storage(20)
        .send()
        .await
        .unwrap();
    let instance_arn = created.db_instance().unwrap().db_instance_arn().unwrap().to_owned();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let master = sm
        .create_secret()
        .name(Stack::secret_name("rds!db"))
        .secret_string(json!({"username": "postgres", "password": stack.postgres.superuser_password()}).to_string())
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("aws:rds:primaryDBInstanceArn")
                .value(&instance_arn)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let app = stack.create_app("altrds").await.unwrap();
    let mut secret = stack.secret_json(&app);
    secret["masterarn"] = json!(master.arn().unwrap());
    let arn = stack
        .create_secret(&Stack::secret_name("altrds"), &secret)
        .await
        .unwrap();
    let rotator = new_rotator(stack, &vars(stack, Strategy::AlternatingUsers, &[])).await;
    let err = driver(stack)
        .await
        .rotate(&arn, &InProcess(&rotator))
        .await
        .unwrap_err()
        .to_string();
    // moto's endpoints are fake names: the guard refuses a master that lives elsewhere, naming
    // the host the RDS API gave.
    let endpoint = rds
        .describe_db_instances()
        .db_instance_identifier(&instance)
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .endpoint()
        .unwrap()
        .address()
        .unwrap()
        .to_owned();
    assert!(
        err.contains("is not the host of master secret") && err.contains(&endpoint),
        "{err}"
    );
}
