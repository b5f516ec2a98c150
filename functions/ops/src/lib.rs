//! Operations shared by the local runner and the cloud: reading template.yaml, running
//! every service's migrations and declaring the broker topology (`prepare`), the demo
//! catalog, and the bootstrap custom resource that does the same on a deploy
//! (`bootstrap`), so a stack's first order needs no command run by hand; and the API's
//! OpenAPI document (`openapi`).

pub mod authorizers;
pub mod bootstrap;
pub mod catalog;
pub mod openapi;
pub mod prepare;
pub mod template;

/// The HTTP functions of this crate (the bootstrap is a custom resource, not hosted).
pub const FUNCTIONS: &[(&str, shared::Constructor)] = &[("ops-openapi", openapi::openapi)];
