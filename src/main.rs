//! The `logbook` command.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command as Process, ExitCode};

use clap::{Parser, Subcommand};

use logbook::config::Config;
use logbook::store::{self, migrate::Migrator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc settings logbook's memory figures are measured with (docs/benchmarks.md, "Issue
/// #10 points 13 and 14"): freed pages go back to the OS at once instead of after a second, and arena memory is
/// committed as pages are used instead of all at once (which kept 40-50 MiB more resident at
/// steady load). An operator's own value of either wins.
const ALLOCATOR_SETTINGS: [(&str, &str); 2] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// mimalloc reads its settings from the environment as the process starts, before `main`, and
/// setting them through its C API would need `unsafe`; so where one is unset, logbook runs itself
/// again (`exec`: the same process id, arguments and environment) with it set. Only returns
/// when there is nothing to set or the `exec` failed.
fn with_allocator_settings() {
    let unset: Vec<_> = ALLOCATOR_SETTINGS
        .into_iter()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    if unset.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut process = Process::new(exe);
    if let Some(arg0) = args.next() {
        process.arg0(arg0);
    }
    let error = process.args(args).envs(unset).exec();
    eprintln!(
        "warning: logbook runs with mimalloc's default settings: cannot re-run itself: {error}"
    );
}

#[derive(Parser)]
#[command(
    version,
    about = "OTLP to ClickHouse pipeline for backend services' logs"
)]
struct Cli {
    /// Configuration file (TOML); see config/logbook.toml and docs/configuration.md.
    #[arg(long, short, global = true, env = "LOGBOOK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every component: the HTTP server (health checks, metrics) and retention jobs.
    Serve {
        /// Create or upgrade the database schema first, then serve (a container entrypoint's
        /// usual pattern).
        #[arg(long)]
        migrate: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// Print the statements that would run, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rewrite existing parts of tables whose TTL changed now (expensive on big tables)
        /// instead of letting their next merges apply it.
        #[arg(long)]
        materialize_ttl: bool,
        /// Create the schema on every server of this ClickHouse cluster (a `remote_servers`
        /// entry): Replicated tables `<table>_local` on each shard, Distributed tables named
        /// like the tables, every statement ON CLUSTER (docs/scaling.md).
        #[arg(long, value_name = "NAME")]
        cluster: Option<String>,
    },
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Print the data dictionary (docs/schema.md) generated from the table definitions.
    SchemaDocs,
    /// Dry run: what each record of an OTLP/JSON request would become (the tables and columns
    /// it fills, why it would get no typed row), storing nothing. Exits 1 when a record would
    /// be rejected.
    CheckRecord {
        /// File holding the request (`ExportLogsServiceRequest` as OTLP/JSON); `-` reads stdin.
        file: PathBuf,
        /// The file holds spans (`ExportTraceServiceRequest`) rather than log records.
        #[arg(long)]
        traces: bool,
    },
    /// Simulate backend services: a seeded mix of every log kind, sent over OTLP.
    Demo(DemoArgs),
    /// Manage the HTTP API's tokens (stored hashed in ClickHouse).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret (shown this once only).
    Create {
        /// Who or what the token is for (recorded in access_logs).
        #[arg(long)]
        name: String,
        /// owner, supervisor, bot_builder or viewer.
        #[arg(long)]
        role: String,
        /// Confine the token to one tenant's rows.
        #[arg(long)]
        tenant: Option<String>,
        /// Extra permission (repeatable): view_audit_logs.
        #[arg(long = "permission")]
        permissions: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id; every replica refuses it within api.token_refresh.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: uuid::Uuid,
    },
}

#[derive(clap::Args)]
struct DemoArgs {
    /// OTLP endpoint of logbook (gRPC; with --protocol http, the HTTP base URL).
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// grpc or http.
    #[arg(long, default_value = "grpc")]
    protocol: String,
    /// Live events per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// How long to run live, e.g. 30s or 10m; default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Number of customer tenants.
    #[arg(long, default_value_t = 3)]
    tenants: usize,
    /// Seed of the simulation: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Days of history to emit first, with past timestamps.
    #[arg(long, default_value_t = 0)]
    backfill: u32,
    /// Events per simulated hour of history.
    #[arg(long, default_value_t = 30)]
    backfill_per_hour: u32,
}

