//! The runner as a child process, for the suites that must kill it or measure it (chaos,
//! bench): spawning it on a fresh database and prefix, waiting until it answers, stopping it,
//! and the HTTP client helpers they share.

use anyhow::Context as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

pub struct Runner {
    pub child: Child,
    pub log: Arc<Mutex<RunnerLog>>,
}

/// What the runner reported about itself in its logs, summed over its restarts: the
/// evidence that the faults a suite announced reached it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerLog {
    /// Injected in-process faults by kind (`error`, `crash`, ...) and function.
    pub faults: BTreeMap<(String, String), usize>,
    /// Times one of its triggers lost its broker connection (and reconnected).
    pub broker_lost: usize,
    /// Per queue (prefixed), the messages of the batch its trigger has taken and not yet
    /// settled (acknowledged or returned). Needs `local::bridge=debug` in `RUST_LOG`.
    pub in_flight: BTreeMap<String, u64>,
}

impl RunnerLog {
    /// Counts one JSON log line, if it is one of the lines above.
    pub fn record(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        match v["message"].as_str() {
            Some("fault injected") => {
                let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
                *self
                    .faults
                    .entry((field("fault"), field("function")))
                    .or_default() += 1;
            }
            Some("bridge lost the broker, reconnecting") => self.broker_lost += 1,
            Some("batch taken") => {
                if let (Some(q), Some(n)) = (v["queue"].as_str(), v["messages"].as_u64()) {
                    self.in_flight.insert(q.to_string(), n);
                }
            }
            Some("batch settled") => {
                if let Some(q) = v["queue"].as_str() {
                    self.in_flight.remove(q);
                }
            }
            _ => {}
        }
    }

    /// Injected faults by kind, over every function.
    pub fn faults_by_kind(&self) -> BTreeMap<String, usize> {
        let mut by_kind = BTreeMap::new();
        for ((kind, _), n) in &self.faults {
            *by_kind.entry(kind.clone()).or_default() += n;
        }
        by_kind
    }
}

/// What a bench or chaos report says about the limits its child runner ran with.
pub const RATE_LIMITS_NOTE: &str = "rate limits: off in the child runner (ORDERFLOW_RATE_LIMITS=off), which plays many customers from one address";

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn spawn_runner(
    env: &[(String, String)],
    log: Arc<Mutex<RunnerLog>>,
) -> anyhow::Result<Runner> {
    spawn_runner_with(env, log, &[]).await
}

/// `orderflow up` with extra arguments (the bench's baseline passes `--stand-ins`).
pub async fn spawn_runner_with(
    env: &[(String, String)],
    log: Arc<Mutex<RunnerLog>>,
    args: &[&str],
) -> anyhow::Result<Runner> {
    // Resolved once: after a rebuild replaces the file, /proc/self/exe names a deleted path.
    static EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let exe = match EXE.get() {
        Some(p) => p.clone(),
        None => EXE
            .get_or_init(|| std::env::current_exe().unwrap_or_else(|_| "orderflow".into()))
            .clone(),
    };
    let mut child = Command::new(exe)
        .arg("up")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the runner")?;
    // The runner logs (JSON) to standard output, as a Lambda function does.
    // A new runner holds no batch; the killed one's last lines are read by now.
    if let Ok(mut l) = log.lock() {
        l.in_flight.clear();
    }
    if let Some(stdout) = child.stdout.take() {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut log) = log.lock() {
                    log.record(&line);
                }
            }
        });
    }
    Ok(Runner { child, log })
}

