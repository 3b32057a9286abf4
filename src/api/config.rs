//! The `[api]` section: rate limits, token reloads and the limits of every query.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::query::QueryLimits;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Requests per second each API token may make (sustained); more get 429.
    pub rate_limit_per_second: u32,
    /// Requests a token may make at once above the sustained rate.
    pub rate_limit_burst: u32,
    /// How often a replica reloads the tokens from ClickHouse: a revoked token stops working
    /// on every replica within this time.
    #[serde(with = "humantime_serde")]
    pub token_refresh: Duration,
    /// Limits of every query the API runs on ClickHouse.
    pub limits: QueryLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            rate_limit_per_second: 20,
            rate_limit_burst: 40,
            token_refresh: Duration::from_secs(5),
            limits: QueryLimits::default(),
        }
    }
}
