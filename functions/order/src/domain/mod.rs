//! Pure decisions of the order service: request parsing, pricing, the saga state machine
//! and the causal order of an order's timeline. No I/O here; everything is unit tested.

pub mod history;
pub mod pricing;
pub mod request;
pub mod saga;
pub mod timeline;
