//! The order service's Lambda functions, one constructor per binary (see `crate::FUNCTIONS`).

mod catalog;
mod create;
mod expire;
mod get;
mod saga;

pub use catalog::{CatalogHandler, catalog};
pub use create::create;
pub use expire::{expire, expire_due};
pub use get::get;
pub use saga::{SagaHandler, saga};
