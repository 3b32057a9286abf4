//! The `logbook` command as an operator meets it: exit codes, messages, and secrets that never
//! reach its output or its logs. No ClickHouse needed.

use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_logbook");

fn logbook(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("LOGBOOK_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logbook.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn help_lists_the_subcommands() {
    let (code, out, _) = logbook(&["--help"], &[]);
    assert_eq!(code, 0);
    for sub in ["serve", "migrate", "check-config"] {
        assert!(out.contains(sub), "{out}");
    }
}

#[test]
fn bundled_config_file_is_valid_and_documents_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/logbook.toml");
    let (code, with_file, err) = logbook(&["check-config", "--config", path], &[]);
    assert_eq!(code, 0, "{err}");
    let (_, defaults, _) = logbook(&["check-config"], &[]);
    assert_eq!(
        with_file, defaults,
        "config/logbook.toml must state the defaults"
    );
}

#[test]
fn check_config_warns_about_a_queue_smaller_than_two_batches() {
    let (_dir, path) = config_file("[queue]\nmax_bytes = \"40 MiB\"\n");
    let (code, _, err) = logbook(&["check-config", "-c", &path], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: queue.max_bytes (40.0 MiB) is less than twice batch.max_bytes"),
        "{err}"
    );
}

#[test]
fn unknown_key_exits_2_naming_it() {
    let (_dir, path) = config_file("[server]\nlisten = \"127.0.0.1:1\"\nlissen = 1\n");
    let (code, _, err) = logbook(&["check-config", "-c", &path], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("server.lissen"), "{err}");
}

#[test]
fn bad_value_exits_2_naming_the_key() {
    let (_dir, path) = config_file("[log]\nformat = \"xml\"\n");
    let (code, _, err) = logbook(&["check-config", "-c", &path], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("log.format"), "{err}");
    let (_dir, path) = config_file("[retention]\nserver_logs_max_bytes = \"lots\"\n");
    let (code, _, err) = logbook(&["check-config", "-c", &path], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("retention.server_logs_max_bytes"), "{err}");
}

#[test]
fn unreadable_file_exits_2_naming_it() {
    let (code, _, err) = logbook(&["check-config", "-c", "/nonexistent/logbook.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/logbook.toml"), "{err}");
}

#[test]
fn check_config_masks_secrets_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, "from-file-9f3a\n").unwrap();
    let (_d, inline) = config_file("[clickhouse]\npassword = \"inline-7c1e\"\n");
    let (code, out, err) = logbook(&["check-config", "-c", &inline], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("inline-7c1e") && out.contains("********"),
        "{out}"
    );

    let (code, out, err) = logbook(
        &["check-config"],
        &[(
            "LOGBOOK_CLICKHOUSE_PASSWORD_FILE",
            secret_file.to_str().unwrap(),
        )],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("from-file-9f3a") && !err.contains("from-file-9f3a"));
    assert!(out.contains("********"), "{out}");

    let (code, out, err) = logbook(
        &["check-config"],
        &[("LOGBOOK_CLICKHOUSE_PASSWORD", "env-5b2d")],
    );
    assert_eq!(code, 0);
    assert!(!out.contains("env-5b2d") && !err.contains("env-5b2d"));
}

