//! `orderflow bench --baseline`: the same run as `orderflow bench` with the business logic
//! taken out, so that the ratio of the two means something.
//!
//! The baseline runner is the real runner (`orderflow up`, same front door, bridge, batch
//! runner, publisher, metrics poller, relays, template, topology and migrations) started
//! with stand-ins (`stand_ins`) in place of `order-create` and of every queue function. Per
//! order it therefore makes the same deliveries, confirmed publishes, inbox and outbox rows,
//! and the same transactions (one per chunk of `shared::runner::CHUNK` messages, a savepoint
//! per message, one more to mark what was published), as the flow; the bench measures both
//! with the same counters and prints them side by side (`--compare`). What the stand-ins
//! leave out is what the flow decides: sessions, pricing rules, stock, payments,
//! notifications, the timeline's rows, the stock cache in Redis and row locks.

pub mod model;
pub mod stand_ins;
