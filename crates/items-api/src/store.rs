//! All SQL for items. Statements are prepared once per connection and parameters are always
//! bound, never formatted into SQL.

use crate::item::{Item, ItemInput};
use db_credentials::Connection;
use tokio_postgres::{Client, Row, Statement};

/// Created at start, idempotently. The advisory lock serialises concurrent cold starts, which
/// otherwise race inside `CREATE TABLE IF NOT EXISTS` (a unique violation on pg_type).
const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(727021);
CREATE TABLE IF NOT EXISTS items (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description TEXT CHECK (description IS NULL OR char_length(description) <= 2000),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// With alternating users the login is `<user>` or `<user>_clone`, the clone a member of the
/// user (as the rotation function creates it). This finds that user when we are the clone.
const BASE_ROLE: &str = "
SELECT r.rolname::text FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND current_user = r.rolname || '_clone'";

const COLUMNS: &str = "id, name, description, created_at, updated_at";

/// Creates the table if it is missing. Checks first, so a role that may use but not create the
/// table (a DBA created it) still starts.
///
/// Logged in as the `_clone` of alternating users, it creates the table as the user the clone
/// belongs to: a table the clone owned would be out of reach of that user once the next rotation
/// logs in as it.
///
/// # Errors
/// The database error.
pub async fn ensure_schema(client: &Client) -> Result<(), tokio_postgres::Error> {
    let exists = client
        .query_one("SELECT to_regclass('items') IS NOT NULL", &[])
        .await?
        .get::<_, bool>(0);
    if !exists {
        let set_role = match client.query_opt(BASE_ROLE, &[]).await? {
            Some(row) => format!(
                "SET LOCAL ROLE {};",
                postgres_protocol::escape::escape_identifier(row.get(0))
            ),
            None => String::new(),
        };
        client
            .batch_execute(&format!("BEGIN;{set_role}{SCHEMA}\nCOMMIT;"))
            .await?;
    }
    Ok(())
}

/// A connection with the items statements prepared on it: every query the API makes.
#[derive(Debug)]
pub struct ItemStore {
    conn: Connection,
    st: Statements,
}

impl ItemStore {
    /// Prepares the statements on `conn` (one round trip each, once per connection).
    ///
    /// # Errors
    /// The database error.
    pub async fn new(conn: Connection) -> Result<Self, tokio_postgres::Error> {
        let st = Statements::prepare(&conn.client).await?;
        Ok(Self { conn, st })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection, its statements dropped (to close it).
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// A page of items by id.
    ///
    /// # Errors
    /// The database error.
    pub async fn list(&self, limit: i64, offset: i64) -> Result<Vec<Item>, tokio_postgres::Error> {
        self.conn
            .client
            .query(&self.st.list, &[&limit, &offset])
            .await?
            .iter()
            .map(item)
            .collect()
    }

    /// One item.
    ///
    /// # Errors
    /// The database error.
    pub async fn get(&self, id: i64) -> Result<Option<Item>, tokio_postgres::Error> {
        let row = self.conn.client.query_opt(&self.st.get, &[&id]).await?;
        row.as_ref().map(item).transpose()
    }

    /// Inserts an item.
    ///
    /// # Errors
    /// The database error.
    pub async fn create(&self, input: &ItemInput) -> Result<Item, tokio_postgres::Error> {
        item(
            &self
                .conn
                .client
                .query_one(&self.st.insert, &[&input.name, &input.description])
                .await?,
        )
    }

    /// Replaces an item; `None` when there is no such id.
    ///
    /// # Errors
    /// The database error.
    pub async fn replace(&self, id: i64, input: &ItemInput) -> Result<Option<Item>, tokio_postgres::Error> {
        let row = self
            .conn
            .client
            .query_opt(&self.st.update, &[&id, &input.name, &input.description])
            .await?;
        row.as_ref().map(item).transpose()
    }

    /// Deletes an item; `false` when there was none.
    ///
    /// # Errors
    /// The database error.
    pub async fn delete(&self, id: i64) -> Result<bool, tokio_postgres::Error> {
        Ok(self.conn.client.execute(&self.st.delete, &[&id]).await? == 1)
    }
}

/// Prepared statements of one connection.
#[derive(Debug)]
struct Statements {
    list: Statement,
    get: Statement,
    insert: Statement,
    update: Statement,
    delete: Statement,
}

impl Statements {
    /// Prepares every statement (one round trip each, once per connection).
    ///
    /// # Errors
    /// The database error.
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            list: client
                .prepare(&format!("SELECT {COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2"))
                .await?,
            get: client
                .prepare(&format!("SELECT {COLUMNS} FROM items WHERE id = $1"))
                .await?,
            insert: client
                .prepare(&format!(
                    "INSERT INTO items (name, description) VALUES ($1, $2) RETURNING {COLUMNS}"
                ))
                .await?,
            update: client
                .prepare(&format!(
                    "UPDATE items SET name = $2, description = $3, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
                ))
                .await?,
            delete: client.prepare("DELETE FROM items WHERE id = $1").await?,
        })
    }
}

fn item(row: &Row) -> Result<Item, tokio_postgres::Error> {
    Ok(Item {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        description: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
    })
}