#[test]
fn serve_logs_never_contain_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("logbook.log");
    let (_d, path) = config_file(&format!(
        "[clickhouse]\nurl = \"http://127.0.0.1:9\"\npassword = \"pw-serve-41d7\"\n\
         [server]\nlisten = \"127.0.0.1:0\"\nreadiness_probe_interval = \"100ms\"\n\
         [log]\nlevel = \"trace\"\nformat = \"json\"\n[log.file]\npath = {:?}\n",
        log_path.display().to_string()
    ));
    let mut child = Command::new(BIN)
        .args(["serve", "-c", &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for serve to be probing and logging, then stop it.
    let pipe = child.stderr.take().unwrap();
    let (seen, logged) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)) {
            let line = line.unwrap();
            if line.contains("clickhouse unreachable") {
                let _ = seen.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    logged
        .recv_timeout(Duration::from_secs(30))
        .expect("serve logs the unreachable ClickHouse");
    // SIGTERM: a graceful stop flushes the file writer.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(term.unwrap().success());
    assert!(child.wait().unwrap().success(), "serve exits 0 on SIGTERM");
    let stderr = reader.join().unwrap();
    let file = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(stderr.contains("clickhouse unreachable"), "{stderr}");
    assert!(file.contains("clickhouse unreachable"), "{file}");
    assert!(!stderr.contains("pw-serve-41d7") && !file.contains("pw-serve-41d7"));
}

#[test]
fn check_record_answers_per_record_and_fails_on_a_rejection() {
    let record = |event: &str| {
        format!(
            r#"{{"eventName": "{event}", "attributes": [
                {{"key": "logbook.bot.name", "value": {{"stringValue": "b"}}}},
                {{"key": "http.request.method", "value": {{"stringValue": "GET"}}}},
                {{"key": "url.full", "value": {{"stringValue": "https://x.example/?token=abc"}}}},
                {{"key": "logbook.outcome", "value": {{"stringValue": "success"}}}},
                {{"key": "logbook.duration_ms", "value": {{"doubleValue": 41.6}}}}]}}"#
        )
    };
    let request = |records: &[String]| {
        format!(
            r#"{{"resourceLogs": [{{"resource": {{"attributes": [{{"key": "service.name", "value": {{"stringValue": "cli"}}}}]}},
                "scopeLogs": [{{"logRecords": [{}]}}]}}]}}"#,
            records.join(",")
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, request(&[record("logbook.api_call")])).unwrap();
    let (code, out, err) = logbook(&["check-record", good.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let columns = &report["records"][0]["tables"][1]["columns"];
    assert_eq!(columns["duration_ms"], 42, "{out}");
    assert_eq!(columns["service"], "cli", "{out}");
    // Redacted as ingest would.
    assert!(!out.contains("token=abc"), "{out}");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        request(&[record("logbook.api_call"), record("logbook.api_calls")]),
    )
    .unwrap();
    let (code, out, err) = logbook(&["check-record", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("did you mean logbook.api_call?"), "{out}");
    assert!(err.contains("1 record(s) would get no typed row"), "{err}");
    let (code, _, err) = logbook(&["check-record", "/nonexistent.json"], &[]);
    assert_eq!(code, 2, "{err}");
}

/// The environment of process `pid` as `NAME=value` strings.
fn environment_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// mimalloc reads its settings before `main`: logbook runs itself again with the two its memory
/// figures need (docs/benchmarks.md), keeping its process id and any value the operator set.
#[test]
fn logbook_runs_with_its_allocator_settings_unless_the_operator_set_them() {
    for (given, expected) in [
        (
            vec![],
            ["MIMALLOC_PURGE_DELAY=0", "MIMALLOC_ARENA_EAGER_COMMIT=0"],
        ),
        (
            vec![("MIMALLOC_PURGE_DELAY", "250")],
            ["MIMALLOC_PURGE_DELAY=250", "MIMALLOC_ARENA_EAGER_COMMIT=0"],
        ),
        (
            vec![
                ("MIMALLOC_PURGE_DELAY", "250"),
                ("MIMALLOC_ARENA_EAGER_COMMIT", "1"),
            ],
            ["MIMALLOC_PURGE_DELAY=250", "MIMALLOC_ARENA_EAGER_COMMIT=1"],
        ),
    ] {
        // `check-record -` waits for its standard input: a process to look at.
        let mut child = Command::new(BIN)
            .args(["check-record", "-"])
            .env_remove("MIMALLOC_PURGE_DELAY")
            .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
            .envs(given.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let environment = loop {
            let environment = environment_of(child.id());
            if expected
                .iter()
                .all(|e| environment.contains(&e.to_string()))
                || std::time::Instant::now() > deadline
            {
                break environment;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        for setting in expected {
            assert!(
                environment.contains(&setting.to_owned()),
                "{setting} missing with {given:?}: {environment:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Standard input was empty: the command still ran to its own answer.
        assert_eq!(output.status.code(), Some(2), "{output:?}");
    }
}
