//! Shipping and delivery after the saga: CONFIRMED -> SHIPPED -> DELIVERED. A repeat of the
//! step already taken (same carrier and tracking number for a ship) is answered as it was,
//! so an admin's retry is harmless; anything else out of order is refused.

use super::saga::Status;
use serde::Deserialize;

pub const MAX_CARRIER: usize = 64;
pub const MAX_TRACKING: usize = 64;

/// The `POST /admin/orders/{id}/ship` body as sent.
#[derive(Debug, Clone, Deserialize)]
pub struct ShipRequest {
    pub carrier: String,
    pub tracking_number: String,
}

/// A checked shipment: a carrier name of 1..=64 characters, and a tracking number of 1..=64
/// ASCII letters, digits and hyphens (carriers print nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidShipment {
    #[error("carrier must be 1 to {MAX_CARRIER} characters")]
    Carrier,
    #[error("tracking_number must be 1 to {MAX_TRACKING} ASCII letters, digits or hyphens")]
    Tracking,
}

impl TryFrom<ShipRequest> for Shipment {
    type Error = InvalidShipment;

    fn try_from(req: ShipRequest) -> Result<Self, Self::Error> {
        let carrier = req.carrier.trim();
        if carrier.is_empty() || carrier.chars().count() > MAX_CARRIER {
            return Err(InvalidShipment::Carrier);
        }
        let tracking = req.tracking_number.trim();
        if tracking.is_empty()
            || tracking.len() > MAX_TRACKING
            || !tracking
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(InvalidShipment::Tracking);
        }
        Ok(Shipment {
            carrier: carrier.to_string(),
            tracking_number: tracking.to_string(),
        })
    }
}

/// What a ship or deliver request does to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Take the step: change the status and publish its event.
    Apply,
    /// Already done exactly so: answer as before, change and publish nothing.
    Repeat,
}

/// Why the step is refused (a 409 with this code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Ship `shipment` for an order in `status` whose current shipment (if any) is `current`.
pub fn ship(
    status: Status,
    current: Option<&Shipment>,
    shipment: &Shipment,
) -> Result<Step, Refused> {
    match status {
        Status::Confirmed => Ok(Step::Apply),
        Status::Shipped if current == Some(shipment) => Ok(Step::Repeat),
        _ => Err(Refused("not_shippable")),
    }
}

pub fn deliver(status: Status) -> Result<Step, Refused> {
    match status {
        Status::Shipped => Ok(Step::Apply),
        Status::Delivered => Ok(Step::Repeat),
        _ => Err(Refused("not_deliverable")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn shipment(carrier: &str, tracking: &str) -> Result<Shipment, InvalidShipment> {
        Shipment::try_from(ShipRequest {
            carrier: carrier.into(),
            tracking_number: tracking.into(),
        })
    }

    const ALL: [Status; 5] = [
        Status::Pending,
        Status::Confirmed,
        Status::Shipped,
        Status::Delivered,
        Status::Cancelled,
    ];

    #[test]
    fn only_a_confirmed_order_ships_and_only_the_same_shipment_repeats() {
        let s = shipment("DHL", "JD014600003SE").unwrap();
        let other = shipment("DHL", "JD014600004SE").unwrap();
        for status in ALL {
            let got = ship(status, Some(&s), &s);
            let want = match status {
                Status::Confirmed => Ok(Step::Apply),
                Status::Shipped => Ok(Step::Repeat),
                _ => Err(Refused("not_shippable")),
            };
            assert_eq!(got, want, "{status}");
        }
        assert_eq!(
            ship(Status::Shipped, Some(&s), &other),
            Err(Refused("not_shippable")),
            "another tracking number on a shipped order"
        );
        assert_eq!(
            ship(Status::Delivered, Some(&s), &s),
            Err(Refused("not_shippable"))
        );
    }

    #[test]
    fn only_a_shipped_order_is_delivered_and_a_delivered_one_repeats() {
        for status in ALL {
            let want = match status {
                Status::Shipped => Ok(Step::Apply),
                Status::Delivered => Ok(Step::Repeat),
                _ => Err(Refused("not_deliverable")),
            };
            assert_eq!(deliver(status), want, "{status}");
        }
    }

    #[test]
    fn carrier_and_tracking_number_are_checked() {
        assert_eq!(
            shipment(" La Poste ", " 6A123-45 ").unwrap(),
            Shipment {
                carrier: "La Poste".into(),
                tracking_number: "6A123-45".into()
            }
        );
        assert_eq!(shipment("  ", "X1").unwrap_err(), InvalidShipment::Carrier);
        assert_eq!(
            shipment(&"c".repeat(MAX_CARRIER + 1), "X1").unwrap_err(),
            InvalidShipment::Carrier
        );
        for bad in ["", "AB 12", "AB/12", "ÀB12", &"1".repeat(MAX_TRACKING + 1)] {
            assert_eq!(
                shipment("DHL", bad).unwrap_err(),
                InvalidShipment::Tracking,
                "{bad:?}"
            );
        }
    }
}
