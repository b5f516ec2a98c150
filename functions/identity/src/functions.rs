//! The HTTP functions (API Gateway v2): `POST /users`, `POST /sessions`,
//! `DELETE /sessions/current`. The three binaries share one handler that dispatches on the
//! route key, so the local front door and API Gateway can route to any of them alike.

use crate::domain::{Email, MAX_PASSWORD_LEN, Password};
use crate::password;
use crate::pg::PgUsers;
use serde::{Deserialize, Serialize};
use shared::context::Context;
use shared::http::{ApiError, Request, Response, bearer, empty_response, json_body, json_response};
use shared::lambda::{Function, HttpFunction};
use shared::session::{Session, Sessions};
use std::sync::Arc;

pub const ROUTE_REGISTER: &str = "POST /users";
pub const ROUTE_LOGIN: &str = "POST /sessions";
pub const ROUTE_LOGOUT: &str = "DELETE /sessions/current";

/// Body of `POST /users` and `POST /sessions`.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize)]
pub struct Registered {
    pub user_id: uuid::Uuid,
}

#[derive(Debug, Serialize)]
pub struct LoggedIn {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// Shared state of the identity functions, built once per execution environment.
#[derive(Clone)]
pub struct Identity {
    users: PgUsers,
    sessions: Sessions,
}

impl Identity {
    pub fn new(ctx: &Context) -> Self {
        Identity {
            users: PgUsers::new(ctx.pool.clone()),
            sessions: ctx.sessions.clone(),
        }
    }

    /// Answers `req` if its route is one of ours; 404 otherwise.
    pub async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        match req.route_key.as_deref().unwrap_or("") {
            ROUTE_REGISTER => self.register(&req).await,
            ROUTE_LOGIN => self.login(&req).await,
            ROUTE_LOGOUT => self.logout(&req).await,
            other => Err(ApiError::not_found(&format!("route {other:?}"))),
        }
    }

    #[tracing::instrument(skip_all, err(Display))]
    async fn register(&self, req: &Request) -> Result<Response, ApiError> {
        let body: Credentials = json_body(req)?;
        let email = Email::parse(&body.email).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let password =
            Password::parse(&body.password).map_err(|e| ApiError::bad_request(e.to_string()))?;
        // Cheap pre-check so a taken address costs no hash; the insert settles races.
        if self.users.email_taken(&email).await? {
            return Err(email_taken());
        }
        let phc = password::hash(&password).await.map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::internal()
        })?;
        let user_id = self
            .users
            .insert(&email, &phc)
            .await?
            .ok_or_else(email_taken)?;
        tracing::info!(%user_id, "user registered");
        Ok(json_response(201, &Registered { user_id }))
    }

    #[tracing::instrument(skip_all, err(Display))]
    async fn login(&self, req: &Request) -> Result<Response, ApiError> {
        let body: Credentials = json_body(req)?;
        let user = self.users.find_by_email(&body.email).await?;
        // An absurdly long password is refused without hashing it, yet after the same work
        // as a wrong one; an unknown user is checked against a dummy hash for the same reason.
        let too_long = body.password.chars().count() > MAX_PASSWORD_LEN;
        let phc = user
            .as_ref()
            .filter(|_| !too_long)
            .map(|u| u.password_hash.clone());
        let candidate = if too_long { "" } else { body.password.as_str() };
        let ok = password::verify(phc, candidate).await.map_err(|e| {
            tracing::error!(error = %e, "password verification failed");
            ApiError::internal()
        })?;
        let Some(user) = user.filter(|_| ok) else {
            return Err(invalid_credentials());
        };
        let (token, expires_at) = self
            .sessions
            .create(&Session {
                user_id: user.user_id,
                email: user.email.clone(),
            })
            .await?;
        tracing::info!(user_id = %user.user_id, "session created");
        Ok(json_response(
            201,
            &LoggedIn {
                token,
                expires_at: expires_at.to_rfc3339(),
            },
        ))
    }

    #[tracing::instrument(skip_all, err(Display))]
    async fn logout(&self, req: &Request) -> Result<Response, ApiError> {
        let token = bearer(req).ok_or_else(ApiError::unauthorized)?;
        if !self.sessions.revoke(token).await? {
            return Err(ApiError::unauthorized());
        }
        Ok(empty_response(204))
    }
}

fn email_taken() -> ApiError {
    ApiError::new(
        409,
        "email_taken",
        "an account with this email already exists",
    )
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        401,
        "invalid_credentials",
        "unknown email or wrong password",
    )
}

fn http(ctx: &Context) -> Arc<dyn Function> {
    let state = Identity::new(ctx);
    Arc::new(HttpFunction(move |req| {
        let s = state.clone();
        async move { s.handle(req).await }
    }))
}

/// `identity-register`: `POST /users`.
pub fn register(ctx: &Context) -> Arc<dyn Function> {
    http(ctx)
}

/// `identity-login`: `POST /sessions`.
pub fn login(ctx: &Context) -> Arc<dyn Function> {
    http(ctx)
}

/// `identity-logout`: `DELETE /sessions/current`.
pub fn logout(ctx: &Context) -> Arc<dyn Function> {
    http(ctx)
}
