//! What a product id may be, in one place for every service: 1 to 64 characters of
//! `A-Z a-z 0-9 _ -`. The catalog refuses to store anything else, so an id outside this set
//! can never name a product: the edges (`POST /orders`, the stock reads) answer 400 instead
//! of looking it up, and nothing odd reaches a Redis key, a log line or an event.

/// Longest product id.
pub const MAX_PRODUCT_ID_LEN: usize = 64;

/// The rule, as error messages state it.
pub const PRODUCT_ID_RULE: &str = "1 to 64 characters of A-Z a-z 0-9 _ -";

pub fn valid_product_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PRODUCT_ID_LEN
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_1_to_64_of_letters_digits_dash_and_underscore() {
        assert!(valid_product_id("sku-coffee_2"));
        assert!(valid_product_id(&"a".repeat(64)));
        for bad in [
            String::new(),
            "a".repeat(65),
            "sku a".into(),
            "sku\0".into(),
            "sku\n".into(),
            "sku/1".into(),
            "ﬁ".into(),
            "sku%00".into(),
            "é".into(),
        ] {
            assert!(!valid_product_id(&bad), "{bad:?}");
        }
    }
}
