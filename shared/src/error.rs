//! What a handler tells the batch runner about a message it could not apply.

/// Permanent errors park the message on the dead-letter exchange with their reason;
/// transient ones fail the invocation so the whole batch comes back.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The message can never succeed (invalid content, violated contract).
    #[error("{0}")]
    Permanent(String),
    /// Infrastructure trouble (database, broker, Redis); retrying may succeed.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

impl HandleError {
    pub fn permanent(reason: impl Into<String>) -> Self {
        HandleError::Permanent(reason.into())
    }

    /// An event of a type the consumer is not bound to: a wiring mistake, never retried.
    pub fn unexpected(env: &crate::Envelope) -> Self {
        HandleError::Permanent(format!("unexpected event type {}", env.event_type))
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, HandleError::Permanent(_))
    }
}

impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        HandleError::Transient(anyhow::Error::new(e).context("postgres"))
    }
}

impl From<redis::RedisError> for HandleError {
    fn from(e: redis::RedisError) -> Self {
        HandleError::Transient(anyhow::Error::new(e).context("redis"))
    }
}
