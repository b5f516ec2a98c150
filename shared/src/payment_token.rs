//! Payment tokens on the bus: sealed for the payment service, a reference for everyone else.
//!
//! `order.created` fans out to inventory-reserve, payment-process, notification-send and the
//! timeline recorder, and a copy of it can sit in a dead-letter queue, the DLQ console and
//! the outboxes for as long as an operator keeps it. A payment token in the clear there
//! lives far longer, and in far more places, than the one function that needs it
//! (payment-process, to authorize). Two designs were weighed:
//!
//! - A short-lived token vault keyed by a random reference: order-create writes the token,
//!   payment-process reads and deletes it. The vault must be owned by one service and read
//!   by another (DESIGN.md 5 forbids reading another service's tables), or be a new
//!   service; it needs an expiry sweep, and a replayed or parked message outlives its entry.
//! - The token encrypted for the payment service inside the event (chosen): no new store,
//!   no new coupling, and a parked or replayed copy still authorizes while being useless to
//!   anyone without the key. Only order-create (which seals) and payment-process (which
//!   opens) are given `PAYMENT_TOKEN_KEY`; inventory, notification, the timeline, the DLQs
//!   and operators see ciphertext and `payment_ref` (`tok_...visa`), which is enough for
//!   support and the timeline.
//!
//! The cipher is ChaCha20-Poly1305 with a random 96-bit nonce per token; the order id is the
//! associated data, so a sealed token copied onto another order does not open. A sealed
//! value reads `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`, the key id being the
//! first 8 hex digits of the key's SHA-256: `PAYMENT_TOKEN_KEY` holds one or more
//! base64 32-byte keys separated by commas, the first seals and all open, so a key is
//! rotated by putting the new one first and dropping the old one once no message sealed
//! with it can still be in flight.
//!
//! Limits: order-create holds the key, so it could open what it sealed; it saw the token in
//! the request anyway. A public-key seal (X25519) would make the payment service the only
//! reader; it costs a second primitive and is the next step if another producer appears.
//!
//! Test stages (`Config::is_test_stage`) without `PAYMENT_TOKEN_KEY` use a development key
//! that is public (it is written below), so samples and local stacks work unconfigured; any
//! other stage refuses to start without a key.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
/// The development key: public, for test stages only (never a secret).
const DEVELOPMENT_KEY: [u8; 32] = *b"orderflow-dev-token-key-not-safe";

/// Why a token could not be opened; the message names no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed payment token is malformed ({0})")]
    Malformed(&'static str),
    #[error("the payment token was sealed with key {0}, which this function does not hold")]
    UnknownKey(String),
    #[error(
        "the sealed payment token does not open with its key for this order (tampered or moved)"
    )]
    Tampered,
}

/// The keys that seal and open payment tokens. `Debug` shows key ids only.
#[derive(Clone)]
pub struct TokenKeys {
    keys: Vec<(String, ChaCha20Poly1305)>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("TokenKeys").field("ids", &ids).finish()
    }
}

fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

impl TokenKeys {
    fn from_raw(raw: &[[u8; 32]]) -> Self {
        TokenKeys {
            keys: raw
                .iter()
                .map(|k| (key_id(k), ChaCha20Poly1305::new(Key::from_slice(k))))
                .collect(),
        }
    }

    /// Comma-separated base64 (standard or URL-safe) 32-byte keys; the first seals.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut raw = Vec::new();
        for (i, part) in value.split(',').map(str::trim).enumerate() {
            let bytes = decode_base64(part)
                .ok_or_else(|| format!("PAYMENT_TOKEN_KEY entry {} is not base64", i + 1))?;
            let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                format!(
                    "PAYMENT_TOKEN_KEY entry {} is {} bytes, a key is 32 (openssl rand -base64 32)",
                    i + 1,
                    b.len()
                )
            })?;
            raw.push(key);
        }
        Ok(Self::from_raw(&raw))
    }

    /// The public development key (test stages only).
    pub fn development() -> Self {
        Self::from_raw(&[DEVELOPMENT_KEY])
    }

    /// The configured keys; the development key in a test stage without any; an error
    /// naming the setting otherwise.
    pub fn from_config(cfg: &crate::Config) -> Result<Self, String> {
        match &cfg.payment_token_key {
            Some(value) => Self::parse(value.expose()),
            None if cfg.is_test_stage() => Ok(Self::development()),
            None => Err(format!(
                "PAYMENT_TOKEN_KEY is required in stage {:?} (only the test stages {:?} may \
                 use the public development key)",
                cfg.stage,
                crate::config::TEST_STAGES
            )),
        }
    }

    /// The id of the sealing key (the first).
    pub fn sealing_key_id(&self) -> &str {
        self.keys.first().map(|(id, _)| id.as_str()).unwrap_or("")
    }

    /// `token` encrypted for the payment service, bound to `order_id`.
    pub fn seal(&self, order_id: &str, token: &str) -> String {
        let Some((id, cipher)) = self.keys.first() else {
            return String::new();
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: token.as_bytes(),
            aad: order_id.as_bytes(),
        };
        // Encrypting a short in-memory message with a valid key and nonce cannot fail.
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!(
            "{VERSION}.{id}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// The token sealed for `order_id`.
    pub fn open(&self, order_id: &str, sealed: &str) -> Result<String, OpenError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(version), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed("expected v1.<key id>.<data>"));
        };
        if version != VERSION {
            return Err(OpenError::Malformed("unknown version"));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| OpenError::Malformed("data is not base64url"))?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(OpenError::Malformed("too short"));
        }
        let Some((_, cipher)) = self.keys.iter().find(|(k, _)| k == id) else {
            // Only hex digits of bounded length go into the message.
            let shown: String = id.chars().filter(char::is_ascii_hexdigit).take(8).collect();
            return Err(OpenError::UnknownKey(shown));
        };
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: order_id.as_bytes(),
        };
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| OpenError::Tampered)?;
        String::from_utf8(plain).map_err(|_| OpenError::Tampered)
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .ok()
}

