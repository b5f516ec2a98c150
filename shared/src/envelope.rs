//! The envelope every message travels in, its two encodings, and its AMQP properties.

use crate::contracts::{Payload, SCHEMA_VERSION};
use prost::Message as _;
use std::collections::BTreeMap;

pub use crate::contracts::Envelope;

pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Header names that carry envelope metadata beside the standard AMQP properties.
pub mod headers {
    pub const TRACEPARENT: &str = "traceparent";
    pub const CAUSATION_ID: &str = "causation_id";
    pub const SCHEMA_VERSION: &str = "schema_version";
}

/// Wire encoding, chosen by the message's `content_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => CONTENT_TYPE_PROTOBUF,
            Encoding::Json => CONTENT_TYPE_JSON,
        }
    }

    /// Protobuf when absent, as on our wire; parameters such as `; charset=utf-8` are ignored.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, DecodeError> {
        let Some(ct) = content_type else {
            return Ok(Encoding::Protobuf);
        };
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | CONTENT_TYPE_PROTOBUF | "application/protobuf" | "application/octet-stream" => {
                Ok(Encoding::Protobuf)
            }
            CONTENT_TYPE_JSON => Ok(Encoding::Json),
            _ => Err(DecodeError::ContentType(ct.to_string())),
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "protobuf" | "proto" => Ok(Encoding::Protobuf),
            "json" => Ok(Encoding::Json),
            other => Err(format!("unknown encoding {other:?} (protobuf or json)")),
        }
    }
}

/// Why a body could not become an envelope: always permanent, the message gets parked.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    #[error("invalid protobuf body: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("envelope has no payload (unknown or missing event type)")]
    NoPayload,
    #[error("envelope event_type {declared:?} does not match its payload {actual:?}")]
    TypeMismatch { declared: String, actual: String },
    #[error("envelope has an invalid event_id {0:?}")]
    EventId(String),
    #[error("schema version {0} is newer than this consumer understands")]
    SchemaVersion(u32),
}

impl Envelope {
    /// A new event caused by `causation` (or the first of its chain when `None`).
    pub fn new(payload: Payload, causation: Option<&Envelope>) -> Self {
        let correlation_id = payload
            .order_id()
            .map(str::to_string)
            .or_else(|| causation.map(|c| c.correlation_id.clone()))
            .unwrap_or_default();
        Envelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: payload.event_type().to_string(),
            schema_version: SCHEMA_VERSION,
            occurred_at_ms: chrono::Utc::now().timestamp_millis(),
            correlation_id,
            causation_id: causation.map(|c| c.event_id.clone()).unwrap_or_default(),
            traceparent: causation
                .map(|c| crate::telemetry::child_traceparent(&c.traceparent))
                .unwrap_or_else(crate::telemetry::new_traceparent),
            payload: Some(payload),
        }
    }

    pub fn payload(&self) -> &Payload {
        // Every constructed or decoded envelope has a payload (checked in `decode`).
        self.payload.as_ref().unwrap_or(&NO_PAYLOAD)
    }

    pub fn event_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::parse_str(&self.event_id).unwrap_or_default()
    }

    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => self.encode_to_vec(),
            // Serialising generated types cannot fail: no maps with non-string keys.
            Encoding::Json => serde_json::to_vec(self).unwrap_or_default(),
        }
    }

    /// Decode and check a body: a payload must be present and agree with `event_type`.
    pub fn decode(body: &[u8], encoding: Encoding) -> Result<Self, DecodeError> {
        let env: Envelope = match encoding {
            Encoding::Protobuf => Envelope::decode_from(body)?,
            Encoding::Json => serde_json::from_slice(body)?,
        };
        let Some(payload) = env.payload.as_ref() else {
            return Err(DecodeError::NoPayload);
        };
        let actual = payload.event_type();
        if !env.event_type.is_empty() && env.event_type != actual {
            return Err(DecodeError::TypeMismatch {
                declared: env.event_type.clone(),
                actual: actual.to_string(),
            });
        }
        if uuid::Uuid::parse_str(&env.event_id).is_err() {
            return Err(DecodeError::EventId(env.event_id.clone()));
        }
        if env.schema_version > SCHEMA_VERSION {
            return Err(DecodeError::SchemaVersion(env.schema_version));
        }
        let mut env = env;
        env.event_type = actual.to_string();
        Ok(env)
    }

    fn decode_from(body: &[u8]) -> Result<Self, prost::DecodeError> {
        <Envelope as prost::Message>::decode(body)
    }

    /// Envelope metadata as AMQP headers (the properties proper are set by the publisher).
    pub fn amqp_headers(&self) -> BTreeMap<&'static str, String> {
        let mut h = BTreeMap::new();
        h.insert(headers::TRACEPARENT, self.traceparent.clone());
        h.insert(headers::CAUSATION_ID, self.causation_id.clone());
        h.insert(headers::SCHEMA_VERSION, self.schema_version.to_string());
        h
    }
}

