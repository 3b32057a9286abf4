//! Delivery: SMTP through `lettre`, retried with exponential backoff and full jitter, and
//! `governor` rate limits (global, and per recipient) so an incident cannot send a storm.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::NotifyError;
use super::config::NotifyConfig;
use super::templates::Email;

/// What happened to one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: bool,
    pub attempts: u32,
    /// The last error, also when a later attempt succeeded.
    pub error: Option<String>,
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Mailer {
    pub fn new(config: &NotifyConfig) -> Result<Mailer, NotifyError> {
        let url = url::Url::parse(&config.smtp_url)
            .map_err(|e| NotifyError::Smtp(format!("notify.smtp_url: {e}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(|e| NotifyError::Smtp(format!("notify.smtp_url: {e}")))?
            .timeout(Some(config.smtp_timeout));
        if !url.username().is_empty() || !config.smtp_password.is_empty() {
            let user = percent_decode(url.username());
            builder = builder.credentials(Credentials::new(
                user,
                config.smtp_password.expose().to_owned(),
            ));
        }
        let from = config
            .from
            .parse()
            .map_err(|e| NotifyError::Smtp(format!("notify.from: {e}")))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
            attempts: config.attempts,
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
        })
    }

    /// Sends `email` to `to`, retrying transient failures (connection errors, 4xx answers);
    /// permanent ones (5xx: a refused password, an unknown recipient) end the attempts.
    pub async fn send(&self, to: &[String], email: &Email) -> Outcome {
        let message = match self.message(to, email) {
            Ok(message) => message,
            Err(error) => {
                return Outcome {
                    delivered: false,
                    attempts: 0,
                    error: Some(error),
                };
            }
        };
        let mut error = None;
        for attempt in 1..=self.attempts {
            match self.transport.send(message.clone()).await {
                Ok(_) => {
                    return Outcome {
                        delivered: true,
                        attempts: attempt,
                        error,
                    };
                }
                Err(e) => {
                    let permanent = e.is_permanent();
                    tracing::warn!(error = %e, attempt, permanent, "sending a notification failed");
                    error = Some(e.to_string());
                    if permanent || attempt == self.attempts {
                        return Outcome {
                            delivered: false,
                            attempts: attempt,
                            error,
                        };
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
            }
        }
        unreachable!("attempts is at least one, checked by validation")
    }

    /// Full jitter over an exponential ceiling: the wait after attempt `n` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        ceiling.mul_f64(rand::random::<f64>())
    }

    fn message(&self, to: &[String], email: &Email) -> Result<Message, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(&email.subject);
        for address in to {
            builder = builder.to(address.parse().map_err(|e| format!("{address}: {e}"))?);
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| e.to_string())
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("u={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// How many emails may go out: in total per minute, and per recipient per hour.
pub struct Limits {
    global: DefaultDirectRateLimiter,
    per_recipient: DefaultKeyedRateLimiter<String>,
}

/// What the limits let through.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send to these recipients (the others are over their quota).
    Send {
        allowed: Vec<String>,
        refused: usize,
    },
    /// Nothing may be sent now.
    Refused,
}

impl Limits {
    pub fn new(per_minute: u32, per_recipient_per_hour: u32) -> Limits {
        let nonzero = |n: u32| NonZeroU32::new(n.max(1)).expect("at least one");
        Limits {
            global: RateLimiter::direct(Quota::per_minute(nonzero(per_minute))),
            per_recipient: RateLimiter::keyed(Quota::per_hour(nonzero(per_recipient_per_hour))),
        }
    }

    /// Takes one email from the global quota and one from each recipient's.
    pub fn admit(&self, recipients: &[String]) -> Admission {
        if self.global.check().is_err() {
            return Admission::Refused;
        }
        let (allowed, refused): (Vec<_>, Vec<_>) = recipients
            .iter()
            .cloned()
            .partition(|r| self.per_recipient.check_key(r).is_ok());
        if allowed.is_empty() {
            return Admission::Refused;
        }
        Admission::Send {
            allowed,
            refused: refused.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_beyond_the_global_and_the_per_recipient_quota() {
        let limits = Limits::new(3, 1);
        let (a, b) = ("a@x.test".to_owned(), "b@x.test".to_owned());
        assert_eq!(
            limits.admit(&[a.clone(), b.clone()]),
            Admission::Send {
                allowed: vec![a.clone(), b.clone()],
                refused: 0
            }
        );
        assert_eq!(limits.admit(std::slice::from_ref(&a)), Admission::Refused);
        let c = "c@x.test".to_owned();
        assert_eq!(
            limits.admit(&[a, c.clone()]),
            Admission::Send {
                allowed: vec![c.clone()],
                refused: 1
            }
        );
        // Three emails went through the global quota (the refused one included): the fourth waits.
        assert_eq!(limits.admit(&["d@x.test".into()]), Admission::Refused);
    }

    #[tokio::test]
    async fn backoff_grows_to_its_ceiling() {
        let config = NotifyConfig {
            smtp_url: "smtp://127.0.0.1:2525".into(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..NotifyConfig::default()
        };
        let mailer = Mailer::new(&config).unwrap();
        for _ in 0..100 {
            assert!(mailer.backoff(1) <= Duration::from_secs(1));
            assert!(mailer.backoff(10) <= Duration::from_secs(5));
        }
    }
}
