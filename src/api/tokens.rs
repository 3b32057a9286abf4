//! API tokens: roles, permissions, and the store in ClickHouse (`api_tokens`), shared by
//! every replica. Only the SHA-256 of a secret is stored; `logbook token create` prints the
//! secret once.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::query::{QueryError, classify};
use crate::schema::auth::API_TOKENS;

/// What a token may do, from least to most: viewer, bot_builder, supervisor, owner.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    BotBuilder,
    Supervisor,
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Owner,
        Role::Supervisor,
        Role::BotBuilder,
        Role::Viewer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Supervisor => "supervisor",
            Role::BotBuilder => "bot_builder",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == text)
            .ok_or_else(|| {
                format!("role must be owner, supervisor, bot_builder or viewer, not {text:?}")
            })
    }
}

/// Permissions granted on top of a role.
pub const PERMISSIONS: &[&str] = &["view_audit_logs"];

/// A valid token, as the API sees its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The only tenant it may read; `None` for all.
    pub tenant: Option<String>,
    pub permissions: Vec<String>,
}

impl Token {
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// A token as `logbook token list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub token: Token,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
struct TokenRow {
    #[serde(with = "clickhouse::serde::uuid")]
    id: Uuid,
    name: String,
    role: String,
    tenant: String,
    permissions: Vec<String>,
    secret_sha256: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    created_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    revoked_at: Option<OffsetDateTime>,
    version: u64,
}

impl TokenRow {
    fn token(&self) -> Option<Token> {
        Some(Token {
            id: self.id,
            name: self.name.clone(),
            role: Role::parse(&self.role).ok()?,
            tenant: (!self.tenant.is_empty()).then(|| self.tenant.clone()),
            permissions: self.permissions.clone(),
        })
    }
}

fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Row versions: nanoseconds since the epoch, so the newest write wins on any replica.
fn version_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(u64::MAX)
}

/// Valid tokens by the SHA-256 of their secret, reloaded from ClickHouse.
struct Cache {
    tokens: HashMap<String, Token>,
    loaded_at: Option<Instant>,
}

/// Tokens in ClickHouse, with a cache every replica reloads at most `refresh` apart (and at
/// once on an unknown token, at most once a second), so that a revocation takes effect
/// everywhere within `refresh`.
pub struct TokenStore {
    client: clickhouse::Client,
    timeout: Duration,
    refresh: Duration,
    cache: RwLock<Cache>,
    reload: tokio::sync::Mutex<()>,
}

const SELECT: &str = "SELECT ?fields FROM api_tokens FINAL";

impl TokenStore {
    /// `client` is bound to logbook's database.
    pub fn new(client: clickhouse::Client, timeout: Duration, refresh: Duration) -> TokenStore {
        TokenStore {
            client,
            timeout,
            refresh,
            cache: RwLock::new(Cache {
                tokens: HashMap::new(),
                loaded_at: None,
            }),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    async fn bounded<T>(
        &self,
        future: impl Future<Output = Result<T, clickhouse::error::Error>>,
    ) -> Result<T, QueryError> {
        tokio::time::timeout(self.timeout, future)
            .await
            .map_err(|_| QueryError::Timeout(self.timeout))?
            .map_err(classify)
    }

    async fn rows(&self) -> Result<Vec<TokenRow>, QueryError> {
        let query = self.client.query(SELECT).with_setting("readonly", "2");
        self.bounded(query.fetch_all::<TokenRow>()).await
    }

    async fn write(&self, row: &TokenRow) -> Result<(), QueryError> {
        let mut insert = self
            .bounded(self.client.insert::<TokenRow>(API_TOKENS.name))
            .await?;
        self.bounded(insert.write(row)).await?;
        self.bounded(insert.end()).await
    }

    /// Creates a token; returns it and its secret (shown once, never stored).
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        tenant: Option<&str>,
        permissions: &[String],
    ) -> Result<(Token, String), QueryError> {
        if let Some(unknown) = permissions
            .iter()
            .find(|p| !PERMISSIONS.contains(&p.as_str()))
        {
            return Err(QueryError::Invalid(format!(
                "unknown permission {unknown:?}; known: {}",
                PERMISSIONS.join(", ")
            )));
        }
        if name.trim().is_empty() {
            return Err(QueryError::Invalid("a token needs a name".into()));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!(
            "lbk_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let row = TokenRow {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            role: role.name().to_owned(),
            tenant: tenant.unwrap_or_default().to_owned(),
            permissions: permissions.to_vec(),
            secret_sha256: sha256_hex(&secret),
            created_at: OffsetDateTime::now_utc(),
            revoked_at: None,
            version: version_now(),
        };
        self.write(&row).await?;
        Ok((row.token().expect("a valid role"), secret))
    }

    /// Every token, revoked ones included, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, QueryError> {
        let mut rows = self.rows().await?;
        rows.sort_by_key(|r| r.created_at);
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(TokenInfo {
                    token: r.token()?,
                    created_at: r.created_at,
                    revoked_at: r.revoked_at,
                })
            })
            .collect())
    }

    /// Revokes a token; `false` when there is no such token or it was revoked already.
    pub async fn revoke(&self, id: Uuid) -> Result<bool, QueryError> {
        let Some(mut row) = self.rows().await?.into_iter().find(|r| r.id == id) else {
            return Ok(false);
        };
        if row.revoked_at.is_some() {
            return Ok(false);
        }
        row.revoked_at = Some(OffsetDateTime::now_utc());
        row.version = version_now().max(row.version + 1);
        self.write(&row).await?;
        Ok(true)
    }

    /// The valid token with this secret, if any.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Token>, QueryError> {
        let hash = sha256_hex(secret);
        let (hit, age) = {
            let cache = self.cache.read().expect("token cache lock");
            (
                cache.tokens.get(&hash).cloned(),
                cache.loaded_at.map(|t| t.elapsed()),
            )
        };
        let stale = age.is_none_or(|age| age >= self.refresh);
        let miss_may_reload = age.is_none_or(|age| age >= Duration::from_secs(1));
        if !stale && (hit.is_some() || !miss_may_reload) {
            return Ok(hit);
        }
        self.reload(age).await?;
        let cache = self.cache.read().expect("token cache lock");
        Ok(cache.tokens.get(&hash).cloned())
    }

    /// Reloads the cache unless another request did since it was `age` old.
    async fn reload(&self, age: Option<Duration>) -> Result<(), QueryError> {
        let _one_at_a_time = self.reload.lock().await;
        let now_age = self
            .cache
            .read()
            .expect("token cache lock")
            .loaded_at
            .map(|t| t.elapsed());
        if let (Some(before), Some(now)) = (age, now_age)
            && now < before
        {
            return Ok(());
        }
        let tokens = self
            .rows()
            .await?
            .into_iter()
            .filter(|r| r.revoked_at.is_none())
            .filter_map(|r| Some((r.secret_sha256.clone(), r.token()?)))
            .collect();
        *self.cache.write().expect("token cache lock") = Cache {
            tokens,
            loaded_at: Some(Instant::now()),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_by_name_and_order_by_power() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Ok(role));
        }
        assert!(Role::parse("admin").is_err());
        assert!(Role::Owner > Role::Supervisor && Role::BotBuilder > Role::Viewer);
    }

    #[test]
    fn secrets_are_stored_as_their_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
