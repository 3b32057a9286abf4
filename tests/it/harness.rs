//! ClickHouse for integration tests.
//!
//! With `CLICKHOUSE_URL` set (and optionally `CLICKHOUSE_USER`,
//! `CLICKHOUSE_PASSWORD`), tests talk to that server, e.g. a real ClickHouse in
//! Docker. Otherwise the first test to ask starts one chdb-backed server
//! (`tests/chdb_http/server.py`) that all tests of this process share; it exits
//! when this process does, because it watches its stdin for EOF.
//!
//! Every test gets its own database from [`test_db`], so tests run in parallel.
//! Tests that need to stop and restart ClickHouse own a [`TestServer`].

// Not every test module uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clickhouse::Client;

/// Where a ClickHouse server is and how to log in.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub user: String,
    pub password: String,
}

impl Endpoint {
    /// A client for this server, not bound to a database.
    pub fn client(&self) -> Client {
        Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
    }
}

/// The server shared by all tests of this process: `CLICKHOUSE_URL` or a chdb server.
pub fn shared_server() -> &'static Endpoint {
    static SHARED: OnceLock<(Endpoint, Option<TestServer>)> = OnceLock::new();
    let (endpoint, _server) = SHARED.get_or_init(|| match std::env::var("CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => {
            let endpoint = Endpoint {
                url,
                user: std::env::var("CLICKHOUSE_USER").unwrap_or_else(|_| "default".into()),
                password: std::env::var("CLICKHOUSE_PASSWORD").unwrap_or_default(),
            };
            (endpoint, None)
        }
        // Never dropped (statics are not): the server goes when the process exits.
        _ => {
            let server = TestServer::spawn(None, 0);
            (server.endpoint(), Some(server))
        }
    });
    endpoint
}

/// A fresh database for one test, on the shared server.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// A client bound to `database`.
    pub client: Client,
    pub url: String,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl TestDb {
    /// The server this database lives on.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }
}

/// Drops and recreates the database `test_<name>` (non-alphanumerics become `_`).
/// Pass the test's name, so that each test has its own database.
pub async fn test_db(name: &str) -> TestDb {
    let endpoint = shared_server();
    let database: String = format!("test_{name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let admin = endpoint.client();
    for sql in [
        format!("DROP DATABASE IF EXISTS `{database}` SYNC"),
        format!("CREATE DATABASE `{database}`"),
    ] {
        admin
            .query(&sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    TestDb {
        client: endpoint.client().with_database(&database),
        url: endpoint.url.clone(),
        user: endpoint.user.clone(),
        password: endpoint.password.clone(),
        database,
    }
}

/// A free port for a test's listener, below Linux's ephemeral range (32768–60999). A port that
/// `bind(0)` handed out is free only until an outgoing connection takes it: under load one did,
/// before logbook bound it. Ports outside that range are taken only by listeners that ask for
/// them, so the port stays free for the listener and for its restarts. Each call tries the next
/// port, from a start this process's id picks, and keeps the first that binds.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id() % COUNT * 97 % COUNT));
    for _ in 0..COUNT {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// A chdb-backed ClickHouse server owned by one test, which can stop and
/// restart it (same data directory and port). Dropping it kills the server.
#[derive(Debug)]
pub struct TestServer {
    process: Option<(Child, ChildStdin)>,
    /// `None`: the server makes its own temporary directory and removes it when it
    /// exits (for the shared server, which is never dropped).
    data_dir: Option<PathBuf>,
    /// Keeps a data directory we created alive as long as the server object.
    _temp_dir: Option<tempfile::TempDir>,
    port: u16,
    password: String,
}

impl TestServer {
    /// Starts a server on `data_dir` (default: a new temporary directory,
    /// removed on drop) and `port` (default: [`free_port`], which stays free for restarts).
    pub fn start(data_dir: Option<&Path>, port: Option<u16>) -> TestServer {
        let (temp_dir, data_dir) = match data_dir {
            Some(dir) => (None, dir.to_path_buf()),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("logbook-chdb-")
                    .tempdir()
                    .expect("create a temporary data directory");
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let mut server = Self::spawn(Some(data_dir), port.unwrap_or_else(free_port));
        server._temp_dir = temp_dir;
        server
    }

    fn spawn(data_dir: Option<PathBuf>, port: u16) -> TestServer {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut server = TestServer {
            process: None,
            data_dir,
            _temp_dir: None,
            port,
            password: format!("test-{}-{nanos:x}", std::process::id()),
        };
        server.restart();
        server
    }

    /// Starts the server again after [`TestServer::stop`], on the same data
    /// directory and port. Returns once it answers `/ping`.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "the test server is already running");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("LOGBOOK_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        assert!(
            python.exists(),
            "no Python for the chdb test server at {}: run scripts/test to set up .venv \
             (or set LOGBOOK_TEST_PYTHON, or CLICKHOUSE_URL to use a real ClickHouse)",
            python.display()
        );
        let mut command = Command::new(&python);
        command.arg(root.join("tests/chdb_http/server.py")).args([
            "--port",
            &self.port.to_string(),
            "--exit-on-stdin-eof",
        ]);
        if let Some(dir) = &self.data_dir {
            command.arg("--path").arg(dir);
        }
        let mut child = command
            .env("CHDB_HTTP_PASSWORD", &self.password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the test server's stdout");
        // Keep reading, so that anything chdb prints later cannot block or break it.
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                eprintln!("chdb test server: {line}");
            }
        });
        let Some(port) = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse().ok())
        else {
            let _ = child.kill();
            let status = child.wait();
            panic!("the chdb test server did not start ({status:?}), said: {line:?}");
        };
        self.port = port;
        self.process = Some((child, stdin));
        wait_for_ping(port);
    }

    /// Kills the server and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.process.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|(child, _)| child.id())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    pub fn user(&self) -> &str {
        "default"
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: self.url(),
            user: self.user().into(),
            password: self.password.clone(),
        }
    }

    /// A client for this server, not bound to a database.
    pub fn client(&self) -> Client {
        self.endpoint().client()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.write_all(b"GET /ping HTTP/1.0\r\n\r\n")?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            Ok(reply)
        });
        match answer {
            Ok(reply) if reply.ends_with("Ok.\n") => return,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("the chdb test server on port {port} does not answer /ping: {other:?}"),
        }
    }
}
