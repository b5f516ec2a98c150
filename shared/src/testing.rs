//! Test harness (feature `testing`): an isolated environment on the real local servers
//! (a fresh database, a random name prefix for queues and Redis keys), helpers to build
//! trigger events and read what was published, and a log capture to check what the logs
//! give away.

use crate::context::Context;
use crate::envelope::{Encoding, Envelope};
use crate::publisher::{OutMessage, RecordingPublisher};
use crate::rmq::{RmqEvent, RmqMessage};
use sqlx::{Connection as _, PgConnection};
use std::sync::Arc;

pub const ADMIN_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestEnv {
    pub ctx: Context,
    pub publisher: RecordingPublisher,
    pub database_url: String,
    pub prefix: String,
}

/// The admin URL, overridable with `TEST_DATABASE_ADMIN_URL`.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL").unwrap_or_else(|_| ADMIN_DATABASE_URL.into())
}

/// Creates a fresh database (`of_test_<random>`) and returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let name = format!("of_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("test Postgres reachable (see README: services)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin);
    format!("{base}/{name}")
}

pub fn random_prefix() -> String {
    format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

impl TestEnv {
    /// A fresh database and prefix, a context whose publisher records instead of sending.
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(tweak: impl FnOnce(&mut crate::Config)) -> Self {
        let database_url = fresh_database().await;
        let prefix = random_prefix();
        let mut config = crate::Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some(database_url.clone()),
            "ORDERFLOW_PREFIX" => Some(prefix.clone()),
            "REDIS_URL" => std::env::var("REDIS_URL").ok(),
            "AMQP_URL" => std::env::var("AMQP_URL").ok(),
            _ => None,
        })
        .expect("test config");
        tweak(&mut config);
        let publisher = RecordingPublisher::default();
        let pool = crate::db::pool(&config.database_url, 5).expect("pool");
        let ctx =
            Context::with_publisher(config, pool, Arc::new(publisher.clone())).expect("context");
        TestEnv {
            ctx,
            publisher,
            database_url,
            prefix,
        }
    }

    /// Runs a service's migrations in this environment's database.
    pub async fn migrate(&self, schema: &str, migrator: &sqlx::migrate::Migrator) {
        crate::db::migrate(&self.database_url, schema, migrator)
            .await
            .expect("migrations");
    }

    /// An `aws:rmq` event delivering `events` on `queue`, encoded as on the wire.
    pub fn rmq_event(&self, queue: &str, events: &[Envelope], encoding: Encoding) -> RmqEvent {
        let msgs = events
            .iter()
            .map(|e| self.rmq_message(e, encoding, false))
            .collect();
        crate::rmq::event_for_queue(&self.ctx.names.queue(queue), "/", msgs)
    }

    pub fn rmq_message(&self, env: &Envelope, encoding: Encoding, redelivered: bool) -> RmqMessage {
        let out = OutMessage::event(&self.ctx.names, env, encoding);
        crate::rmq::message_from_amqp(
            &crate::publisher::amqp_properties(&out),
            &out.body,
            redelivered,
        )
    }

    /// Events published to the events exchange so far, decoded.
    pub fn published(&self) -> Vec<Envelope> {
        self.publisher
            .sent()
            .iter()
            .filter(|m| m.exchange == self.ctx.names.events_exchange())
            .filter_map(|m| {
                let enc = Encoding::from_content_type(Some(&m.content_type)).ok()?;
                Envelope::decode(&m.body, enc).ok()
            })
            .collect()
    }

    pub fn published_types(&self) -> Vec<String> {
        self.published().into_iter().map(|e| e.event_type).collect()
    }

    /// Messages parked on the dead-letter exchange so far.
    pub fn parked(&self) -> Vec<OutMessage> {
        self.publisher
            .sent()
            .into_iter()
            .filter(|m| m.exchange == self.ctx.names.dead_letter_exchange())
            .collect()
    }

    pub fn clear_published(&self) {
        if let Ok(mut v) = self.publisher.sent.lock() {
            v.clear();
        }
    }
}

/// Every log line written while it is installed, as JSON (event fields and the fields of
/// every enclosing span), for tests that check what the logs give away.
#[derive(Clone, Default)]
pub struct LogCapture {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
}

/// Appends to a `LogCapture`.
pub struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buf) = self.0.lock() {
            buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(self.buf.clone())
    }
}

impl LogCapture {
    /// A subscriber writing here what `filter` (an `EnvFilter` directive) lets through,
    /// formatted as the functions log on Lambda (JSON, span fields included).
    pub fn subscriber(&self, filter: &str) -> impl tracing::Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(self.clone())
            .finish()
    }

    /// Installs `subscriber(filter)` for the whole process (every thread and task); `None`
    /// when another global subscriber was installed first.
    pub fn install(filter: &str) -> Option<Self> {
        let capture = LogCapture::default();
        tracing::subscriber::set_global_default(capture.subscriber(filter)).ok()?;
        Some(capture)
    }

    /// The lines captured so far.
    pub fn lines(&self) -> Vec<String> {
        let buf = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The lines that give away any of `secrets`, each with the secret it shows. A secret is
/// also found JSON-escaped, and case-insensitively (an e-mail address may be lowercased).
pub fn leaks(lines: &[String], secrets: &[&str]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in lines {
        let lower = line.to_lowercase();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            let escaped = serde_json::to_string(secret).unwrap_or_default();
            let escaped = escaped.trim_matches('"').to_lowercase();
            if lower.contains(&secret.to_lowercase()) || lower.contains(&escaped) {
                found.push((secret.to_string(), line.clone()));
            }
        }
    }
    found
}
