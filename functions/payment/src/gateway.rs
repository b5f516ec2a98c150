//! The payment gateway port, the choice of its adapter, and a simulated gateway answering
//! like the well-known providers' test tokens do (`tok_visa` approves, `tok_chargeDeclined`
//! declines, ...). The HTTP adapter for a real provider is `http_gateway`.
//!
//! The adapter is chosen explicitly by `PAYMENT_GATEWAY` (`simulated` or `http`). In a test
//! stage an unset value means the simulator, and off Lambda the stage defaults to `local`,
//! so `orderflow up`, the demo and the tests need no setting; on Lambda the stage has no
//! default, so the choice must be said, and the simulator is refused unless
//! `ORDERFLOW_STAGE` is a test stage: a deploy that forgot to configure the provider fails at
//! init instead of approving every `tok_visa` for free.
//!
//! Every call carries an idempotency key derived from the event that caused it (see
//! `call_key`), as real providers accept one: a redelivered event repeats the call with the
//! same key and gets the first answer back, so a rolled-back transaction followed by a retry
//! never charges twice. The simulator keeps its own record of calls (`gateway_sim.calls`),
//! outside the consumer's transaction, the way a provider's dashboard would show them:
//! `orderflow verify` reconciles the payments ledger against it.

use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

/// An approved authorization: our payment id, the provider's own id of it, and the card's
/// last four digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub payment_id: Uuid,
    /// What capture, void and refund name at the provider (a PaymentIntent id, `pi_...`).
    pub provider_ref: String,
    pub last4: String,
}

/// A declined authorization with the gateway's code (`card_declined`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub code: String,
}

/// An accepted refund: the gateway's own id of it (`re_...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub gateway_refund_id: String,
}

/// What a gateway answers to one refund it did not make.
#[derive(Debug)]
pub enum RefundError {
    /// The gateway refused it (more than is left of the capture, a closed account, ...),
    /// with its code: final, the refund has failed.
    Declined(Decline),
    /// The gateway could not be asked (outage): transient, the message is retried.
    Unavailable(anyhow::Error),
}

/// What the payment functions ask a gateway for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Authorize,
    Capture,
    Void,
    Refund,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Authorize => "authorize",
            CallKind::Capture => "capture",
            CallKind::Void => "void",
            CallKind::Refund => "refund",
        }
    }
}

/// The idempotency key of the call `kind` caused by event `event_id`: the same event always
/// makes the same call, whichever delivery of it runs.
pub fn call_key(kind: CallKind, event_id: &str) -> String {
    format!("{}:{event_id}", kind.as_str())
}

/// One authorization request.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    pub idempotency_key: &'a str,
    pub order_id: &'a str,
    pub token: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
}

/// What a gateway answers to one authorization.
#[derive(Debug)]
pub enum AuthorizeError {
    Declined(Decline),
    /// The gateway could not be asked (outage): transient, the message is retried.
    Unavailable(anyhow::Error),
}

/// A capture, void or refund of an earlier authorization.
#[derive(Debug, Clone, Copy)]
pub struct SettleRequest<'a> {
    pub idempotency_key: &'a str,
    pub order_id: &'a str,
    pub payment_id: Uuid,
    /// The provider's id of the authorization (`Authorization::provider_ref`).
    pub provider_ref: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
}

