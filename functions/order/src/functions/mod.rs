//! The order service's Lambda functions, one constructor per binary (see `crate::FUNCTIONS`).

mod admin;
mod cancel;
mod catalog;
mod create;
mod expire;
mod get;
mod saga;
mod timeline;

pub use admin::admin;
pub use cancel::cancel;
pub use catalog::{CatalogHandler, catalog};
pub use create::create;
pub use expire::{expire, expire_due};
pub use get::get;
pub use saga::{SagaHandler, saga};
pub use timeline::{TIMELINE, TimelineHandler, timeline};

/// `order-relay` (schedule): re-sends outbox rows a crash or a broker outage left behind.
pub fn relay(ctx: &shared::context::Context) -> std::sync::Arc<dyn shared::Function> {
    shared::lambda::outbox_relay(ctx, crate::SCHEMA)
}
