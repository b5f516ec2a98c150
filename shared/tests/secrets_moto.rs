//! Secrets read at init from a local stand-in for AWS Secrets Manager (moto's server, from
//! PyPI: `pip install "moto[server]==5.2.1"`; `.ci/run` installs it): ARNs in the
//! environment become the broker, database and Redis URLs and the payment key, through
//! real SigV4-signed `GetSecretValue` calls, and the resolved broker URL connects. A
//! secret that does not exist fails the start, naming the variable, not a value.

use shared::secrets::{self, SecretsError};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// moto's server on a free port, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{bin} did not start ({e}): pip install \"moto[server]==5.2.1\"")
        });
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..150 {
        if http
            .get(format!("{}/moto-api/", moto.endpoint))
            .send()
            .await
            .is_ok()
        {
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not answer on {}", moto.endpoint);
}

/// Creates a secret through the same JSON API; its ARN.
async fn create_secret(endpoint: &str, name: &str, value: &str) -> String {
    let body = serde_json::json!({"Name": name, "SecretString": value}).to_string();
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let host = endpoint.trim_start_matches("http://").to_string();
    let headers = vec![
        ("host".to_string(), host),
        ("x-amz-date".to_string(), date.clone()),
        (
            "x-amz-target".to_string(),
            "secretsmanager.CreateSecret".to_string(),
        ),
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
    ];
    let creds = shared::sigv4::Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    };
    let auth = shared::sigv4::authorization(
        &creds,
        "us-east-1",
        "secretsmanager",
        &date,
        &shared::sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload: body.as_bytes(),
        },
    );
    let mut req = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .body(body);
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        req = req.header(k.as_str(), v.as_str());
    }
    let answer: serde_json::Value = req
        .header("authorization", auth)
        .send()
        .await
        .expect("CreateSecret")
        .json()
        .await
        .expect("CreateSecret JSON");
    answer["ARN"].as_str().expect("an ARN").to_string()
}

fn lookup(env: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
    move |k| env.get(k).cloned()
}

fn aws_env(endpoint: &str) -> HashMap<&'static str, String> {
    HashMap::from([
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_SESSION_TOKEN", "session".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.to_string()),
    ])
}

#[tokio::test]
async fn arns_in_the_environment_become_working_urls_and_keys_at_init() {
    let moto = moto().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let amqp = url::Url::parse(
        &shared::Config::from_lookup(|k| std::env::var(k).ok())
            .expect("config")
            .amqp_url,
    )
    .expect("AMQP_URL");
    // The broker secret holds credentials only, as Amazon MQ's generated one does.
    let broker = create_secret(
        &moto.endpoint,
        &format!("of-{run}-broker"),
        &serde_json::json!({"username": amqp.username(), "password": amqp.password().unwrap_or("")}).to_string(),
    )
    .await;
    let database = create_secret(
        &moto.endpoint,
        &format!("of-{run}-db"),
        "postgres://postgres@127.0.0.1:5432/orderflow",
    )
    .await;
    let redis = create_secret(
        &moto.endpoint,
        &format!("of-{run}-redis"),
        r#"{"password":"s3cr3t/@:"}"#,
    )
    .await;
    let key = create_secret(
        &moto.endpoint,
        &format!("of-{run}-key"),
        "c2VjcmV0LWtleQ==\n",
    )
    .await;

    let mut without_credentials = amqp.clone();
    let _ = without_credentials.set_username("");
    let _ = without_credentials.set_password(None);
    let mut env = aws_env(&moto.endpoint);
    env.extend([
        ("AMQP_URL", without_credentials.to_string()),
        ("AMQP_SECRET_ARN", broker),
        ("DATABASE_SECRET_ARN", database),
        ("REDIS_URL", "rediss://cache.example:6379".to_string()),
        ("REDIS_SECRET_ARN", redis),
        ("PAYMENT_TOKEN_KEY_SECRET_ARN", key),
    ]);
    let plain = lookup(env);
    let filled = secrets::resolve(&plain).await.expect("secrets read");
    let cfg = shared::Config::from_lookup(|k| filled.get(k).cloned().or_else(|| plain(k)))
        .expect("config");

    assert_eq!(cfg.amqp_url, amqp.to_string());
    assert_eq!(
        cfg.database_url,
        "postgres://postgres@127.0.0.1:5432/orderflow"
    );
    assert_eq!(
        cfg.redis_url,
        "rediss://:s3cr3t%2F%40%3A@cache.example:6379"
    );
    assert_eq!(
        cfg.payment_token_key.as_ref().map(|k| k.expose()),
        Some("c2VjcmV0LWtleQ==")
    );
    // The URL built from the secret is the one that works.
    let conn = shared::publisher::connect(&cfg.amqp_url, "secrets-test")
        .await
        .expect("the resolved broker URL connects");
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_missing_secret_fails_the_start_naming_the_variable() {
    let moto = moto().await;
    let mut env = aws_env(&moto.endpoint);
    env.insert(
        "DATABASE_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:of-nothing-AbCdEf".into(),
    );
    let err = secrets::resolve(lookup(env))
        .await
        .expect_err("no such secret");
    assert!(
        matches!(&err, SecretsError::Refused { arn_var: "DATABASE_SECRET_ARN", error_type, .. } if error_type.contains("ResourceNotFound")),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_secrets_manager_is_an_error_naming_the_endpoint() {
    let mut env = aws_env("http://127.0.0.1:1");
    env.insert(
        "AMQP_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:of-broker-AbCdEf".into(),
    );
    let err = secrets::resolve(lookup(env))
        .await
        .expect_err("unreachable");
    assert!(err.to_string().contains("http://127.0.0.1:1"), "{err}");
}
