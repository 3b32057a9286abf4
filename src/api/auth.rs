//! Authentication and authorization of `/api/…`: a bearer token per request, a rate limit per
//! token, the role and permission rules, and an `access_logs` row for every request.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use super::tokens::{Role, Token};
use super::{Api, access_log};
use crate::schema::{AccessLog, TableDef};

/// The permission the audit and access logs need (audit-logs.txt: "View audit logs").
pub const VIEW_AUDIT_LOGS: &str = "view_audit_logs";

/// A per-token rate limit.
pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<uuid::Uuid>,
}

impl Limiter {
    pub fn new(per_second: u32, burst: u32) -> Limiter {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Limiter {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
        }
    }

    /// `Err(seconds to wait)` when the token has used its quota.
    fn check(&self, token: &Token) -> Result<(), u64> {
        self.limiter.check_key(&token.id).map_err(|not_until| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1)
        })
    }
}

/// The authenticated caller of a request (a handler argument).
#[derive(Debug, Clone)]
pub struct Caller(pub Token);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)
    }
}

impl Caller {
    /// The tenant every query of this caller is confined to.
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    /// At least `role`, or 403.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role or higher; the token has {}",
                role.name(),
                self.0.role.name()
            )))
        }
    }

    /// Platform-wide work (settings, maintenance) is not for tenant-bound tokens.
    pub fn require_platform(&self, role: Role) -> Result<(), ApiError> {
        self.require(role)?;
        match &self.0.tenant {
            Some(tenant) => Err(ApiError::Forbidden(format!(
                "the token is bound to tenant {tenant:?}; this needs a token for every tenant"
            ))),
            None => Ok(()),
        }
    }

    /// May this caller read `table`? Call logs are for owners, supervisors and bot builders
    /// (api-call-logs.txt); audit and access logs need `view_audit_logs` (audit-logs.txt).
    pub fn may_read(&self, table: &TableDef) -> Result<(), ApiError> {
        match table.name {
            "api_calls" => self.require(Role::BotBuilder),
            "audit_activity" | "access_logs" => {
                if self.0.has_permission(VIEW_AUDIT_LOGS) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(format!(
                        "{} needs the {VIEW_AUDIT_LOGS} permission",
                        table.name
                    )))
                }
            }
            _ => Ok(()),
        }
    }
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The middleware in front of every `/api/` route.
pub async fn authenticate(
    State(api): State<Arc<Api>>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_default();
    let route = format!("{} {}", request.method(), request.uri().path());
    let token = match bearer(&request) {
        None => Err(ApiError::Unauthenticated),
        Some(secret) => match api.tokens.authenticate(secret).await {
            Ok(Some(token)) => Ok(token),
            Ok(None) => Err(ApiError::BadToken),
            Err(error) => Err(ApiError::from(error)),
        },
    };
    let token = match token {
        Ok(token) => token,
        Err(error) => {
            let response = error.into_response();
            if response.status() == axum::http::StatusCode::UNAUTHORIZED {
                api.access_log
                    .record(access_log::row(None, "login_failed", &ip, &route, 401))
                    .await;
            }
            return response;
        }
    };
    let response = match api.limiter.check(&token) {
        Err(seconds) => ApiError::RateLimited(seconds).into_response(),
        Ok(()) => {
            request.extensions_mut().insert(Caller(token.clone()));
            next.run(request).await
        }
    };
    let row: AccessLog = access_log::row(
        Some(&token),
        "api_request",
        &ip,
        &route,
        response.status().as_u16(),
    );
    api.access_log.record(row).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ApiCall, AuditActivity, LogKind, MailMessage};

    fn caller(role: Role, permissions: &[&str]) -> Caller {
        Caller(Token {
            id: uuid::Uuid::now_v7(),
            name: "t".into(),
            role,
            tenant: None,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        })
    }

    #[test]
    fn viewer_cannot_read_call_logs_but_bot_builder_can() {
        assert!(caller(Role::Viewer, &[]).may_read(ApiCall::TABLE).is_err());
        assert!(
            caller(Role::BotBuilder, &[])
                .may_read(ApiCall::TABLE)
                .is_ok()
        );
        assert!(
            caller(Role::Viewer, &[])
                .may_read(MailMessage::TABLE)
                .is_ok()
        );
    }

    #[test]
    fn audit_logs_need_the_permission_whatever_the_role() {
        assert!(
            caller(Role::Owner, &[])
                .may_read(AuditActivity::TABLE)
                .is_err()
        );
        assert!(
            caller(Role::Viewer, &[VIEW_AUDIT_LOGS])
                .may_read(AuditActivity::TABLE)
                .is_ok()
        );
    }

    #[test]
    fn rate_limit_is_per_token() {
        let limiter = Limiter::new(1, 2);
        let (a, b) = (caller(Role::Viewer, &[]).0, caller(Role::Viewer, &[]).0);
        assert!(limiter.check(&a).is_ok() && limiter.check(&a).is_ok());
        assert!(limiter.check(&a).is_err());
        assert!(limiter.check(&b).is_ok());
    }
}
