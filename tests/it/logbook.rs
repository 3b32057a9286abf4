//! A real `logbook serve` process for end-to-end tests and benchmarks: its own config, queue
//! directory and free ports, against a test database; it can be killed with SIGKILL and
//! started again. `LOGBOOK_BIN` runs another build instead of this crate's binary.

// Shared with benches/ingest_e2e.rs, which uses only some of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;

use crate::harness::{TestDb, free_port};

#[derive(Debug, Clone, Copy)]
pub enum Transport {
    HttpProtobuf,
    HttpProtobufGzip,
    HttpJson,
    Grpc,
}

/// The logbook binary: `LOGBOOK_BIN`, or the one cargo built with these tests.
fn binary() -> String {
    std::env::var("LOGBOOK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_logbook").to_owned())
}

/// Where to send OTLP.
pub struct Endpoints {
    pub http: String,
    pub grpc: String,
}

impl Endpoints {
    /// The HTTP status (gRPC codes mapped to their HTTP equivalents), or `None` when logbook
    /// could not be reached.
    pub async fn send(
        &self,
        transport: Transport,
        request: &ExportLogsServiceRequest,
    ) -> Option<u16> {
        if let Transport::Grpc = transport {
            let mut client = LogsServiceClient::connect(self.grpc.clone()).await.ok()?;
            return Some(match client.export(request.clone()).await {
                Ok(_) => 200,
                Err(status) => match status.code() {
                    tonic::Code::ResourceExhausted => 429,
                    tonic::Code::Unavailable => 503,
                    tonic::Code::InvalidArgument => 400,
                    tonic::Code::Unauthenticated => 401,
                    _ => return None,
                },
            });
        }
        let (body, content_type, gzip) = match transport {
            Transport::HttpJson => (
                serde_json::to_vec(request).unwrap(),
                "application/json",
                false,
            ),
            Transport::HttpProtobufGzip => {
                (request.encode_to_vec(), "application/x-protobuf", true)
            }
            _ => (request.encode_to_vec(), "application/x-protobuf", false),
        };
        let mut builder = reqwest::Client::new()
            .post(format!("{}/v1/logs", self.http))
            .header("content-type", content_type);
        let body = if gzip {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body).unwrap();
            builder = builder.header("content-encoding", "gzip");
            encoder.finish().unwrap()
        } else {
            body
        };
        let response = builder.body(body).send().await.ok()?;
        Some(response.status().as_u16())
    }
}

pub struct Logbook {
    child: Option<Child>,
    pub config: PathBuf,
    /// Flags given to `serve`.
    serve_flags: Vec<&'static str>,
    pub dir: tempfile::TempDir,
    pub http: String,
    pub grpc: String,
    pub api: String,
}

/// Overlays `extra` on `base`, table by table.
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => merge(inner, more),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Logbook {
    /// Starts logbook on `db` (migrated first) with `extra` appended to its config file.
    pub async fn start(db: &TestDb, extra: &str) -> Logbook {
        Self::start_on(&db.url, &db.user, &db.password, &db.database, extra).await
    }

    /// Starts logbook on `db` without migrating it first, `serve` given `flags`.
    pub async fn start_unmigrated(db: &TestDb, extra: &str, flags: &[&'static str]) -> Logbook {
        let mut logbook = Self::prepare(&db.url, &db.user, &db.password, &db.database, extra);
        logbook.serve_flags = flags.to_vec();
        logbook.spawn().await;
        logbook
    }

    pub async fn start_on(
        url: &str,
        user: &str,
        password: &str,
        database: &str,
        extra: &str,
    ) -> Logbook {
        let mut logbook = Self::prepare(url, user, password, database, extra);
        let migrate = Command::new(binary())
            .args(["migrate", "--config"])
            .arg(&logbook.config)
            .output()
            .unwrap();
        assert!(
            migrate.status.success(),
            "{}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        logbook.spawn().await;
        logbook
    }

    /// Writes the config file; nothing runs yet.
    fn prepare(url: &str, user: &str, password: &str, database: &str, extra: &str) -> Logbook {
        let dir = tempfile::tempdir().unwrap();
        let (http, grpc, api) = (free_port(), free_port(), free_port());
        let config = dir.path().join("logbook.toml");
        let queue = dir.path().join("queue");
        let base = format!(
            "[clickhouse]\nurl = {url:?}\nuser = {user:?}\npassword = {password:?}\ndatabase = {database:?}\n\
             [server]\nlisten = \"127.0.0.1:{api}\"\nreadiness_probe_interval = \"200ms\"\n\
             [ingest]\nhttp_listen = \"127.0.0.1:{http}\"\ngrpc_listen = \"127.0.0.1:{grpc}\"\n\
             [queue]\npath = {:?}\n[log]\nlevel = \"info\"\n",
            queue.display().to_string()
        );
        let mut table: toml::Table = base.parse().unwrap();
        merge(&mut table, extra.parse().unwrap());
        std::fs::write(&config, table.to_string()).unwrap();
        Logbook {
            child: None,
            config,
            serve_flags: Vec::new(),
            dir,
            http: format!("http://127.0.0.1:{http}"),
            grpc: format!("http://127.0.0.1:{grpc}"),
            api: format!("http://127.0.0.1:{api}"),
        }
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .unwrap();
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(&self.serve_flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(format!("{}/healthz", self.api)).send().await
                && response.status().is_success()
            {
                return;
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().unwrap());
            assert!(
                exited.is_none() && started.elapsed() < Duration::from_secs(30),
                "logbook did not start ({exited:?}): {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// SIGTERM and wait: the graceful stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "logbook exited with {status}: {}",
                self.stderr()
            );
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("queue")
    }

    /// Waits up to `limit` for logbook to exit on its own; its exit status if it did.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            http: self.http.clone(),
            grpc: self.grpc.clone(),
        }
    }

    /// Runs `logbook <args…> --config <this instance's config>` and returns its output.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// Creates an API token with `logbook token create` and returns its secret.
    pub fn token(&self, role: &str, tenant: Option<&str>, permissions: &[&str]) -> String {
        let name = format!("{role}-{}", tenant.unwrap_or("all"));
        let mut args = vec!["token", "create", "--name", &name, "--role", role];
        if let Some(tenant) = tenant {
            args.extend(["--tenant", tenant]);
        }
        for permission in permissions {
            args.extend(["--permission", permission]);
        }
        let output = self.cli(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    pub fn stderr(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("stderr.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Scrapes until `name` reads `want`; the last scrape.
    pub async fn wait_metric(&self, name: &str, want: f64) -> String {
        let started = Instant::now();
        loop {
            let scrape = self.metrics().await;
            if metric(&scrape, name) == want {
                return scrape;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{name} never read {want}: {scrape}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until everything logbook acknowledged is stored: its queue holds no bytes. Every
    /// table and view a batch writes to is then visible, whichever insert finished first.
    pub async fn stored_all_acknowledged(&self) {
        self.wait_metric("logbook_queue_bytes", 0.0).await;
    }
}

/// The value of an unlabelled metric in a scrape.
pub fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {scrape}"))
        .parse()
        .unwrap()
}

impl Drop for Logbook {
    fn drop(&mut self) {
        self.kill9();
    }
}
