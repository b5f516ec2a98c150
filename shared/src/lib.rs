//! Everything the Orderflow functions share: event contracts and their envelope, the
//! `aws:rmq` trigger type, the batch runner with inbox/outbox, the confirming publisher,
//! broker topology, HTTP (API Gateway v2) helpers, sessions, config and telemetry.
//!
//! Services depend on this crate only, never on each other.

pub mod cache;
pub mod config;
pub mod contracts;
pub mod db;
pub mod envelope;
pub mod error;
pub mod faults;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod payment_token;
pub use lambda::{Constructor, Function};
pub mod context;
pub mod product;
pub mod publisher;
pub mod ratelimit;
pub mod rmq;
pub mod runner;
pub mod secrets;
pub mod session;
pub mod sigv4;
pub mod telemetry;
pub mod topology;

pub use config::Config;
pub use envelope::{Encoding, Envelope};
pub use error::HandleError;

#[cfg(feature = "testing")]
pub mod testing;