/// What may be shown of a token: its `tok_` prefix and last four characters
/// (`tok_visa` -> `tok_...visa`), as providers show a card's last four digits.
pub fn reference(token: &str) -> String {
    let rest = token.strip_prefix("tok_").unwrap_or(token);
    let chars: Vec<char> = rest.chars().collect();
    let last4: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("tok_...{last4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = "0193a5b0-7c1e-7d2a-9f3e-4b5c6d7e8f90";

    #[test]
    fn a_sealed_token_opens_for_its_order_and_shows_no_token() {
        let keys = TokenKeys::development();
        let sealed = keys.seal(ORDER, "tok_visa");
        assert!(!sealed.contains("tok_visa"), "{sealed}");
        assert!(sealed.starts_with(&format!("v1.{}.", keys.sealing_key_id())));
        assert_eq!(keys.open(ORDER, &sealed).as_deref(), Ok("tok_visa"));
        assert_ne!(
            sealed,
            keys.seal(ORDER, "tok_visa"),
            "a fresh nonce each time"
        );
    }

    #[test]
    fn a_sealed_token_moved_to_another_order_or_altered_does_not_open() {
        let keys = TokenKeys::development();
        let sealed = keys.seal(ORDER, "tok_visa");
        assert_eq!(
            keys.open("another-order", &sealed),
            Err(OpenError::Tampered)
        );
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert!(keys.open(ORDER, &altered).is_err());
        assert!(matches!(
            keys.open(ORDER, "tok_visa"),
            Err(OpenError::Malformed(_))
        ));
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        use base64::engine::general_purpose::STANDARD;
        let (old, new) = (STANDARD.encode([1u8; 32]), STANDARD.encode([2u8; 32]));
        let before = TokenKeys::parse(&old).expect("one key");
        let during = TokenKeys::parse(&format!("{new}, {old}")).expect("two keys");
        let after = TokenKeys::parse(&new).expect("one key");
        let sealed_before = before.seal(ORDER, "tok_visa");
        assert_eq!(
            during.open(ORDER, &sealed_before).as_deref(),
            Ok("tok_visa")
        );
        let sealed_during = during.seal(ORDER, "tok_visa");
        assert_eq!(after.open(ORDER, &sealed_during).as_deref(), Ok("tok_visa"));
        assert!(matches!(
            after.open(ORDER, &sealed_before),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64_and_errors_never_echo_them() {
        let err = TokenKeys::parse("c2hvcnQ=").expect_err("8 bytes");
        assert!(err.contains("32") && !err.contains("c2hvcnQ="), "{err}");
        let err = TokenKeys::parse("not base64!").expect_err("garbage");
        assert!(!err.contains("not base64!"), "{err}");
    }

    #[test]
    fn production_stages_need_a_key_and_test_stages_fall_back_to_the_development_key() {
        let cfg = |pairs: &[(&str, &str)]| {
            crate::Config::from_lookup(|k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
            .expect("config")
        };
        let dev = TokenKeys::from_config(&cfg(&[])).expect("local stage");
        assert_eq!(
            dev.sealing_key_id(),
            TokenKeys::development().sealing_key_id()
        );
        let err = TokenKeys::from_config(&cfg(&[("ORDERFLOW_STAGE", "prod")])).expect_err("no key");
        assert!(err.contains("PAYMENT_TOKEN_KEY"), "{err}");
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let keyed = [("ORDERFLOW_STAGE", "prod"), ("PAYMENT_TOKEN_KEY", key)];
        let prod = TokenKeys::from_config(&cfg(&keyed)).expect("keyed");
        assert_ne!(prod.sealing_key_id(), dev.sealing_key_id());
    }

    #[test]
    fn the_reference_keeps_the_prefix_and_last_four_characters() {
        assert_eq!(reference("tok_visa"), "tok_...visa");
        assert_eq!(reference("tok_chargeDeclined"), "tok_...ined");
        assert_eq!(reference("tok_1N3T00LkdIwHu7ixt44h1F8k"), "tok_...1F8k");
        assert_eq!(reference("tok_x"), "tok_...x");
        assert!(!reference("tok_visa").contains("tok_visa"));
    }
}
