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

/// An AMQP header value as the event source renders it. Read by a hand-written visitor
/// (below) rather than `#[serde(untagged)]`, which buffers every value and tries each
/// variant in turn: with a string header being an array of byte numbers, that was the
/// largest cost per message of parsing a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> serde::de::Visitor<'de> for HeaderVisitor {
    type Value = HeaderValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an AMQP header value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<HeaderValue, E> {
        Ok(HeaderValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<HeaderValue, E> {
        Ok(HeaderValue::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<HeaderValue, E> {
        // Beyond i64, a number can only be kept as a float (as the untagged form did).
        Ok(i64::try_from(v).map_or(HeaderValue::Float(v as f64), HeaderValue::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<HeaderValue, E> {
        Ok(HeaderValue::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<HeaderValue, E> {
        Ok(HeaderValue::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<HeaderValue, E> {
        Ok(HeaderValue::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<HeaderValue, E> {
        Ok(HeaderValue::Bytes { bytes: v.to_vec() })
    }

    fn visit_unit<E>(self) -> Result<HeaderValue, E> {
        Ok(HeaderValue::Null(()))
    }

    fn visit_none<E>(self) -> Result<HeaderValue, E> {
        Ok(HeaderValue::Null(()))
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<HeaderValue, D::Error> {
        HeaderValue::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(HeaderValue::Array(items))
    }

    /// `{"bytes": [..]}` is a string header; any other object is a table. A `bytes` entry
    /// that is an array of byte values wins whatever else the object holds, as it did when
    /// this type was untagged.
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<HeaderValue, A::Error> {
        let mut table = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, HeaderValue>()? {
            table.insert(key, value);
        }
        if let Some(HeaderValue::Array(items)) = table.get("bytes")
            && let Some(bytes) = items
                .iter()
                .map(|v| match v {
                    HeaderValue::Int(i) => u8::try_from(*i).ok(),
                    _ => None,
                })
                .collect::<Option<Vec<u8>>>()
        {
            return Ok(HeaderValue::Bytes { bytes });
        }
        Ok(HeaderValue::Table(table))
    }
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
    fn header_values_of_every_shape_are_read_as_the_untagged_form_read_them() {
        let headers: BTreeMap<String, HeaderValue> = serde_json::from_str(
            r#"{"s":{"bytes":[104,105]},"empty":{"bytes":[]},"b":true,"i":-3,
                "big":18446744073709551615,"f":1.5,"plain":"x","n":null,
                "arr":[1,{"bytes":[97]}],"table":{"k":{"bytes":[98]},"depth":2},
                "not_bytes":{"bytes":[1,300]},"bytes_plus":{"bytes":[99],"other":1}}"#,
        )
        .expect("parses");
        let get = |k: &str| headers.get(k).cloned().expect(k);
        assert_eq!(get("s"), HeaderValue::from_str_value("hi"));
        assert_eq!(get("empty"), HeaderValue::Bytes { bytes: vec![] });
        assert_eq!(get("b"), HeaderValue::Bool(true));
        assert_eq!(get("i"), HeaderValue::Int(-3));
        assert_eq!(get("big"), HeaderValue::Float(u64::MAX as f64));
        assert_eq!(get("f"), HeaderValue::Float(1.5));
        assert_eq!(get("plain"), HeaderValue::String("x".into()));
        assert_eq!(get("n"), HeaderValue::Null(()));
        assert_eq!(
            get("arr"),
            HeaderValue::Array(vec![HeaderValue::Int(1), HeaderValue::from_str_value("a")])
        );
        assert_eq!(
            get("table"),
            HeaderValue::Table(BTreeMap::from([
                ("depth".to_string(), HeaderValue::Int(2)),
                ("k".to_string(), HeaderValue::from_str_value("b")),
            ]))
        );
        // 300 is no byte: a table holding an array, not a string.
        assert!(matches!(get("not_bytes"), HeaderValue::Table(_)));
        assert_eq!(get("bytes_plus"), HeaderValue::from_str_value("c"));
        // What the bridge writes reads back as itself.
        for (k, v) in &headers {
            let again: HeaderValue =
                serde_json::from_value(serde_json::to_value(v).expect("json")).expect(k);
            assert_eq!(&again, v, "{k}");
        }
    }

    #[test]
    fn vhost_is_split_from_the_queue_key() {
        assert_eq!(split_queue_key("orders::/"), ("orders", "/"));
        assert_eq!(split_queue_key("a::b::prod"), ("a::b", "prod"));
        assert_eq!(queue_key("q", "/"), "q::/");
    }
}
