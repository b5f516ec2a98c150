//! The `aws:rmq` trigger event, typed to accept what Amazon MQ's event source really sends:
//! `null` for absent properties, a formatted string for `timestamp`, string headers as
//! `{"bytes":[...]}`. `aws_lambda_events`' own type rejects `priority: null`, hence this one.
//! The local bridge builds the same JSON, so both paths go through one parser.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RmqEvent {
    #[serde(default)]
    pub event_source: Option<String>,
    #[serde(default)]
    pub event_source_arn: Option<String>,
    /// Keyed `"<queue>::<vhost>"`.
    #[serde(default)]
    pub rmq_messages_by_queue: BTreeMap<String, Vec<RmqMessage>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RmqMessage {
    #[serde(default)]
    pub basic_properties: BasicProperties,
    #[serde(default)]
    pub redelivered: bool,
    /// Base64 of the body.
    #[serde(default)]
    pub data: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicProperties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, HeaderValue>>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub expiration: Option<String>,
    pub message_id: Option<String>,
    /// AWS sends a formatted date string (`"Jan 1, 1970, 12:33:41 AM"`); numbers are accepted too.
    pub timestamp: Option<serde_json::Value>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub cluster_id: Option<String>,
    pub body_size: Option<u64>,
}

/// An AMQP header value as the event source renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// Strings (long strings) arrive as their UTF-8 bytes.
    Bytes {
        bytes: Vec<u8>,
    },
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<HeaderValue>),
    Table(BTreeMap<String, HeaderValue>),
    Null(()),
}

impl HeaderValue {
    pub fn from_str_value(s: &str) -> Self {
        HeaderValue::Bytes {
            bytes: s.as_bytes().to_vec(),
        }
    }

    /// The value as text, where it is text or a number.
    pub fn as_text(&self) -> Option<String> {
        match self {
            HeaderValue::Bytes { bytes } => String::from_utf8(bytes.clone()).ok(),
            HeaderValue::String(s) => Some(s.clone()),
            HeaderValue::Int(i) => Some(i.to_string()),
            HeaderValue::Float(f) => Some(f.to_string()),
            HeaderValue::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            HeaderValue::Int(i) => Some(*i),
            other => other.as_text()?.parse().ok(),
        }
    }
}

/// Format of `basicProperties.timestamp` in real events.
pub const AWS_TIMESTAMP_FORMAT: &str = "%b %-d, %Y, %-I:%M:%S %p";

impl BasicProperties {
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.as_ref()?.get(name)
    }

    pub fn header_text(&self, name: &str) -> Option<String> {
        self.header(name)?.as_text()
    }
}

impl RmqMessage {
    pub fn body(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(self.data.trim())
    }
}

/// Split an `rmqMessagesByQueue` key into queue and vhost.
pub fn split_queue_key(key: &str) -> (&str, &str) {
    key.rsplit_once("::").unwrap_or((key, "/"))
}

pub fn queue_key(queue: &str, vhost: &str) -> String {
    format!("{queue}::{vhost}")
}

impl RmqEvent {
    /// Every message with the queue it came from, in delivery order.
    pub fn messages(&self) -> impl Iterator<Item = (&str, &RmqMessage)> {
        self.rmq_messages_by_queue
            .iter()
            .flat_map(|(key, msgs)| msgs.iter().map(move |m| (split_queue_key(key).0, m)))
    }

    pub fn len(&self) -> usize {
        self.rmq_messages_by_queue.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds the trigger's view of one AMQP delivery, exactly as the Amazon MQ event source
/// renders it: base64 body, string headers as bytes, absent properties as `null`.
pub fn message_from_amqp(
    props: &lapin::BasicProperties,
    body: &[u8],
    redelivered: bool,
) -> RmqMessage {
    let short = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|v| v.as_str().to_string());
    RmqMessage {
        basic_properties: BasicProperties {
            content_type: short(props.content_type()),
            content_encoding: short(props.content_encoding()),
            headers: props.headers().as_ref().map(|t| {
                t.inner()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), header_from_amqp(v)))
                    .collect()
            }),
            delivery_mode: *props.delivery_mode(),
            priority: *props.priority(),
            correlation_id: short(props.correlation_id()),
            reply_to: short(props.reply_to()),
            expiration: short(props.expiration()),
            message_id: short(props.message_id()),
            timestamp: props.timestamp().and_then(|secs| {
                chrono::DateTime::from_timestamp(secs as i64, 0)
                    .map(|t| serde_json::Value::String(t.format(AWS_TIMESTAMP_FORMAT).to_string()))
            }),
            type_: short(props.kind()),
            user_id: short(props.user_id()),
            app_id: short(props.app_id()),
            cluster_id: short(props.cluster_id()),
            body_size: Some(body.len() as u64),
        },
        redelivered,
        data: base64::engine::general_purpose::STANDARD.encode(body),
    }
}