/// What the payment functions need from a gateway. An `Err` from capture or void is an
/// outage (transient: the message is retried with the same key); a refund can also be
/// declined.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn authorize(&self, req: AuthorizeRequest<'_>) -> Result<Authorization, AuthorizeError>;
    async fn capture(&self, req: SettleRequest<'_>) -> anyhow::Result<()>;
    async fn void(&self, req: SettleRequest<'_>) -> anyhow::Result<()>;
    /// Gives back `amount_cents` of a captured payment (all or part of it). A gateway
    /// refuses to give back more than was captured and not yet refunded.
    async fn refund(&self, req: SettleRequest<'_>) -> Result<Refund, RefundError>;
}

/// Whether `cfg` runs the simulated gateway, whose record (`gateway_sim.calls`) is then the
/// gateway's side of the books; a real provider keeps its own.
pub fn uses_simulator(cfg: &shared::Config) -> bool {
    match cfg.payment_gateway.as_deref() {
        Some(choice) => choice.trim().eq_ignore_ascii_case("simulated"),
        None => cfg.is_test_stage(),
    }
}

/// The adapter `cfg` asks for (see the module comment), or why it cannot be used.
pub fn from_config(cfg: &shared::Config) -> Result<std::sync::Arc<dyn PaymentGateway>, String> {
    let choice = match cfg.payment_gateway.as_deref() {
        Some(choice) => choice.trim().to_ascii_lowercase(),
        // Off Lambda the stage defaults to `local`, so `orderflow up` and the tests get the
        // simulator unasked; on Lambda the stage has no default, so the choice must be said.
        None if cfg.is_test_stage() => "simulated".into(),
        None => {
            return Err(format!(
                "PAYMENT_GATEWAY must be set in stage {:?}: http (a real provider) or \
                 simulated (test stages only)",
                cfg.stage
            ));
        }
    };
    match choice.as_str() {
        "simulated" if !cfg.is_test_stage() => Err(format!(
            "PAYMENT_GATEWAY=simulated approves test tokens without charging anyone, so it runs \
             only in a test stage (ORDERFLOW_STAGE one of {:?}), and this is stage {:?}: set \
             PAYMENT_GATEWAY=http with PAYMENT_GATEWAY_URL and PAYMENT_GATEWAY_API_KEY",
            shared::config::TEST_STAGES,
            cfg.stage
        )),
        "simulated" => SimulatedGateway::new(&cfg.database_url)
            .map(|g| std::sync::Arc::new(g) as std::sync::Arc<dyn PaymentGateway>)
            .map_err(|e| format!("the simulated gateway: {e}")),
        "http" => {
            let url = cfg
                .payment_gateway_url
                .as_deref()
                .ok_or("PAYMENT_GATEWAY=http needs PAYMENT_GATEWAY_URL")?;
            let key = cfg
                .payment_gateway_api_key
                .as_ref()
                .ok_or("PAYMENT_GATEWAY=http needs PAYMENT_GATEWAY_API_KEY")?;
            crate::http_gateway::HttpGateway::new(url, key.expose())
                .map(|g| std::sync::Arc::new(g) as std::sync::Arc<dyn PaymentGateway>)
        }
        other => Err(format!(
            "PAYMENT_GATEWAY={other:?} is neither simulated nor http"
        )),
    }
}

/// Decides by test token, never declines a capture or void, declines a refund above what
/// is left of the payment's captures (`amount_too_large`, the providers' code); remembers
/// every call by its
/// idempotency key in `gateway_sim.calls` (on its own connections, outside any consumer
/// transaction).
#[derive(Debug, Clone)]
pub struct SimulatedGateway {
    pool: PgPool,
}

/// One call as the simulated gateway recorded it (for `orderflow verify`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayCall {
    pub idempotency_key: String,
    pub kind: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub payment_id: Option<Uuid>,
    pub outcome: String,
    /// How many times the key was presented (1 = never repeated).
    pub calls: i64,
    /// The gateway's id of a refund it made.
    pub refund_id: Option<String>,
}

impl SimulatedGateway {
    /// The simulator's record lives in the service's database but on connections of its own
    /// with `synchronous_commit` off: it stands in for a remote provider, and its writes
    /// should not cost the consumer a second flushed commit per call.
    pub fn new(database_url: &str) -> anyhow::Result<Self> {
        let opts = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(database_url)?
            .options([("synchronous_commit", "off")]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(opts);
        Ok(SimulatedGateway { pool })
    }

    /// The answer for a token: last four digits on approval, the decline code otherwise.
    pub fn decide(token: &str) -> Result<&'static str, &'static str> {
        match token {
            "tok_visa" => Ok("4242"),
            "tok_mastercard" => Ok("4444"),
            "tok_chargeDeclined" => Err("card_declined"),
            "tok_chargeDeclinedInsufficientFunds" => Err("insufficient_funds"),
            // Other tok_ values, and anything else (which the functions refuse before asking).
            _ => Err("invalid_token"),
        }
    }

    /// Records the call under its key, or counts a repeat and returns the first answer:
    /// `(payment_id, outcome, decline_code, last4)`.
    #[allow(clippy::too_many_arguments)]
    async fn remember(
        &self,
        key: &str,
        kind: CallKind,
        order_id: &str,
        amount_cents: i64,
        currency: &str,
        payment_id: Option<Uuid>,
        outcome: &str,
        decline_code: Option<&str>,
        last4: Option<&str>,
    ) -> anyhow::Result<(Option<Uuid>, String, Option<String>, Option<String>)> {
        Ok(sqlx::query_as(
            "INSERT INTO gateway_sim.calls
                 (idempotency_key, kind, order_id, amount_cents, currency, payment_id, outcome, decline_code, last4)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (idempotency_key) DO UPDATE
                 SET calls = gateway_sim.calls.calls + 1, last_at = now()
             RETURNING payment_id, outcome, decline_code, last4",
        )
        .bind(key)
        .bind(kind.as_str())
        .bind(order_id)
        .bind(amount_cents)
        .bind(currency)
        .bind(payment_id)
        .bind(outcome)
        .bind(decline_code)
        .bind(last4)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn settle(&self, kind: CallKind, req: SettleRequest<'_>) -> anyhow::Result<()> {
        self.remember(
            req.idempotency_key,
            kind,
            req.order_id,
            req.amount_cents,
            req.currency,
            Some(req.payment_id),
            "succeeded",
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// A refund, decided against the payment's record under a lock on the payment (two
    /// refunds of one payment cannot both take its last cents): the first answer of a
    /// repeated key, or a new refund of at most what is captured and not yet refunded.
    /// Returns `(outcome, decline_code, refund_id)`.
    async fn refund_once(
        &self,
        req: SettleRequest<'_>,
    ) -> anyhow::Result<(String, Option<String>, Option<String>)> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
            .bind(req.payment_id)
            .execute(&mut *tx)
            .await?;
        let repeated: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "UPDATE gateway_sim.calls SET calls = calls + 1, last_at = now()
             WHERE idempotency_key = $1 RETURNING outcome, decline_code, refund_id",
        )
        .bind(req.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(first) = repeated {
            tx.commit().await?;
            return Ok(first);
        }
        let left: i64 = sqlx::query_scalar(
            "SELECT (COALESCE(sum(amount_cents) FILTER (WHERE kind = 'capture'), 0)
                   - COALESCE(sum(amount_cents) FILTER (WHERE kind = 'refund'), 0))::bigint
             FROM gateway_sim.calls WHERE payment_id = $1 AND outcome = 'succeeded'",
        )
        .bind(req.payment_id)
        .fetch_one(&mut *tx)
        .await?;
        let answer = if req.amount_cents <= 0 || req.amount_cents > left {
            (
                "declined".to_string(),
                Some("amount_too_large".to_string()),
                None,
            )
        } else {
            let id = format!("re_sim_{}", Uuid::now_v7().simple());
            ("succeeded".to_string(), None, Some(id))
        };
        sqlx::query(
            "INSERT INTO gateway_sim.calls
                 (idempotency_key, kind, order_id, amount_cents, currency, payment_id, outcome,
                  decline_code, refund_id)
             VALUES ($1, 'refund', $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(req.idempotency_key)
        .bind(req.order_id)
        .bind(req.amount_cents)
        .bind(req.currency)
        .bind(req.payment_id)
        .bind(&answer.0)
        .bind(&answer.1)
        .bind(&answer.2)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(answer)
    }

    /// Every call the simulator answered, by key (for `orderflow verify`).
    pub async fn calls(conn: &mut sqlx::PgConnection) -> sqlx::Result<Vec<GatewayCall>> {
        sqlx::query_as(
            "SELECT idempotency_key, kind, order_id, amount_cents, payment_id, outcome,
                    calls::bigint AS calls, refund_id
             FROM gateway_sim.calls ORDER BY order_id, first_at",
        )
        .fetch_all(conn)
        .await
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn authorize(&self, req: AuthorizeRequest<'_>) -> Result<Authorization, AuthorizeError> {
        let (payment_id, outcome, code, last4) = match Self::decide(req.token) {
            Ok(last4) => (Some(Uuid::now_v7()), "approved", None, Some(last4)),
            Err(code) => (None, "declined", Some(code), None),
        };
        let (payment_id, outcome, code, last4) = self
            .remember(
                req.idempotency_key,
                CallKind::Authorize,
                req.order_id,
                req.amount_cents,
                req.currency,
                payment_id,
                outcome,
                code,
                last4,
            )
            .await
            .map_err(AuthorizeError::Unavailable)?;
        match (outcome.as_str(), payment_id) {
            ("approved", Some(payment_id)) => Ok(Authorization {
                payment_id,
                provider_ref: payment_id.to_string(),
                last4: last4.unwrap_or_default(),
            }),
            _ => Err(AuthorizeError::Declined(Decline {
                code: code.unwrap_or_else(|| "declined".into()),
            })),
        }
    }

    async fn capture(&self, req: SettleRequest<'_>) -> anyhow::Result<()> {
        self.settle(CallKind::Capture, req).await
    }

    async fn void(&self, req: SettleRequest<'_>) -> anyhow::Result<()> {
        self.settle(CallKind::Void, req).await
    }

    async fn refund(&self, req: SettleRequest<'_>) -> Result<Refund, RefundError> {
        let (outcome, code, refund_id) = self
            .refund_once(req)
            .await
            .map_err(RefundError::Unavailable)?;
        match (outcome.as_str(), refund_id) {
            ("succeeded", Some(gateway_refund_id)) => Ok(Refund { gateway_refund_id }),
            _ => Err(RefundError::Declined(Decline {
                code: code.unwrap_or_else(|| "declined".into()),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_tokens_approve_or_decline_like_the_providers_do() {
        let table: [(&str, Result<&str, &str>); 6] = [
            ("tok_visa", Ok("4242")),
            ("tok_mastercard", Ok("4444")),
            ("tok_chargeDeclined", Err("card_declined")),
            (
                "tok_chargeDeclinedInsufficientFunds",
                Err("insufficient_funds"),
            ),
            ("tok_unknown", Err("invalid_token")),
            ("tok_", Err("invalid_token")),
        ];
        for (token, expected) in table {
            assert_eq!(SimulatedGateway::decide(token), expected, "{token}");
        }
    }

    fn config(pairs: &[(&str, &str)]) -> shared::Config {
        shared::Config::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .expect("config")
    }

    fn chosen(pairs: &[(&str, &str)]) -> Result<(), String> {
        from_config(&config(pairs)).map(|_| ())
    }

    // A tokio test: the simulator's lazy pool starts its maintenance task on the runtime.
    #[tokio::test]
    async fn the_simulator_is_the_local_default_and_refused_outside_test_stages() {
        assert_eq!(chosen(&[]), Ok(()), "orderflow up and the tests");
        assert_eq!(
            chosen(&[
                ("ORDERFLOW_STAGE", "test"),
                ("PAYMENT_GATEWAY", "simulated")
            ]),
            Ok(())
        );
        let err = chosen(&[
            ("ORDERFLOW_STAGE", "prod"),
            ("PAYMENT_GATEWAY", "simulated"),
        ])
        .expect_err("production");
        assert!(
            err.contains("test stage") && err.contains("\"prod\""),
            "{err}"
        );
        let err = chosen(&[("AWS_LAMBDA_FUNCTION_NAME", "f")]).expect_err("unset on Lambda");
        assert!(err.contains("PAYMENT_GATEWAY must be set"), "{err}");
        let err = chosen(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("PAYMENT_GATEWAY", "simulated"),
        ])
        .expect_err("a Lambda without a stage is production");
        assert!(err.contains("test stage"), "{err}");
        assert!(super::uses_simulator(&config(&[])));
        assert!(!super::uses_simulator(&config(&[(
            "PAYMENT_GATEWAY",
            "http"
        )])));
    }

    #[test]
    fn the_http_gateway_needs_an_https_url_and_a_key_and_never_echoes_the_key() {
        let http = |url: &'static str, key: &'static str| {
            chosen(&[
                ("ORDERFLOW_STAGE", "prod"),
                ("PAYMENT_GATEWAY", "http"),
                ("PAYMENT_GATEWAY_URL", url),
                ("PAYMENT_GATEWAY_API_KEY", key),
            ])
        };
        assert_eq!(http("https://api.provider.example", "sk_live_x"), Ok(()));
        let err = http("http://api.provider.example", "sk_live_secret").expect_err("plain http");
        assert!(
            err.contains("https") && !err.contains("sk_live_secret"),
            "{err}"
        );
        assert!(chosen(&[("PAYMENT_GATEWAY", "http")]).is_err());
        assert!(chosen(&[("PAYMENT_GATEWAY", "stripe")]).is_err());
    }

    #[test]
    fn the_same_event_always_makes_the_same_call_and_different_events_different_ones() {
        let a = call_key(CallKind::Capture, "01a2");
        assert_eq!(a, call_key(CallKind::Capture, "01a2"));
        assert_ne!(a, call_key(CallKind::Void, "01a2"));
        assert_ne!(a, call_key(CallKind::Capture, "01a3"));
    }
}
