//! What a handler tells the batch runner about a message it could not apply, and which
//! Postgres errors are about the message's data rather than the infrastructure.

/// Permanent errors park the message on the dead-letter exchange with their reason;
/// transient ones fail the invocation so the whole batch comes back.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The message can never succeed (invalid content, violated contract).
    #[error("{0}")]
    Permanent(String),
    /// Infrastructure trouble (database, broker, Redis); retrying may succeed.
    #[error(transparent)]
    Transient(anyhow::Error),
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

/// SQLSTATE classes that describe the data a statement was given: `22` data exception
/// (out-of-range value, invalid text encoding such as a NUL byte, bad datetime) and `23`
/// integrity constraint violation. The same message fails the same way on every retry, so
/// retrying it only blocks its queue. Every other class (`08` connection, `40`
/// serialization and deadlock, `53` resources, `57` operator intervention, `25` a
/// transaction already aborted, ...) is about the moment, not the message.
pub fn sqlstate_is_about_the_data(sqlstate: &str) -> bool {
    sqlstate.len() == 5 && matches!(sqlstate.get(..2), Some("22" | "23"))
}

/// The park reason for a Postgres error about the data, or `None` when retrying may help
/// (a driver, I/O or pool error has no SQLSTATE and is never about the data). The reason
/// holds the SQLSTATE, the constraint's name and Postgres' own message, never the `DETAIL`,
/// which can quote the row's values (an email, a token).
pub fn data_error_reason(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    let code = db.code()?;
    if !sqlstate_is_about_the_data(&code) {
        return None;
    }
    Some(match db.constraint() {
        Some(constraint) => format!(
            "postgres rejected the data (SQLSTATE {code}, constraint {constraint}): {}",
            db.message()
        ),
        None => format!(
            "postgres rejected the data (SQLSTATE {code}): {}",
            db.message()
        ),
    })
}

impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        match data_error_reason(&e) {
            Some(reason) => HandleError::Permanent(reason),
            None => HandleError::Transient(anyhow::Error::new(e).context("postgres")),
        }
    }
}

/// Adapters often return `anyhow::Result`; a Postgres data error keeps its class through
/// the context they add, so it parks the message instead of retrying it forever.
impl From<anyhow::Error> for HandleError {
    fn from(e: anyhow::Error) -> Self {
        let reason = e
            .chain()
            .find_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .and_then(data_error_reason);
        match reason {
            Some(reason) => HandleError::Permanent(reason),
            None => HandleError::Transient(e),
        }
    }
}

impl From<redis::RedisError> for HandleError {
    fn from(e: redis::RedisError) -> Self {
        HandleError::Transient(anyhow::Error::new(e).context("redis"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// A database error as the Postgres driver reports it, with a chosen SQLSTATE.
    #[derive(Debug)]
    struct FakePgError {
        code: &'static str,
        message: &'static str,
        constraint: Option<&'static str>,
    }

    impl std::fmt::Display for FakePgError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl std::error::Error for FakePgError {}

    impl sqlx::error::DatabaseError for FakePgError {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn constraint(&self) -> Option<&str> {
            self.constraint
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn pg(code: &'static str, message: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(FakePgError {
            code,
            message,
            constraint: None,
        }))
    }

    #[test]
    fn sqlstate_classes_22_and_23_are_about_the_data_and_no_other() {
        for code in [
            "22000", "22001", "22003", "22008", "22021", "22P02", "23000",
        ] {
            assert!(sqlstate_is_about_the_data(code), "{code}");
        }
        for code in ["23502", "23503", "23505", "23514", "23P01"] {
            assert!(sqlstate_is_about_the_data(code), "{code}");
        }
        for code in [
            "08000", "08006", "40001", "40P01", "53300", "53100", "57014", "57P01", "25P02",
            "42P01", "XX000", "", "22", "2", "220001", "x2200",
        ] {
            assert!(!sqlstate_is_about_the_data(code), "{code:?}");
        }
    }

    #[test]
    fn a_data_exception_or_a_constraint_violation_parks_with_its_sqlstate_and_message() {
        for (code, message) in [
            ("22008", "timestamp out of range: \"9.22337e+15\""),
            ("22021", "invalid byte sequence for encoding \"UTF8\": 0x00"),
            ("22003", "integer out of range"),
            (
                "23502",
                "null value in column \"order_id\" violates not-null constraint",
            ),
            (
                "23505",
                "duplicate key value violates unique constraint \"users_email_key\"",
            ),
            (
                "23514",
                "new row violates check constraint \"available_not_negative\"",
            ),
        ] {
            match HandleError::from(pg(code, message)) {
                HandleError::Permanent(reason) => {
                    assert!(reason.contains(&format!("SQLSTATE {code}")), "{reason}");
                    assert!(reason.contains(message), "{reason}");
                }
                HandleError::Transient(e) => panic!("{code} stayed transient: {e:#}"),
            }
        }
    }

    #[test]
    fn the_park_reason_names_the_constraint_but_not_the_row_values() {
        let e = sqlx::Error::Database(Box::new(FakePgError {
            code: "23505",
            message: "duplicate key value violates unique constraint \"users_email_key\"",
            constraint: Some("users_email_key"),
        }));
        let reason = data_error_reason(&e).expect("about the data");
        assert_eq!(
            reason,
            "postgres rejected the data (SQLSTATE 23505, constraint users_email_key): \
             duplicate key value violates unique constraint \"users_email_key\""
        );
    }

    #[test]
    fn connection_serialization_resource_and_operator_errors_stay_transient() {
        for code in [
            "08006", "40001", "40P01", "53300", "57014", "57P01", "25P02",
        ] {
            assert!(
                !HandleError::from(pg(code, "try again")).is_permanent(),
                "{code}"
            );
        }
    }

    #[test]
    fn driver_io_and_pool_errors_stay_transient() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset by peer",
            )),
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::RowNotFound,
        ] {
            let shown = e.to_string();
            assert!(!HandleError::from(e).is_permanent(), "{shown}");
        }
    }

    #[test]
    fn a_data_error_wrapped_in_anyhow_context_still_parks() {
        let wrapped = anyhow::Error::new(pg("22021", "invalid byte sequence"))
            .context("locking the reservation");
        assert!(HandleError::from(wrapped).is_permanent());
        let transient = anyhow::Error::new(pg("40001", "could not serialize access"))
            .context("locking the reservation");
        assert!(!HandleError::from(transient).is_permanent());
        assert!(!HandleError::from(anyhow::anyhow!("redis down")).is_permanent());
    }
}
