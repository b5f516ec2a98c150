//! The external faults, aimed where the configuration points (`DATABASE_URL`, `REDIS_URL`,
//! `AMQP_URL`), each returning the evidence that it fired. What cannot be done to a server
//! on another machine (restarting Redis, asking the broker node with `rabbitmqctl`) is
//! refused before the run starts, naming the `--skip` that leaves it out.

use super::referee::{External, KillEvidence};
use crate::child::{Isolated, Runner, shell};
use anyhow::Context as _;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

/// `(host, port)` of a URL that points at this machine, else `host:port` as the error.
pub fn local_host_port(url: &str, default_port: u16) -> Result<(String, u16), String> {
    let u = url::Url::parse(url).map_err(|e| format!("an unparseable URL ({e})"))?;
    let port = u.port().unwrap_or(default_port);
    let host = u.host_str().unwrap_or("").to_string();
    // For schemes the url crate does not know (redis, amqp) an address stays a string.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let local = bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        Ok((host, port))
    } else {
        Err(format!("{host}:{port}"))
    }
}

/// Refuses, before anything starts, the faults this machine cannot inject where the
/// configuration points.
pub fn preflight(cfg: &shared::Config, skip: &[External]) -> anyhow::Result<()> {
    let mut refused = Vec::new();
    if !skip.contains(&External::Redis)
        && let Err(at) = local_host_port(&cfg.redis_url, 6379)
    {
        refused.push(format!(
            "REDIS_URL points at {at}, not this machine: the Redis restart cannot be injected there; run with --skip redis"
        ));
    }
    let needs_node: Vec<&str> = [External::Broker, External::Kill]
        .into_iter()
        .filter(|e| !skip.contains(e))
        .map(External::name)
        .collect();
    if !needs_node.is_empty()
        && let Err(at) = local_host_port(&cfg.amqp_url, 5672)
    {
        refused.push(format!(
            "AMQP_URL points at {at}, not this machine: rabbitmqctl (which closes the connections and shows the deliveries in flight at the kill) reaches only the local node; run with --skip {}",
            needs_node.join(",")
        ));
    }
    anyhow::ensure!(refused.is_empty(), "{}", refused.join("\n"));
    Ok(())
}

/// Closes every connection on the local broker node.
pub async fn close_broker_connections() -> anyhow::Result<()> {
    shell(
        "rabbitmqctl",
        &["-q", "close_all_connections", "chaos: injected"],
    )
    .await?;
    Ok(())
}

/// Terminates every backend of the run's database, through the configured server.
/// Returns how many there were.
pub async fn terminate_backends(iso: &Isolated) -> anyhow::Result<i64> {
    let mut admin = iso.db_url.clone();
    admin.set_path("/postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin.as_str())
        .await
        .with_context(|| {
            format!(
                "connecting to {} to terminate backends",
                shared::config::redact(admin.as_str())
            )
        })?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&iso.db_name)
    .fetch_one(&mut conn)
    .await?;
    Ok(n)
}

/// The server settings a restart must keep (read with `CONFIG GET`): where it listens,
/// where it logs, and that it neither saves nor appends (so the restart loses everything,
/// which is the fault).
const REDIS_KEPT: &[&str] = &[
    "bind",
    "dir",
    "logfile",
    "save",
    "appendonly",
    "requirepass",
];

/// `redis-server` arguments that start the server again as it ran, daemonized.
pub fn redis_server_args(port: u16, config: &[(String, String)]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--daemonize".into(),
        "yes".into(),
        "--port".into(),
        port.to_string(),
    ];
    for (key, value) in config {
        match key.as_str() {
            "bind" => {
                args.push("--bind".into());
                args.extend(value.split_whitespace().map(str::to_string));
            }
            "requirepass" if value.is_empty() => {}
            _ => {
                args.push(format!("--{key}"));
                args.push(value.clone());
            }
        }
    }
    args
}

/// What a Redis restart did.
#[derive(Debug, Clone)]
pub struct RedisRestart {
    pub at: String,
    pub run_id_before: String,
    pub run_id_after: String,
}

async fn redis_run_id(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|s| s.trim().to_string())
        .context("INFO server gave no run_id")
}

