//! The query of `GET /orders`: page size, status filter and the opaque cursor.
//!
//! The cursor is the last order id of the page and the filter it was read with, base64url
//! encoded. Opaque so clients cannot build one (the key may change); carrying the filter so
//! a cursor from one filtered list cannot silently page another.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u16 = 20;
pub const MAX_LIMIT: u16 = 100;

/// Every status an order can be in (DESIGN.md section 9).
pub const STATUSES: [&str; 5] = ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED"];

const VERSION: &str = "o1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub limit: u16,
    pub status: Option<&'static str>,
    /// Orders strictly older than this one (from the cursor).
    pub before: Option<Uuid>,
}

impl HistoryQuery {
    /// From the raw query parameters; the message says what is wrong (a 400).
    pub fn parse(
        limit: Option<&str>,
        status: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Self, String> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("limit must be a whole number from 1 to {MAX_LIMIT}"))?,
        };
        let status = match status {
            None => None,
            Some(raw) => Some(
                STATUSES
                    .into_iter()
                    .find(|s| *s == raw)
                    .ok_or_else(|| format!("status must be one of {}", STATUSES.join(", ")))?,
            ),
        };
        let before = match cursor {
            None => None,
            Some(raw) => {
                let (cursor_status, last) =
                    decode(raw).ok_or("cursor is not one this API returned")?;
                if cursor_status.as_deref() != status {
                    return Err("cursor was returned for another status filter".into());
                }
                Some(last)
            }
        };
        Ok(HistoryQuery {
            limit,
            status,
            before,
        })
    }
}

/// The cursor that continues after `last` under `status`.
pub fn encode(last: Uuid, status: Option<&str>) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}|{}|{last}", status.unwrap_or("")))
}

fn decode(raw: &str) -> Option<(Option<String>, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, '|');
    if parts.next()? != VERSION {
        return None;
    }
    let status = parts.next()?;
    let last = Uuid::parse_str(parts.next()?).ok()?;
    Some(((!status.is_empty()).then(|| status.to_string()), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_round_trip_of_the_cursor() {
        let q = HistoryQuery::parse(None, None, None).expect("defaults");
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!((q.status, q.before), (None, None));
        let last = Uuid::now_v7();
        let cursor = encode(last, Some("CONFIRMED"));
        let q = HistoryQuery::parse(Some("5"), Some("CONFIRMED"), Some(&cursor)).expect("ok");
        assert_eq!(q.limit, 5);
        assert_eq!(q.status, Some("CONFIRMED"));
        assert_eq!(q.before, Some(last));
    }

    #[test]
    fn bad_limits_statuses_and_cursors_are_refused_with_a_reason() {
        for limit in ["0", "101", "-1", "ten", "", "1.5"] {
            let e = HistoryQuery::parse(Some(limit), None, None).expect_err(limit);
            assert!(e.contains("limit"), "{limit}: {e}");
        }
        for status in ["confirmed", "SHIPPING", ""] {
            let e = HistoryQuery::parse(None, Some(status), None).expect_err(status);
            assert!(e.contains("status"), "{status}: {e}");
        }
        let forged = URL_SAFE_NO_PAD.encode("o2||0190a5c2-7d3e-7000-8000-000000000000");
        for cursor in ["", "!!!", "bm9wZQ", forged.as_str()] {
            let e = HistoryQuery::parse(None, None, Some(cursor)).expect_err(cursor);
            assert!(e.contains("cursor"), "{cursor}: {e}");
        }
        let unfiltered = encode(Uuid::now_v7(), None);
        let e = HistoryQuery::parse(None, Some("PENDING"), Some(&unfiltered))
            .expect_err("a cursor of the unfiltered list");
        assert!(e.contains("another status"), "{e}");
    }
}