static NO_PAYLOAD: Payload = Payload::PaymentVoided(crate::contracts::PaymentVoided {
    order_id: String::new(),
    payment_id: String::new(),
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::*;

    fn sample() -> Envelope {
        Envelope::new(
            Payload::OrderCreated(OrderCreated {
                order_id: "0190f0c2-0000-7000-8000-000000000001".into(),
                user_id: "u1".into(),
                customer_email: "a@example.com".into(),
                items: vec![OrderLine {
                    product_id: "sku-1".into(),
                    quantity: 2,
                    unit_price_cents: 1999,
                }],
                total_cents: 3998,
                currency: "EUR".into(),
                payment_token_sealed: crate::payment_token::TokenKeys::development()
                    .seal("0190f0c2-0000-7000-8000-000000000001", "tok_visa"),
                payment_ref: crate::payment_token::reference("tok_visa"),
                ..Default::default()
            }),
            None,
        )
    }

    #[test]
    fn protobuf_and_json_round_trip_to_the_same_envelope() {
        let env = sample();
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let back = Envelope::decode(&env.encode(enc), enc).expect("decodes");
            assert_eq!(back, env, "{enc:?}");
        }
    }

    #[test]
    fn json_writes_enums_by_name_and_reads_names_or_numbers() {
        let env = Envelope::new(
            Payload::PaymentProcessed(PaymentProcessed {
                order_id: "o".into(),
                status: PaymentStatus::Failed as i32,
                ..Default::default()
            }),
            None,
        );
        let json = String::from_utf8(env.encode(Encoding::Json)).expect("utf8");
        assert!(json.contains("\"PAYMENT_STATUS_FAILED\""), "{json}");
        let numeric = json.replace("\"PAYMENT_STATUS_FAILED\"", "2");
        let back = Envelope::decode(numeric.as_bytes(), Encoding::Json).expect("decodes");
        assert_eq!(back, env);
    }

    #[test]
    fn correlation_and_causation_follow_the_cause() {
        let first = sample();
        let next = Envelope::new(
            Payload::StockReserved(StockReserved {
                order_id: first.correlation_id.clone(),
                items: vec![],
            }),
            Some(&first),
        );
        assert_eq!(next.causation_id, first.event_id);
        assert_eq!(next.correlation_id, first.correlation_id);
        assert_eq!(
            &next.traceparent[3..35],
            &first.traceparent[3..35],
            "same trace id"
        );
        assert_ne!(next.traceparent, first.traceparent, "new span id");
    }

    #[test]
    fn garbage_and_mismatched_bodies_are_rejected_with_a_reason() {
        assert!(matches!(
            Envelope::decode(b"\xff\xff\xff", Encoding::Protobuf),
            Err(DecodeError::Protobuf(_))
        ));
        assert!(matches!(
            Envelope::decode(b"{", Encoding::Json),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            Envelope::decode(b"{}", Encoding::Json),
            Err(DecodeError::NoPayload)
        ));
        let mut env = sample();
        env.event_type = "stock.reserved".into();
        let err = Envelope::decode(&env.encode(Encoding::Json), Encoding::Json).unwrap_err();
        assert!(matches!(err, DecodeError::TypeMismatch { .. }), "{err}");
    }

    #[test]
    fn content_type_picks_the_codec() {
        assert_eq!(
            Encoding::from_content_type(None).ok(),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type(Some("application/json; charset=utf-8")).ok(),
            Some(Encoding::Json)
        );
        assert!(Encoding::from_content_type(Some("text/plain")).is_err());
    }

    #[test]
    fn protobuf_is_smaller_than_json_for_an_order() {
        let env = sample();
        let (p, j) = (
            env.encode(Encoding::Protobuf).len(),
            env.encode(Encoding::Json).len(),
        );
        assert!(p < j, "protobuf {p} bytes, json {j} bytes");
    }
}
