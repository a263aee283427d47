//! The handler against real Postgres and moto, driven by real API Gateway / Function URL events.

#[path = "../common/mod.rs"]
mod common;

mod calls;
mod conditions;
mod errors;
mod injection;
mod metrics;
mod outcomes;
mod resilience;
mod rotation;
mod routes;