/// Shuts the configured (local) Redis down without saving and starts it again with the
/// settings it ran with. Its run_id before and after tell that it really restarted.
pub async fn restart_redis(redis_url: &str) -> anyhow::Result<RedisRestart> {
    let (host, port) = local_host_port(redis_url, 6379).map_err(|at| {
        anyhow::anyhow!("REDIS_URL points at {at}: the restart cannot be injected")
    })?;
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let run_id_before = redis_run_id(&mut conn).await?;
    let mut config = Vec::new();
    for key in REDIS_KEPT {
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(*key)
            .query_async(&mut conn)
            .await
            .with_context(|| format!("CONFIG GET {key}: needed to restart Redis as it ran"))?;
        if let [_, value] = pair.as_slice() {
            config.push((key.to_string(), value.clone()));
        }
    }
    // The server closes the connection as it goes: an error is the expected answer.
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async(&mut conn)
        .await;
    drop(conn);
    // Starting again before the port is free would fail.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get_multiplexed_async_connection().await.is_ok() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Redis at {host}:{port} was still up 10 s after SHUTDOWN NOSAVE"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let args = redis_server_args(port, &config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    shell("redis-server", &args).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let run_id_after = loop {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await
            && let Ok(id) = redis_run_id(&mut c).await
        {
            break id;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Redis at {host}:{port} did not come back within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Ok(RedisRestart {
        at: format!("{host}:{port}"),
        run_id_before,
        run_id_after,
    })
}

async fn signal(name: &str, pid: u32) -> anyhow::Result<()> {
    shell("kill", &[&format!("-{name}"), &pid.to_string()]).await?;
    Ok(())
}

/// Unacknowledged deliveries per queue of `queues`, live from the broker node.
async fn unacked_now(
    vhost: &str,
    queues: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let consumers = [
        "-q",
        "list_consumers",
        "-p",
        vhost,
        "--formatter",
        "json",
        "queue_name",
        "channel_pid",
    ];
    let channels = [
        "-q",
        "list_channels",
        "--formatter",
        "json",
        "pid",
        "messages_unacknowledged",
    ];
    // Both at once: the runner is stopped while they run.
    let (consumers, channels) = tokio::join!(
        shell("rabbitmqctl", &consumers),
        shell("rabbitmqctl", &channels)
    );
    super::referee::unacked_by_queue(&consumers?, &channels?, queues)
}

/// SIGKILLs the runner with a batch provably in flight. Each look stops the runner
/// (SIGSTOP), then reads both sides: the broker's live count of deliveries to it left
/// unacknowledged, per queue, and the batches its triggers had taken and not settled, from
/// the lines it logged before it stopped (read after the broker query, which takes over
/// half a second: time for the log reader to drain the pipe of a process that writes no
/// more). A stopped process settles nothing, so what a look sees still holds when the
/// SIGKILL lands. A look that finds no queue where both agree lets the runner go on
/// (SIGCONT) and looks again, until `bound`; the kill happens either way, and the evidence
/// says whether it was in flight. Returns the evidence and whether the runner died by
/// SIGKILL.
pub async fn kill_in_flight(
    runner: &mut Runner,
    vhost: &str,
    queues: &BTreeSet<String>,
    bound: Duration,
) -> anyhow::Result<(KillEvidence, bool)> {
    let pid = runner.child.id().context("the runner had already exited")?;
    let deadline = Instant::now() + bound;
    let mut evidence = KillEvidence::default();
    loop {
        evidence.looks += 1;
        signal("STOP", pid).await?;
        evidence.held = match unacked_now(vhost, queues).await {
            Ok(held) => held,
            Err(e) => {
                evidence.errors.push(format!("{e:#}"));
                BTreeMap::new()
            }
        };
        evidence.batches = runner
            .log
            .lock()
            .map(|l| l.in_flight.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(q, _)| queues.contains(q))
            .collect();
        if !evidence.in_flight().is_empty() {
            break;
        }
        signal("CONT", pid).await?;
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGKILL ends a stopped process as well.
    runner.child.start_kill()?;
    let status = runner.child.wait().await?;
    Ok((evidence, status.signal() == Some(9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_local() {
        assert_eq!(
            local_host_port("redis://127.0.0.1:6380", 6379),
            Ok(("127.0.0.1".into(), 6380))
        );
        assert_eq!(
            local_host_port("redis://localhost", 6379),
            Ok(("localhost".into(), 6379))
        );
        assert_eq!(
            local_host_port("redis://:secret@[::1]:6379/2", 6379),
            Ok(("[::1]".into(), 6379))
        );
        assert_eq!(
            local_host_port("rediss://cache.example.com:6390", 6379),
            Err("cache.example.com:6390".into())
        );
        assert_eq!(
            local_host_port("amqp://guest:guest@10.0.0.7/%2f", 5672),
            Err("10.0.0.7:5672".into())
        );
    }

    #[test]
    fn a_remote_redis_needs_skip_redis_and_a_remote_broker_needs_skip_broker_and_kill() {
        let cfg = |pairs: &[(&str, &str)]| {
            let map: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            shared::Config::from_lookup(|k| map.get(k).cloned()).expect("config")
        };
        assert!(preflight(&cfg(&[]), &[]).is_ok());
        let remote_redis = cfg(&[("REDIS_URL", "redis://cache.example.com:6379")]);
        let err = preflight(&remote_redis, &[]).expect_err("refused");
        assert!(err.to_string().contains("--skip redis"), "{err}");
        assert!(preflight(&remote_redis, &[External::Redis]).is_ok());
        let remote_broker = cfg(&[("AMQP_URL", "amqps://u:p@mq.example.com:5671/%2f")]);
        let err = preflight(&remote_broker, &[External::Kill]).expect_err("refused");
        assert!(err.to_string().contains("--skip broker"), "{err}");
        assert!(!err.to_string().contains("u:p"), "{err}");
        assert!(preflight(&remote_broker, &[External::Broker, External::Kill]).is_ok());
    }

    #[test]
    fn redis_starts_again_with_the_settings_it_ran_with() {
        let config: Vec<(String, String)> = [
            ("bind", "127.0.0.1 -::1"),
            ("dir", "/var/lib/redis"),
            ("logfile", "/var/log/redis/ci.log"),
            ("save", ""),
            ("appendonly", "no"),
            ("requirepass", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            redis_server_args(6379, &config),
            [
                "--daemonize",
                "yes",
                "--port",
                "6379",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--dir",
                "/var/lib/redis",
                "--logfile",
                "/var/log/redis/ci.log",
                "--save",
                "",
                "--appendonly",
                "no"
            ]
        );
    }
}
