//! Pure decisions of the order service: request parsing, pricing and the saga state
//! machine. No I/O here; everything is unit tested.

pub mod pricing;
pub mod request;
pub mod saga;