fn main() -> ExitCode {
    with_allocator_settings();
    let cli = Cli::parse();
    if let Command::SchemaDocs = cli.command {
        print!("{}", logbook::schema::dictionary::render());
        return ExitCode::SUCCESS;
    }
    // Variables that are not UTF-8 cannot be overrides; `env::vars` would panic on them.
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = match Config::load(cli.config.as_deref(), vars) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckRecord { file, traces } = &cli.command {
        return check_record(&config, file, *traces);
    }
    if let Command::CheckConfig = cli.command {
        print!("{}", config.to_masked_toml());
        for warning in config.warnings() {
            eprintln!("warning: {warning}");
        }
        eprintln!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let _context = runtime.enter();
    let telemetry = if config.telemetry.enabled {
        match logbook::telemetry::Telemetry::new(&config.telemetry) {
            Ok(telemetry) => Some(telemetry),
            Err(e) => {
                eprintln!("error: cannot set up telemetry export: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let logging = match logbook::logging::init(&config.log, telemetry.as_ref()) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("error: cannot set up logging: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { migrate: first } => {
                if first {
                    migrate(&config, false, false, None).await?;
                }
                logbook::serve::run(config, Some(logging.level.clone())).await
            }
            Command::Token(command) => token(&config, command).await,
            Command::Migrate {
                dry_run,
                materialize_ttl,
                cluster,
            } => migrate(&config, dry_run, materialize_ttl, cluster.as_deref()).await,
            Command::Demo(args) => demo(args).await,
            Command::CheckConfig | Command::SchemaDocs | Command::CheckRecord { .. } => Ok(()),
        }
    });
    if let Some(telemetry) = telemetry
        && let Err(e) = runtime.block_on(telemetry.shutdown())
    {
        eprintln!("warning: telemetry export did not flush: {e}");
    }
    drop(logging);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_record(config: &Config, file: &std::path::Path, traces: bool) -> ExitCode {
    use logbook::ingest::receive::{Signal, dry_run};
    let body = if file == std::path::Path::new("-") {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).map(|_| body)
    } else {
        std::fs::read(file)
    };
    let signal = if traces { Signal::Traces } else { Signal::Logs };
    let report = match body.map_err(|e| e.to_string()).and_then(|body| {
        let redactor =
            logbook::ingest::redact::Redactor::new(&config.redaction).map_err(|e| e.to_string())?;
        dry_run(&redactor, signal, &body).map_err(|e| e.to_string())
    }) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("a report is JSON")
    );
    if report.rejected > 0 {
        eprintln!("{} record(s) would get no typed row", report.rejected);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn migrate(
    config: &Config,
    dry_run: bool,
    materialize_ttl: bool,
    cluster: Option<&str>,
) -> anyhow::Result<()> {
    // Retention changed through the API (the `retention.ttl` setting) wins over the file's;
    // before the first migration there are no settings to read.
    let settings = logbook::settings::SettingsStore::new(
        store::client(&config.clickhouse),
        config.clickhouse.request_timeout,
    );
    let config = &match settings.refresh().await {
        Ok(()) => logbook::api::retention_with_settings(config, &settings),
        Err(_) => config.clone(),
    };
    let client = store::server_client(&config.clickhouse);
    let migrator = match cluster {
        Some(name) if !logbook::config::is_identifier(name) => {
            anyhow::bail!("--cluster must be a ClickHouse identifier, not {name:?}")
        }
        Some(name) => Migrator::on_cluster(client, config, name),
        None => Migrator::new(client, config),
    };
    let url = &config.clickhouse.url;
    let steps = if dry_run {
        migrator.plan().await
    } else {
        migrator.run(materialize_ttl).await
    }
    .map_err(|e| anyhow::anyhow!("migration against {url} failed: {e}"))?;
    if steps.is_empty() {
        println!("schema is up to date");
    }
    for step in &steps {
        if dry_run {
            println!("-- {}\n{};\n", step.description, step.sql);
        } else {
            println!("applied: {}", step.description);
        }
    }
    Ok(())
}

async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    use logbook::api::tokens::{Role, TokenStore};
    let store = TokenStore::new(
        store::client(&config.clickhouse),
        config.clickhouse.request_timeout,
        config.api.token_refresh,
    );
    let url = &config.clickhouse.url;
    let failed = |e| anyhow::anyhow!("token store at {url}: {e}");
    match command {
        TokenCommand::Create {
            name,
            role,
            tenant,
            permissions,
        } => {
            let role = Role::parse(&role).map_err(anyhow::Error::msg)?;
            let (token, secret) = store
                .create(&name, role, tenant.as_deref(), &permissions)
                .await
                .map_err(failed)?;
            eprintln!(
                "created token {} ({}, role {}); the secret below is shown only once",
                token.id,
                token.name,
                role.name()
            );
            println!("{secret}");
        }
        TokenCommand::List => {
            println!("id\tname\trole\ttenant\tpermissions\tcreated\trevoked");
            for info in store.list().await.map_err(failed)? {
                let t = &info.token;
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    t.role.name(),
                    t.tenant.as_deref().unwrap_or("*"),
                    t.permissions.join(","),
                    info.created_at,
                    info.revoked_at.map(|r| r.to_string()).unwrap_or_default()
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke(id).await.map_err(failed)? {
                anyhow::bail!("no valid token {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let protocol = match args.protocol.as_str() {
        "grpc" => logbook::telemetry::Protocol::Grpc,
        "http" => logbook::telemetry::Protocol::Http,
        other => anyhow::bail!("--protocol must be grpc or http, not {other:?}"),
    };
    let options = logbook::demo::DemoOptions {
        endpoint: args.endpoint,
        protocol,
        rate: args.rate,
        duration: args.duration,
        tenants: args.tenants,
        seed: args.seed,
        backfill_days: args.backfill,
        backfill_per_hour: args.backfill_per_hour,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let summary = logbook::demo::run(options).await?;
    let total: u64 = summary.values().sum();
    println!("demo sent {total} rows:");
    for (table, rows) in summary {
        println!("  {table:<24} {rows}");
    }
    Ok(())
}
