//! Postgres adapters of the order service (schema `orders`): the catalog copy, orders and
//! their saga state, idempotency records, the timeline of every order's events, and the
//! read models of `GET /orders/{id}`.
//! Driver errors stay `sqlx::Error`; the functions turn them into 503/transient errors.

pub mod catalog;
pub mod history;
pub mod idempotency;
pub mod lifecycle;
pub mod orders;
pub mod timeline;
pub mod views;
