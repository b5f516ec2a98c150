//! The HTTP functions (API Gateway v2): `POST /users`, `POST /sessions`,
//! `DELETE /sessions/current` and `DELETE /sessions` (every session of the caller). The
//! three binaries share one handler that dispatches on the route key, so the local front
//! door and API Gateway can route to any of them alike.
//!
//! Rate limits (`shared::ratelimit`): sign-up per client address; login per e-mail and per
//! client address, counting failures only (each attempt takes from both budgets before the
//! password is checked, so a burst of guesses cannot slip past the count, and a right
//! password gives its attempt back).

use crate::domain::{Email, MAX_PASSWORD_LEN, Password};
use crate::password::{HashError, HashingPool};
use crate::pg::PgUsers;
use serde::{Deserialize, Serialize};
use shared::context::Context;
use shared::http::{
    ApiError, Request, Response, bearer, client_addr, empty_response, json_body, json_response,
};
use shared::lambda::{Function, HttpFunction};
use shared::ratelimit::{RateLimiter, Rule, WhenRedisDown, enforce};
use shared::session::{Session, Sessions};
use std::sync::Arc;

pub const ROUTE_REGISTER: &str = "POST /users";
pub const ROUTE_LOGIN: &str = "POST /sessions";
pub const ROUTE_LOGOUT: &str = "DELETE /sessions/current";
pub const ROUTE_LOGOUT_ALL: &str = "DELETE /sessions";

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
    limiter: RateLimiter,
    hashing: Arc<HashingPool>,
}

/// A hashing failure as an answer: a full queue is a 503 the client may retry soon.
fn hashing_error(e: HashError) -> ApiError {
    match e {
        HashError::Busy => ApiError::busy("password hashing"),
        e => {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::internal()
        }
    }
}

impl Identity {
    pub fn new(ctx: &Context) -> Self {
        Self::with_hashing(ctx, HashingPool::global())
    }

    /// Same, hashing on `hashing` (tests pass a small pool to fill).
    pub fn with_hashing(ctx: &Context, hashing: Arc<HashingPool>) -> Self {
        Identity {
            users: PgUsers::new(ctx.pool.clone()),
            sessions: ctx.sessions.clone(),
            limiter: ctx.limiter.clone(),
            hashing,
        }
    }

    /// Answers `req` if its route is one of ours; 404 otherwise.
    pub async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        match req.route_key.as_deref().unwrap_or("") {
            ROUTE_REGISTER => self.register(&req).await,
            ROUTE_LOGIN => self.login(&req).await,
            ROUTE_LOGOUT => self.logout(&req).await,
            ROUTE_LOGOUT_ALL => self.logout_all(&req).await,
            other => Err(ApiError::not_found(&format!("route {other:?}"))),
        }
    }

    // Errors are logged once, by `shared::http::respond`, at a level that fits their status.
    #[tracing::instrument(skip_all)]
    async fn register(&self, req: &Request) -> Result<Response, ApiError> {
        let body: Credentials = json_body(req)?;
        let email = Email::parse(&body.email).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let password =
            Password::parse(&body.password).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(addr) = client_addr(req) {
            enforce(
                &self.limiter,
                &[(Rule::SignupPerAddress, &addr)],
                WhenRedisDown::Allow,
            )
            .await?;
        }
        // Cheap pre-check so a taken address costs no hash; the insert settles races.
        if self.users.email_taken(&email).await? {
            return Err(email_taken());
        }
        let phc = self.hashing.hash(&password).await.map_err(hashing_error)?;
        let user_id = self
            .users
            .insert(&email, &phc)
            .await?
            .ok_or_else(email_taken)?;
        tracing::info!(%user_id, "user registered");
        Ok(json_response(201, &Registered { user_id }))
    }

    #[tracing::instrument(skip_all)]
    async fn login(&self, req: &Request) -> Result<Response, ApiError> {
        let body: Credentials = json_body(req)?;
        let email_key = body.email.trim().to_lowercase();
        let addr = client_addr(req);
        let mut limits = vec![(Rule::LoginPerEmail, email_key.as_str())];
        if let Some(addr) = &addr {
            limits.push((Rule::LoginPerAddress, addr.as_str()));
        }
        // Without Redis no session could be made anyway, and guessing must not go
        // unlimited: refuse (503).
        enforce(&self.limiter, &limits, WhenRedisDown::Refuse).await?;
        let user = self.users.find_by_email(&body.email).await?;
        // An absurdly long password is refused without hashing it, yet after the same work
        // as a wrong one; an unknown user is checked against a dummy hash for the same reason.
        let too_long = body.password.chars().count() > MAX_PASSWORD_LEN;
        let phc = user
            .as_ref()
            .filter(|_| !too_long)
            .map(|u| u.password_hash.clone());
        let candidate = if too_long { "" } else { body.password.as_str() };
        let ok = match self.hashing.verify(phc, candidate).await {
            Ok(ok) => ok,
            Err(e) => {
                // No password was checked: the attempt is not a failure to count.
                if let Err(e) = self.limiter.refund(&limits).await {
                    tracing::warn!(error = %e, "could not give an unchecked login's attempt back");
                }
                return Err(hashing_error(e));
            }
        };
        let Some(user) = user.filter(|_| ok) else {
            return Err(invalid_credentials());
        };
        // Only failures count: the right password gives its attempt back. Should that
        // fail, the customer merely has one attempt fewer for a while.
        if let Err(e) = self.limiter.refund(&limits).await {
            tracing::warn!(error = %e, "could not give a successful login's attempt back");
        }
        let (token, expires_at) = self
            .sessions
            .create(&Session {
                user_id: user.user_id,
                email: user.email.clone(),
                role: user.role,
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

    #[tracing::instrument(skip_all)]
    async fn logout(&self, req: &Request) -> Result<Response, ApiError> {
        let token = bearer(req).ok_or_else(ApiError::unauthorized)?;
        if !self.sessions.revoke(token).await? {
            return Err(ApiError::unauthorized());
        }
        Ok(empty_response(204))
    }

    /// `DELETE /sessions`: every session of the token's user ends, this one included.
    #[tracing::instrument(skip_all)]
    async fn logout_all(&self, req: &Request) -> Result<Response, ApiError> {
        let session = shared::http::authenticate(&self.sessions, req).await?;
        let ended = self.sessions.revoke_all(session.user_id).await?;
        tracing::info!(user_id = %session.user_id, sessions = ended, "logged out everywhere");
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
    function(Identity::new(ctx))
}

/// The HTTP function over a given state (tests build one with a small hashing pool).
pub fn function(state: Identity) -> Arc<dyn Function> {
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

/// `identity-logout`: `DELETE /sessions/current` and `DELETE /sessions`.
pub fn logout(ctx: &Context) -> Arc<dyn Function> {
    http(ctx)
}
