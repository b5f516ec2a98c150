//! `orderflow`: run Orderflow locally on RabbitMQ, Redis and Postgres.

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
    /// A template.yaml to read instead of the one built in (e.g. one with other shard
    /// counts; `chaos` and `bench` pass it on to the runner they start).
    #[arg(long, global = true, env = local::template::TEMPLATE_ENV)]
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
        /// Serve the bench baseline's stand-ins instead of the business functions (used by
        /// `orderflow bench --baseline`, which starts this runner itself).
        #[arg(long, hide = true, conflicts_with = "invoke_url")]
        stand_ins: bool,
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
    Verify {
        /// Invalid input was sent on purpose: dead letters are expected (each must still
        /// carry its reason). Without it, any dead letter is a violation.
        #[arg(long)]
        invalid_input_sent: bool,
    },
    /// Run every service's migrations.
    Migrate,
    /// Declare the broker topology of template.yaml (exchanges, quorum queues with
    /// dead-lettering and a delivery limit, DLQs, bindings) on any broker, e.g. Amazon MQ.
    Topology(local::topology::TopologyArgs),
    /// Change functions' shard counts on the live broker (new queues first, old ones
    /// unbound and drained); then deploy the template at the new counts and
    /// `topology --prune` (README, "Shards").
    Reshard(local::reshard::ReshardArgs),
    /// Print the template (`--template` or the built-in one) with other shard counts.
    Template {
        /// FUNCTION=SHARDS (binary or logical id, or `all`), repeatable.
        #[arg(long = "shards", required = true)]
        shards: Vec<String>,
    },
    /// Roles: make a user an admin (or a customer again). The user is logged out
    /// everywhere, so the next login carries the new role.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// The dead-letter console: list, show, replay or discard dead letters.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The fault-injection suite: places orders against a runner it starts as a child
    /// process while injecting faults, then verifies the invariants.
    Chaos(local::chaos::ChaosArgs),
    /// Load test of the whole order flow (or, with --baseline, of the bare infrastructure).
    Bench(local::bench::BenchArgs),
    /// One order across every service: each event in causal order, which functions
    /// consumed it (attempts, latency), what is parked or still pending.
    Timeline {
        order_id: String,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Clone, Default)]
struct DlqFilter {
    /// Original queue, as named in template.yaml (e.g. inventory-reserve).
    #[arg(long)]
    queue: Option<String>,
    /// Event type (routing key), e.g. order.created.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Substring of the reason.
    #[arg(long)]
    reason: Option<String>,
    /// Only dead letters older than this (30s, 10m, 2h, 1d).
    #[arg(long)]
    older_than: Option<String>,
}

impl DlqFilter {
    fn build(&self) -> anyhow::Result<local::dlq::Filter> {
        Ok(local::dlq::Filter {
            queue: self.queue.clone(),
            event_type: self.event_type.clone(),
            reason: self.reason.clone(),
            older_than: self
                .older_than
                .as_deref()
                .map(local::dlq::parse_age)
                .transpose()?,
        })
    }
}

#[derive(Subcommand)]
enum AdminAction {
    /// Make the user with this e-mail an admin (`/admin/*` routes).
    Grant { email: String },
    /// Make the user a customer again.
    Revoke { email: String },
}

