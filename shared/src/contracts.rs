//! The generated `orderflow.v1` protobuf types, routing keys, and the JSON form of enums.

#![allow(clippy::all)]

/// Generated from `proto/orderflow/v1/events.proto`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/orderflow.v1.rs"));
}

pub use v1::envelope::Payload;
pub use v1::*;

/// Schema version written into every envelope; bump on a breaking contract change.
pub const SCHEMA_VERSION: u32 = 1;

/// Routing keys on the topic exchange, one per payload variant.
pub mod keys {
    pub const ORDER_CREATED: &str = "order.created";
    pub const STOCK_RESERVED: &str = "stock.reserved";
    pub const STOCK_REJECTED: &str = "stock.rejected";
    pub const PAYMENT_PROCESSED: &str = "payment.processed";
    pub const ORDER_CONFIRMED: &str = "order.confirmed";
    pub const ORDER_CANCELLED: &str = "order.cancelled";
    pub const STOCK_RELEASED: &str = "stock.released";
    pub const PAYMENT_CAPTURED: &str = "payment.captured";
    pub const PAYMENT_VOIDED: &str = "payment.voided";
    pub const NOTIFICATION_SENT: &str = "notification.sent";
    pub const PRODUCT_UPDATED: &str = "product.updated";
    pub const ORDER_SHIPPED: &str = "order.shipped";
    pub const ORDER_DELIVERED: &str = "order.delivered";
    pub const REFUND_REQUESTED: &str = "refund.requested";
    pub const PAYMENT_REFUNDED: &str = "payment.refunded";
    pub const PAYMENT_REFUND_FAILED: &str = "payment.refund_failed";
    pub const STOCK_ADJUSTED: &str = "stock.adjusted";
    pub const STOCK_LOW: &str = "stock.low";

    pub const ALL: [&str; 18] = [
        ORDER_CREATED,
        STOCK_RESERVED,
        STOCK_REJECTED,
        PAYMENT_PROCESSED,
        ORDER_CONFIRMED,
        ORDER_CANCELLED,
        STOCK_RELEASED,
        PAYMENT_CAPTURED,
        PAYMENT_VOIDED,
        NOTIFICATION_SENT,
        PRODUCT_UPDATED,
        ORDER_SHIPPED,
        ORDER_DELIVERED,
        REFUND_REQUESTED,
        PAYMENT_REFUNDED,
        PAYMENT_REFUND_FAILED,
        STOCK_ADJUSTED,
        STOCK_LOW,
    ];
}

impl Payload {
    /// The routing key (and envelope `event_type`) of this payload.
    pub fn event_type(&self) -> &'static str {
        match self {
            Payload::OrderCreated(_) => keys::ORDER_CREATED,
            Payload::StockReserved(_) => keys::STOCK_RESERVED,
            Payload::StockRejected(_) => keys::STOCK_REJECTED,
            Payload::PaymentProcessed(_) => keys::PAYMENT_PROCESSED,
            Payload::OrderConfirmed(_) => keys::ORDER_CONFIRMED,
            Payload::OrderCancelled(_) => keys::ORDER_CANCELLED,
            Payload::StockReleased(_) => keys::STOCK_RELEASED,
            Payload::PaymentCaptured(_) => keys::PAYMENT_CAPTURED,
            Payload::PaymentVoided(_) => keys::PAYMENT_VOIDED,
            Payload::NotificationSent(_) => keys::NOTIFICATION_SENT,
            Payload::ProductUpdated(_) => keys::PRODUCT_UPDATED,
            Payload::OrderShipped(_) => keys::ORDER_SHIPPED,
            Payload::OrderDelivered(_) => keys::ORDER_DELIVERED,
            Payload::RefundRequested(_) => keys::REFUND_REQUESTED,
            Payload::PaymentRefunded(_) => keys::PAYMENT_REFUNDED,
            Payload::PaymentRefundFailed(_) => keys::PAYMENT_REFUND_FAILED,
            Payload::StockAdjusted(_) => keys::STOCK_ADJUSTED,
            Payload::StockLow(_) => keys::STOCK_LOW,
        }
    }

    /// The order this event is about (the correlation id), where it has one.
    pub fn order_id(&self) -> Option<&str> {
        Some(match self {
            Payload::OrderCreated(e) => &e.order_id,
            Payload::StockReserved(e) => &e.order_id,
            Payload::StockRejected(e) => &e.order_id,
            Payload::PaymentProcessed(e) => &e.order_id,
            Payload::OrderConfirmed(e) => &e.order_id,
            Payload::OrderCancelled(e) => &e.order_id,
            Payload::StockReleased(e) => &e.order_id,
            Payload::PaymentCaptured(e) => &e.order_id,
            Payload::PaymentVoided(e) => &e.order_id,
            Payload::NotificationSent(e) => &e.order_id,
            Payload::OrderShipped(e) => &e.order_id,
            Payload::OrderDelivered(e) => &e.order_id,
            Payload::RefundRequested(e) => &e.order_id,
            Payload::PaymentRefunded(e) => &e.order_id,
            Payload::PaymentRefundFailed(e) => &e.order_id,
            Payload::ProductUpdated(_) | Payload::StockAdjusted(_) | Payload::StockLow(_) => {
                return None;
            }
        })
    }
}

