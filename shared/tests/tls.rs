//! The cloud speaks TLS only (Amazon MQ `amqps://`, ElastiCache `rediss://`, RDS
//! `sslmode=require`): each client accepts its TLS URL and, pointed at a loopback socket that
//! stands in for the server, really opens a TLS handshake there (a ClientHello), so the TLS
//! features are compiled in and wired. Nothing leaves the machine.

use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Accepts one connection, optionally answers a plaintext preamble (Postgres' SSLRequest),
/// then returns the first 6 bytes the client sends: a TLS record header and handshake type.
async fn first_tls_bytes(listener: TcpListener, preamble: Option<([u8; 8], u8)>) -> [u8; 6] {
    let (mut socket, _) = listener.accept().await.expect("client connects");
    if let Some((expected, answer)) = preamble {
        let mut got = [0u8; 8];
        socket.read_exact(&mut got).await.expect("preamble");
        assert_eq!(got, expected, "plaintext preamble");
        socket.write_all(&[answer]).await.expect("answer");
    }
    let mut head = [0u8; 6];
    socket.read_exact(&mut head).await.expect("TLS record");
    head
}

fn assert_client_hello(head: [u8; 6], client: &str) {
    assert_eq!(
        head[0], 0x16,
        "{client}: a TLS handshake record, got {head:?}"
    );
    assert_eq!(head[1], 0x03, "{client}: TLS major version 3, got {head:?}");
    assert_eq!(head[5], 0x01, "{client}: a ClientHello, got {head:?}");
}

async fn loopback() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

#[test]
fn an_amazon_mq_amqps_url_parses_with_the_tls_port_and_vhost() {
    let uri: lapin::uri::AMQPUri = "amqps://orderflow:pw@b-1234.mq.eu-west-1.amazonaws.com/%2f"
        .parse()
        .expect("amqps URL");
    assert_eq!(uri.scheme, lapin::uri::AMQPScheme::AMQPS);
    assert_eq!(uri.authority.port, 5671);
    assert_eq!(uri.vhost, "/");
}

#[tokio::test]
async fn the_amqp_client_speaks_tls_to_an_amqps_url() {
    let (listener, port) = loopback().await;
    let server = tokio::spawn(first_tls_bytes(listener, None));
    let url = format!("amqps://orderflow:pw@127.0.0.1:{port}/%2f");
    let client = tokio::spawn(async move {
        let _ = shared::publisher::connect(&url, "tls-test").await;
    });
    let head = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("a ClientHello within 10 s")
        .expect("server task");
    assert_client_hello(head, "lapin");
    client.abort();
}

#[test]
fn an_elasticache_rediss_url_is_a_verified_tls_address() {
    let client = redis::Client::open(
        "rediss://:token@master.orderflow.abc123.euw1.cache.amazonaws.com:6379",
    )
    .expect("rediss URL accepted (TLS support compiled in)");
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::TcpTls { port, insecure, .. } => {
            assert_eq!(*port, 6379);
            assert!(!insecure, "certificates are verified");
        }
        other => panic!("rediss:// must be a TLS address, got {other:?}"),
    }
    assert!(shared::cache::Redis::new("rediss://:token@cache.example.com:6379").is_ok());
}

#[tokio::test]
async fn the_redis_client_speaks_tls_to_a_rediss_url() {
    let (listener, port) = loopback().await;
    let server = tokio::spawn(first_tls_bytes(listener, None));
    let redis = shared::cache::Redis::new(&format!("rediss://:token@127.0.0.1:{port}"))
        .expect("rediss URL");
    let client = tokio::spawn(async move {
        let _ = redis.conn().await;
    });
    let head = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("a ClientHello within 10 s")
        .expect("server task");
    assert_client_hello(head, "redis");
    client.abort();
}

#[test]
fn a_postgres_url_with_sslmode_require_configures_tls() {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    use std::str::FromStr as _;
    let url = "postgres://orderflow:pw@orderflow.cluster-abc.eu-west-1.rds.amazonaws.com:5432/orderflow?sslmode=require";
    let opts = PgConnectOptions::from_str(url).expect("URL parses");
    assert!(matches!(opts.get_ssl_mode(), PgSslMode::Require));
    // RDS certificates chain to the RDS CA, which is not a public root: verify-full needs
    // its bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem).
    let verified = "postgres://orderflow:pw@db.example.com/orderflow?sslmode=verify-full&sslrootcert=/opt/rds/global-bundle.pem";
    let opts = PgConnectOptions::from_str(verified).expect("verify-full URL parses");
    assert!(matches!(opts.get_ssl_mode(), PgSslMode::VerifyFull));
    // The services' pool takes the same URL (it connects lazily).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async { assert!(shared::db::pool(url, 1).is_ok()) });
}

#[tokio::test]
async fn the_postgres_client_upgrades_to_tls_with_sslmode_require() {
    use sqlx::Connection as _;
    let (listener, port) = loopback().await;
    // SSLRequest: length 8, code 80877103; the server answers 'S' (go ahead with TLS).
    let ssl_request = [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F];
    let server = tokio::spawn(first_tls_bytes(listener, Some((ssl_request, b'S'))));
    let url = format!("postgres://orderflow:pw@127.0.0.1:{port}/orderflow?sslmode=require");
    let client = tokio::spawn(async move {
        let _ = sqlx::PgConnection::connect(&url).await;
    });
    let head = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("a ClientHello within 10 s")
        .expect("server task");
    assert_client_hello(head, "sqlx");
    client.abort();
}
