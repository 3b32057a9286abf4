//! Secrets in configuration: given inline, through an environment variable, or as a file path,
//! and impossible to print by accident (Debug, Display and Serialize all mask them).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text shown wherever a secret would be printed.
pub const MASK: &str = "********";

/// A secret value as written in the configuration file.
///
/// Accepted forms: `"inline value"`, `{ env = "VAR" }`, `{ file = "/path" }`. A file's trailing
/// newline is dropped so `echo secret > file` works.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; callers pass it straight to the component that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { MASK })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { MASK })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match SecretSource::deserialize(deserializer).map_err(|_| {
            D::Error::custom(r#"expected a string, { env = "VAR" } or { file = "/path" }"#)
        })? {
            SecretSource::Inline(value) => Ok(Secret(value)),
            SecretSource::Env { env } => std::env::var(&env)
                .map(Secret)
                .map_err(|_| D::Error::custom(format!("environment variable {env} is not set"))),
            SecretSource::File { file } => std::fs::read_to_string(&file)
                .map(|text| Secret(text.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| D::Error::custom(format!("cannot read {}: {e}", file.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        s: Secret,
    }

    #[test]
    fn secret_from_file_drops_trailing_newline_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        let text = format!("s = {{ file = {:?} }}", path.display().to_string());
        let h: Holder = toml::from_str(&text).unwrap();
        assert_eq!(h.s.expose(), "hunter2");
        assert_eq!(format!("{:?}", h.s), MASK);
        assert_eq!(serde_json::to_string(&h.s).unwrap(), format!("\"{MASK}\""));
    }

    #[test]
    fn missing_secret_file_is_a_clear_error() {
        let err = toml::from_str::<Holder>(r#"s = { file = "/nonexistent/pw" }"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot read /nonexistent/pw"), "{err}");
    }
}