fn header_from_amqp(v: &lapin::types::AMQPValue) -> HeaderValue {
    use lapin::types::AMQPValue as A;
    match v {
        A::Boolean(b) => HeaderValue::Bool(*b),
        A::ShortShortInt(i) => HeaderValue::Int(i64::from(*i)),
        A::ShortShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        A::ShortInt(i) => HeaderValue::Int(i64::from(*i)),
        A::ShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        A::LongInt(i) => HeaderValue::Int(i64::from(*i)),
        A::LongUInt(i) => HeaderValue::Int(i64::from(*i)),
        A::LongLongInt(i) => HeaderValue::Int(*i),
        A::Timestamp(t) => HeaderValue::Int(*t as i64),
        A::Float(f) => HeaderValue::Float(f64::from(*f)),
        A::Double(f) => HeaderValue::Float(*f),
        A::DecimalValue(d) => {
            HeaderValue::Float(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        A::ShortString(s) => HeaderValue::Bytes {
            bytes: s.as_str().as_bytes().to_vec(),
        },
        A::LongString(s) => HeaderValue::Bytes {
            bytes: s.as_bytes().to_vec(),
        },
        A::ByteArray(b) => HeaderValue::Bytes {
            bytes: b.as_slice().to_vec(),
        },
        A::FieldArray(a) => HeaderValue::Array(a.as_slice().iter().map(header_from_amqp).collect()),
        A::FieldTable(t) => HeaderValue::Table(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), header_from_amqp(v)))
                .collect(),
        ),
        A::Void => HeaderValue::Null(()),
    }
}

/// An `aws:rmq` event holding `messages` from one queue, as the trigger would invoke with.
pub fn event_for_queue(queue: &str, vhost: &str, messages: Vec<RmqMessage>) -> RmqEvent {
    let mut by_queue = BTreeMap::new();
    by_queue.insert(queue_key(queue, vhost), messages);
    RmqEvent {
        event_source: Some("aws:rmq".into()),
        event_source_arn: Some("arn:aws:mq:local:000000000000:broker:orderflow:b-local".into()),
        rmq_messages_by_queue: by_queue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the sample in the AWS Lambda developer guide ("Using Lambda with Amazon MQ").
    const AWS_SAMPLE: &str = r#"{
      "eventSource": "aws:rmq",
      "eventSourceArn": "arn:aws:mq:us-west-2:111122223333:broker:pizzaBroker:b-9bcfa592-423a-4942-879d-eb284b418fc8",
      "rmqMessagesByQueue": {
        "pizzaQueue::/": [
          {
            "basicProperties": {
              "contentType": "text/plain",
              "contentEncoding": null,
              "headers": {
                "header1": {"bytes": [118, 97, 108, 117, 101, 49]},
                "numberInHeader": 10
              },
              "deliveryMode": 1,
              "priority": null,
              "correlationId": null,
              "replyTo": null,
              "expiration": "60000",
              "messageId": null,
              "timestamp": "Jan 1, 1970, 12:33:41 AM",
              "type": null,
              "userId": "AIDACKCEVSQ6C2EXAMPLE",
              "appId": null,
              "clusterId": null,
              "bodySize": 80
            },
            "redelivered": false,
            "data": "eyJ0aW1lb3V0IjowLCJkYXRhIjoiQ1pybWYwR3c4T3Y0YnFMUXhENEUifQ=="
          }
        ]
      }
    }"#;

    #[test]
    fn parses_what_aws_sends_with_null_priority_and_byte_headers() {
        let ev: RmqEvent = serde_json::from_str(AWS_SAMPLE).expect("parses");
        let (queue, msg) = ev.messages().next().expect("one message");
        assert_eq!(queue, "pizzaQueue");
        assert_eq!(msg.basic_properties.priority, None);
        assert_eq!(
            msg.basic_properties.header_text("header1").as_deref(),
            Some("value1")
        );
        assert_eq!(
            msg.basic_properties
                .header("numberInHeader")
                .and_then(HeaderValue::as_i64),
            Some(10)
        );
        assert_eq!(
            msg.body().expect("base64"),
            br#"{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}"#
        );
    }

    #[test]
    fn parses_a_message_with_absent_fields() {
        let ev: RmqEvent = serde_json::from_str(
            r#"{"rmqMessagesByQueue":{"q::/":[{"data":"","basicProperties":{}}]}}"#,
        )
        .expect("parses");
        assert_eq!(ev.len(), 1);
        let ev: RmqEvent = serde_json::from_str(r#"{"rmqMessagesByQueue":{"q::/":[{"data":""}]}}"#)
            .expect("parses");
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn vhost_is_split_from_the_queue_key() {
        assert_eq!(split_queue_key("orders::/"), ("orders", "/"));
        assert_eq!(split_queue_key("a::b::prod"), ("a::b", "prod"));
        assert_eq!(queue_key("q", "/"), "q::/");
    }
}