#[derive(Subcommand)]
enum DlqAction {
    /// One line per dead letter: id, original queue, type, attempts, age, reason.
    List {
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// Everything about one dead letter, its payload decoded to JSON (or raw when it cannot be).
    Show { id: String },
    /// Republish to the original routing key (consumers are idempotent), then remove.
    Replay {
        ids: Vec<String>,
        /// Every dead letter matching the filter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilter,
        /// Say what would be replayed, change nothing (still audited).
        #[arg(long)]
        dry_run: bool,
        /// At most this many replays per second.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Remove dead letters for good (audited).
    Discard {
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// The audit trail of replays and discards, newest first.
    Audit,
}

async fn dlq(cfg: shared::Config, queues: &[String], action: DlqAction) -> anyhow::Result<bool> {
    use local::dlq::{Console, audit, list_line, payload_view, select};
    let ctx = shared::context::Context::new(cfg)?;
    if let DlqAction::Audit = action {
        for (action, id, key, dry) in local::dlq::audit_log(&ctx).await? {
            println!(
                "{action:<8} {id} {key}{}",
                if dry { " (dry run)" } else { "" }
            );
        }
        return Ok(true);
    }
    let console = Console::open(&ctx, queues).await?;
    let result = async {
        match action {
            DlqAction::List { filter } => {
                let found = local::dlq::matching(&console, &filter.build()?, &ctx.names);
                for d in &found {
                    println!("{}", list_line(d));
                }
                println!("{} dead letter(s)", found.len());
            }
            DlqAction::Show { id } => {
                let (d, _) = &console.letters[console.find(&id)?];
                let mut view = serde_json::to_value(d)?;
                view["payload"] = payload_view(d);
                println!("{}", serde_json::to_string_pretty(&view)?);
            }
            DlqAction::Replay {
                ids,
                all,
                filter,
                dry_run,
                rate,
            } => {
                let picked = select(&console, &ids, all, &filter.build()?, &ctx.names)?;
                let pause = rate
                    .filter(|r| *r > 0.0)
                    .map(|r| std::time::Duration::from_secs_f64(1.0 / r));
                for i in &picked {
                    let d = &console.letters[*i].0;
                    if !dry_run {
                        console.replay(&ctx, *i).await?;
                    }
                    audit(&ctx, "replay", d, dry_run).await?;
                    println!(
                        "{} {} -> {} ({})",
                        if dry_run { "would replay" } else { "replayed" },
                        d.id,
                        d.routing_key,
                        d.reason
                    );
                    if let Some(p) = pause {
                        tokio::time::sleep(p).await;
                    }
                }
                println!(
                    "{} dead letter(s) {}",
                    picked.len(),
                    if dry_run {
                        "would be replayed"
                    } else {
                        "replayed"
                    }
                );
            }
            DlqAction::Discard { ids, all, filter } => {
                let picked = select(&console, &ids, all, &filter.build()?, &ctx.names)?;
                for i in &picked {
                    let d = &console.letters[*i].0;
                    console.discard(*i).await?;
                    audit(&ctx, "discard", d, false).await?;
                    println!("discarded {} ({})", d.id, d.reason);
                }
            }
            DlqAction::Audit => {}
        }
        anyhow::Ok(true)
    }
    .await;
    console.close().await;
    result
}

/// The environment's configuration, with any secrets it names by ARN read first (as the
/// Lambda binaries do), so `orderflow topology` or `migrate` can run with a deploy's
/// environment.
async fn config() -> anyhow::Result<shared::Config> {
    let mut cfg = shared::secrets::config_from_env().await?;
    // One process hosts every function: give it a pool for all of them.
    if std::env::var_os("DB_POOL_SIZE").is_none() {
        cfg.db_pool_size = 32;
    }
    Ok(cfg)
}

fn metrics_line(stack: &Stack) -> String {
    stack
        .metrics_addr
        .map(|a| format!(", metrics on http://{a}/metrics"))
        .unwrap_or_default()
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let source = template::Source::load(cli.template.as_deref())?;
    let template_text = source.text.clone();
    let specs = source.specs()?;
    let queues = local::template_queues(&specs);
    let cfg = config().await?;
    match cli.command {
        Command::Up {
            invoke_url,
            stand_ins,
        } => {
            let mut opts = StackOptions::from_env()?;
            opts.template = template_text;
            opts.invoke_url = invoke_url;
            let stack = if stand_ins {
                Stack::start_with(cfg, opts, local::baseline::stand_ins::find).await?
            } else {
                Stack::start(cfg, opts).await?
            };
            println!(
                "orderflow is up: HTTP on http://{}{} (Ctrl-C stops gracefully)",
                stack.http_addr,
                metrics_line(&stack)
            );
            tokio::signal::ctrl_c().await?;
            println!("stopping: finishing in-flight batches");
            stack.stop().await;
            Ok(true)
        }
        Command::Admin { action } => {
            let (email, role) = match action {
                AdminAction::Grant { email } => (email, shared::session::Role::Admin),
                AdminAction::Revoke { email } => (email, shared::session::Role::Customer),
            };
            local::stack::prepare(&cfg, &specs).await?;
            let ctx = shared::context::Context::new(cfg)?;
            if identity::set_role(&ctx.pool, &ctx.sessions, &email, role).await? {
                println!("{email} is now {} (logged out everywhere)", role.as_str());
                Ok(true)
            } else {
                eprintln!("no user has the e-mail {email}");
                Ok(false)
            }
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
            // The demo plays many customers from one address at a pace no customer keeps.
            let mut cfg = cfg;
            cfg.rate_limits = shared::ratelimit::RateLimits::off();
            let stack = Stack::start(cfg, opts).await?;
            println!(
                "orderflow is up: HTTP on http://{}{} (rate limits off for the demo)",
                stack.http_addr,
                metrics_line(&stack)
            );
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
        Command::Verify { invalid_input_sent } => {
            let ctx = shared::context::Context::new(cfg)?;
            let expect = verify::Expect {
                invalid_input: invalid_input_sent,
            };
            let checks = verify::run(&ctx, &queues, &expect).await?;
            for c in &checks {
                println!("{}", c.line());
            }
            Ok(checks.iter().all(verify::Check::ok))
        }
        Command::Dlq { action } => dlq(cfg, &queues, action).await,
        Command::Timeline { order_id, json } => {
            let ctx = shared::context::Context::new(cfg)?;
            let t = local::timeline::build(&ctx, &specs, &order_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", local::timeline::render(&t));
            }
            Ok(t.status.is_some())
        }
        Command::Chaos(args) => local::chaos::run(cfg, &source, args).await,
        Command::Bench(args) => local::bench::run(cfg, &source, args).await,
        Command::Topology(args) => local::topology::run(cfg, &specs, args).await,
        Command::Reshard(args) => {
            let ctx = shared::context::Context::new(cfg)?;
            local::reshard::run(&ctx, &specs, args).await
        }
        Command::Template { shards } => {
            let changes = shards
                .iter()
                .map(|s| template::parse_shard_change(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            print!("{}", template::with_shards(&template_text, &changes)?);
            Ok(true)
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
