//! logbook's own email notifications (docs/notifications.md).

pub mod config;
pub mod settings;