pub async fn wait_healthy(
    http: &reqwest::Client,
    base: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the runner did not become healthy within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn shell(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// POSTs with retries: connection errors and 5xx are what the faults cause; the same
/// Idempotency-Key makes every retry safe.
pub async fn post_retrying(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut delay = Duration::from_millis(100);
    loop {
        let mut req = http.post(url).json(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        match req.send().await {
            Ok(r) if r.status().is_server_error() => {}
            Ok(r) => {
                let status = r.status().as_u16();
                return Ok((status, r.json().await.unwrap_or(Value::Null)));
            }
            Err(_) => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "{url} kept failing for 120 s");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// A fresh database and prefix for one run, and the environment a child runner needs.
pub struct Isolated {
    pub cfg: shared::Config,
    pub db_url: url::Url,
    pub db_name: String,
    pub base: String,
    /// Where the child serves `/metrics` (an address of its own, not the API's).
    pub metrics_base: String,
    pub env: Vec<(String, String)>,
}

pub fn isolate(
    base_cfg: &shared::Config,
    tag: &str,
    run_id: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<Isolated> {
    let db_name = format!("of_{tag}_{run_id}");
    let mut db_url = url::Url::parse(&base_cfg.database_url)?;
    db_url.set_path(&format!("/{db_name}"));
    let mut cfg = base_cfg.clone();
    cfg.database_url = db_url.to_string();
    cfg.prefix = format!("{tag}{run_id}.");
    cfg.faults = shared::faults::Faults::none();
    let port = free_port()?;
    let metrics_port = free_port()?;
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), cfg.database_url.clone()),
        ("REDIS_URL".into(), cfg.redis_url.clone()),
        ("AMQP_URL".into(), cfg.amqp_url.clone()),
        ("ORDERFLOW_PREFIX".into(), cfg.prefix.clone()),
        ("ORDERFLOW_HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
        // Never the default port: runs and a developer's `orderflow up` coexist.
        (
            "ORDERFLOW_METRICS_ADDR".into(),
            format!("127.0.0.1:{metrics_port}"),
        ),
        // The suites play many customers from one address as fast as the stack goes; the
        // limits would turn their load into 429s (reports say so: `RATE_LIMITS_NOTE`).
        ("ORDERFLOW_RATE_LIMITS".into(), "off".into()),
        ("ORDERFLOW_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Ok(Isolated {
        cfg,
        db_url,
        db_name,
        base: format!("http://127.0.0.1:{port}"),
        metrics_base: format!("http://127.0.0.1:{metrics_port}"),
        env,
    })
}

/// Graceful stop (SIGINT, as Ctrl-C): in-flight batches finish.
pub async fn stop(runner: &mut Runner) {
    if let Some(pid) = runner.child.id() {
        let _ = shell("kill", &["-INT", &pid.to_string()]).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), runner.child.wait()).await;
}

/// Removes a run's broker objects and database.
pub async fn cleanup(
    iso: &Isolated,
    specs: &[crate::template::FunctionSpec],
) -> anyhow::Result<()> {
    crate::stack::delete_topology(&iso.cfg, specs).await?;
    drop_database(iso).await
}

/// Drops a run's database (its connections are closed by force).
pub async fn drop_database(iso: &Isolated) -> anyhow::Result<()> {
    let mut admin = iso.db_url.clone();
    admin.set_path("/postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin.as_str()).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        iso.db_name
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_log_counts_faults_and_lost_brokers_and_tracks_batches_in_flight() {
        let mut log = RunnerLog::default();
        for line in [
            r#"{"level":"WARN","message":"fault injected","fault":"slow","function":"order-saga"}"#,
            r#"{"level":"WARN","message":"fault injected","fault":"slow","function":"order-saga"}"#,
            r#"{"level":"WARN","message":"fault injected","fault":"error","function":"payment-process"}"#,
            r#"{"level":"WARN","message":"bridge lost the broker, reconnecting","function":"order-saga"}"#,
            r#"{"level":"WARN","message":"invocation failed, batch goes back"}"#,
            r#"{"level":"DEBUG","message":"batch taken","queue":"run.order-saga","messages":3}"#,
            r#"{"level":"DEBUG","message":"batch taken","queue":"run.order-timeline","messages":1}"#,
            r#"{"level":"DEBUG","message":"batch settled","queue":"run.order-saga"}"#,
            r#"{"level":"DEBUG","message":"batch taken","queue":"run.order-saga","messages":2}"#,
            r#"{"level":"DEBUG","message":"batch settled","queue":"run.order-timeline"}"#,
            "not json at all",
        ] {
            log.record(line);
        }
        assert_eq!(
            log.faults_by_kind(),
            [("error".to_string(), 1), ("slow".to_string(), 2)].into()
        );
        assert_eq!(log.broker_lost, 1);
        assert_eq!(log.in_flight, [("run.order-saga".to_string(), 2)].into());
    }
}
