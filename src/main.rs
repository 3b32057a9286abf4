//! The `logbook` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use logbook::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use logbook::store::{self, migrate::Migrator};

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
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// Print the statements that would run, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rewrite existing parts of tables whose TTL changed now (expensive on big tables)
        /// instead of letting their next merges apply it.
        #[arg(long)]
        materialize_ttl: bool,
    },
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Print the data dictionary (docs/schema.md) generated from the table definitions.
    SchemaDocs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::SchemaDocs = cli.command {
        print!("{}", logbook::schema::dictionary::render());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref(), |k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        print!("{}", config.to_masked_toml());
        eprintln!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let logging = match logbook::logging::init(&config.log) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("error: cannot set up logging: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => logbook::serve::run(config, logging.level.clone()).await,
            Command::Migrate {
                dry_run,
                materialize_ttl,
            } => migrate(&config, dry_run, materialize_ttl).await,
            Command::CheckConfig | Command::SchemaDocs => Ok(()),
        }
    });
    drop(logging);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config, dry_run: bool, materialize_ttl: bool) -> anyhow::Result<()> {
    let migrator = Migrator::new(store::server_client(&config.clickhouse), config);
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
