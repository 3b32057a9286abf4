//! A real SMTP server for the notifier's tests: `tests/smtp_sink/server.py` (aiosmtpd), which
//! writes every accepted message, decoded, as a JSON file before answering 250.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One message as the server received it.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// How the server behaves.
#[derive(Debug, Default, Clone)]
pub struct SinkOptions {
    /// Refuse this many messages with a transient 451 first.
    pub refuse: u32,
    /// Require this user and password.
    pub auth: Option<(String, String)>,
}

pub struct SmtpSink {
    process: Option<(Child, ChildStdin)>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl SmtpSink {
    pub fn start(options: SinkOptions) -> SmtpSink {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("LOGBOOK_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(&python);
        command
            .arg(root.join("tests/smtp_sink/server.py"))
            .arg("--out")
            .arg(dir.path())
            .args(["--refuse", &options.refuse.to_string()]);
        if let Some((user, password)) = &options.auth {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        SmtpSink {
            process: Some((child, stdin)),
            dir,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Received> {
        let mut paths: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                started.elapsed() < limit,
                "expected {n} emails, got {}: {messages:?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.process.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
