//! Pure decisions of the order service: request and address parsing, pricing, the saga
//! state machine, fulfilment transitions, refund limits and the causal order of an order's
//! timeline. No I/O here; everything is unit tested.

pub mod address;
pub mod fulfilment;
pub mod history;
pub mod pricing;
pub mod refund;
pub mod request;
pub mod saga;
pub mod timeline;