/// Serde adapters that write proto enums by name (`"PAYMENT_STATUS_SUCCESS"`), as the proto3
/// JSON mapping does, and read either the name or the number.
pub mod enum_json {
    macro_rules! enum_as_name {
        ($module:ident, $ty:ty) => {
            pub mod $module {
                use serde::{Deserialize, Deserializer, Serializer, de::Error};

                pub fn serialize<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
                    match <$ty>::try_from(*value) {
                        Ok(v) => s.serialize_str(v.as_str_name()),
                        Err(_) => s.serialize_i32(*value),
                    }
                }

                pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                    #[derive(Deserialize)]
                    #[serde(untagged)]
                    enum NameOrNumber {
                        Name(String),
                        Number(i32),
                    }
                    match NameOrNumber::deserialize(d)? {
                        NameOrNumber::Number(n) => Ok(n),
                        NameOrNumber::Name(name) => <$ty>::from_str_name(&name)
                            .map(|v| v as i32)
                            .ok_or_else(|| {
                                D::Error::custom(format!("unknown enum value {name:?}"))
                            }),
                    }
                }
            }
        };
    }
    enum_as_name!(payment_status, super::super::PaymentStatus);
    enum_as_name!(cancel_reason, super::super::CancelReason);
    enum_as_name!(reject_reason, super::super::RejectReason);
    enum_as_name!(notification_kind, super::super::NotificationKind);
}

impl CancelReason {
    /// The lowercase name the HTTP API and the database use (`out_of_stock`, ...).
    pub fn api_name(self) -> Option<&'static str> {
        match self {
            CancelReason::Unspecified => None,
            CancelReason::OutOfStock => Some("out_of_stock"),
            CancelReason::PaymentDeclined => Some("payment_declined"),
            CancelReason::Expired => Some("expired"),
            CancelReason::CustomerCancelled => Some("customer_cancelled"),
        }
    }

    pub fn from_api_name(name: &str) -> Option<Self> {
        match name {
            "out_of_stock" => Some(CancelReason::OutOfStock),
            "payment_declined" => Some(CancelReason::PaymentDeclined),
            "expired" => Some(CancelReason::Expired),
            "customer_cancelled" => Some(CancelReason::CustomerCancelled),
            _ => None,
        }
    }
}

impl NotificationKind {
    pub fn api_name(self) -> &'static str {
        match self {
            NotificationKind::Unspecified => "unspecified",
            NotificationKind::OrderReceived => "order_received",
            NotificationKind::OrderConfirmed => "order_confirmed",
            NotificationKind::OrderCancelled => "order_cancelled",
            NotificationKind::OrderShipped => "order_shipped",
            NotificationKind::OrderDelivered => "order_delivered",
            NotificationKind::OrderRefunded => "order_refunded",
        }
    }
}
