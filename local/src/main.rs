//! `orderflow`: run Orderflow locally on RabbitMQ, Redis and Postgres.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use local::stack::{Stack, StackOptions};
use local::{template, verify};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "orderflow",
    version,
    about = "Run and check Orderflow on local RabbitMQ, Redis and Postgres"
)]
struct Cli {
    /// A template.yaml to read instead of the one built in.
    #[arg(long, global = true)]
    template: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, declare the topology, and serve every function until Ctrl-C.
    Up {
        /// Send invocations to a Lambda emulator (e.g. `cargo lambda watch`, http://[::1]:9000).
        #[arg(long)]
        invoke_url: Option<String>,
    },
    /// Upsert products and set their stock.
    Seed {
        /// JSON: [{"product_id","name","price_cents","currency","stock"}]; the demo catalog without it.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// up + seed + users + orders with a mix of outcomes, then a summary and verify.
    Demo {
        #[arg(long, default_value_t = 200)]
        orders: usize,
    },
    /// Check the system invariants; exit code 1 on any violation.
    Verify,
    /// Run every service's migrations.
    Migrate,
}

fn config() -> anyhow::Result<shared::Config> {
    let mut cfg = shared::Config::from_env()?;
    // One process hosts every function: give it a pool for all of them.
    if std::env::var_os("DB_POOL_SIZE").is_none() {
        cfg.db_pool_size = 32;
    }
    Ok(cfg)
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let template_text = match &cli.template {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => template::EMBEDDED.to_string(),
    };
    let specs = template::parse(&template_text)?;
    let queues = local::template_queues(&specs);
    let cfg = config()?;
    match cli.command {
        Command::Up { invoke_url } => {
            let mut opts = StackOptions::from_env()?;
            opts.template = template_text;
            opts.invoke_url = invoke_url;
            let stack = Stack::start(cfg, opts).await?;
            println!(
                "orderflow is up: HTTP on http://{} (Ctrl-C stops gracefully)",
                stack.http_addr
            );
            tokio::signal::ctrl_c().await?;
            println!("stopping: finishing in-flight batches");
            stack.stop().await;
            Ok(true)
        }
        Command::Seed { catalog } => {
            let products = local::seed::load(catalog.as_deref())?;
            local::stack::prepare(&cfg, &specs).await?;
            let ctx = shared::context::Context::new(cfg)?;
            local::seed::seed(&ctx, &products, None).await?;
            println!("seeded {} products", products.len());
            Ok(true)
        }
        Command::Demo { orders } => {
            let mut opts = StackOptions::from_env()?;
            opts.template = template_text;
            let stack = Stack::start(cfg, opts).await?;
            println!("orderflow is up: HTTP on http://{}", stack.http_addr);
            let outcome = local::demo::run(&stack, orders, &queues).await;
            stack.stop().await;
            let outcome = outcome?;
            println!(
                "{}",
                if outcome.ok {
                    "demo passed"
                } else {
                    "demo FAILED"
                }
            );
            Ok(outcome.ok)
        }
        Command::Verify => {
            let ctx = shared::context::Context::new(cfg)?;
            let checks = verify::run(&ctx, &queues).await?;
            for c in &checks {
                println!("{}", c.line());
            }
            Ok(checks.iter().all(verify::Check::ok))
        }
        Command::Migrate => {
            local::registry::migrate_all(&cfg.database_url).await?;
            println!("migrations applied");
            Ok(true)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws progress bars and a summary: per-message logs would drown them.
    if matches!(cli.command, Command::Demo { .. }) {
        shared::telemetry::init_with_default("warn");
    } else {
        shared::telemetry::init();
    }
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("orderflow: {e:#}");
            ExitCode::from(2)
        }
    }
}
