//! The shipping address of `POST /orders`: the wire shape (`AddressRequest`) becomes a
//! `ShippingAddress` through `TryFrom`, with every field trimmed, non-empty and of a sane
//! length, and the country an assigned ISO 3166-1 alpha-2 code in capitals.

use serde::{Deserialize, Serialize};

pub const MAX_NAME: usize = 100;
pub const MAX_LINE: usize = 200;
pub const MAX_CITY: usize = 100;
pub const MAX_POSTAL_CODE: usize = 20;

/// The officially assigned ISO 3166-1 alpha-2 codes (249).
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM \
PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// The address as the client sent it.
#[derive(Debug, Clone, Deserialize)]
pub struct AddressRequest {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// A checked address, stored with the order and shown back by `GET /orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    /// Absent when not sent or blank.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// Why an address is refused (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAddress {
    #[error("shipping_address.{field} must not be empty")]
    Empty { field: &'static str },
    #[error("shipping_address.{field} must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error(
        "shipping_address.country must be an ISO 3166-1 alpha-2 code in capitals (\"FR\", \"DE\")"
    )]
    Country,
}

fn field(value: &str, name: &'static str, max: usize) -> Result<String, InvalidAddress> {
    let v = value.trim();
    if v.is_empty() {
        return Err(InvalidAddress::Empty { field: name });
    }
    if v.chars().count() > max {
        return Err(InvalidAddress::TooLong { field: name, max });
    }
    Ok(v.to_string())
}

pub fn valid_country(code: &str) -> bool {
    code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && ISO_3166_ALPHA2.split_ascii_whitespace().any(|c| c == code)
}

impl TryFrom<AddressRequest> for ShippingAddress {
    type Error = InvalidAddress;

    fn try_from(req: AddressRequest) -> Result<Self, Self::Error> {
        let line2 = match req.line2.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(l) => Some(field(l, "line2", MAX_LINE)?),
        };
        let country = req.country.trim();
        if !valid_country(country) {
            return Err(InvalidAddress::Country);
        }
        Ok(ShippingAddress {
            name: field(&req.name, "name", MAX_NAME)?,
            line1: field(&req.line1, "line1", MAX_LINE)?,
            line2,
            city: field(&req.city, "city", MAX_CITY)?,
            postal_code: field(&req.postal_code, "postal_code", MAX_POSTAL_CODE)?,
            country: country.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req() -> AddressRequest {
        AddressRequest {
            name: " Ada Lovelace ".into(),
            line1: "12 St James's Square".into(),
            line2: Some("  ".into()),
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        }
    }

    #[test]
    fn a_well_formed_address_is_trimmed_and_a_blank_line2_dropped() {
        let a = ShippingAddress::try_from(req()).unwrap();
        assert_eq!(a.name, "Ada Lovelace");
        assert_eq!(a.line2, None);
        assert_eq!(a.country, "GB");
    }

    #[test]
    fn the_list_holds_every_assigned_code_once() {
        let codes: Vec<&str> = ISO_3166_ALPHA2.split_ascii_whitespace().collect();
        assert_eq!(codes.len(), 249);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, codes, "sorted and unique");
    }

    #[test]
    fn a_country_not_an_assigned_alpha2_code_in_capitals_is_refused() {
        for bad in ["gb", "Gb", "GBR", "G", "", "XX", "UK", "ZZ", "É1"] {
            let mut r = req();
            r.country = bad.into();
            assert_eq!(
                ShippingAddress::try_from(r).unwrap_err(),
                InvalidAddress::Country,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn blank_or_overlong_fields_are_refused_by_name() {
        let mut r = req();
        r.city = "   ".into();
        assert_eq!(
            ShippingAddress::try_from(r).unwrap_err(),
            InvalidAddress::Empty { field: "city" }
        );
        let mut r = req();
        r.postal_code = "1".repeat(MAX_POSTAL_CODE + 1);
        assert_eq!(
            ShippingAddress::try_from(r).unwrap_err(),
            InvalidAddress::TooLong {
                field: "postal_code",
                max: MAX_POSTAL_CODE
            }
        );
        let mut r = req();
        r.line2 = Some("x".repeat(MAX_LINE + 1));
        assert!(matches!(
            ShippingAddress::try_from(r).unwrap_err(),
            InvalidAddress::TooLong { field: "line2", .. }
        ));
        let mut r = req();
        r.name = "é".repeat(MAX_NAME);
        assert!(
            ShippingAddress::try_from(r).is_ok(),
            "length counts characters, not bytes"
        );
    }
}
