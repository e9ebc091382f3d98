//! `aerie serve` as an operator meets it: flags and `AERIE_*` variables, a
//! taken port, SIGTERM, and anonymous access switched off.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aerie_e2e::raw::connect_packet;
use aerie_e2e::server::{aerie_bin, free_addr};
use aerie_e2e::v5client::{V5, v5_options};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{Packet, ProtocolVersion, ReasonCode, encode};
use rumqttc::v5::mqttbytes::QoS as Q5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `aerie` with `args` and default logging (as an operator would) and
/// waits at most `limit` for it to exit.
fn run_aerie(args: &[String], limit: Duration) -> (Output, Duration) {
    run_aerie_with(args, &[], limit)
}

/// `run_aerie` with `env` set besides.
fn run_aerie_with(args: &[String], env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(aerie_bin())
        .args(args)
        .env_remove("AERIE_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aerie");
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let elapsed = started.elapsed();
            return (child.wait_with_output().expect("output"), elapsed);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "aerie still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `serve` flags for every listener on a free port, with `flag` at `taken`.
fn serve_args(flag: &str, taken: std::net::SocketAddr, data_dir: &std::path::Path) -> Vec<String> {
    let mut args = vec!["serve".to_owned()];
    for f in ["--mqtt", "--ws", "--http", "--mqtts", "--wss"] {
        let addr = if f == flag { taken } else { free_addr() };
        args.extend([f.to_owned(), addr.to_string()]);
    }
    args.extend([
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "--allow-anonymous".to_owned(),
    ]);
    args
}

fn assert_port_in_use_error(flag: &str) {
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = occupied.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (out, elapsed) = run_aerie(
        &serve_args(flag, taken, &tmp.path().join("data")),
        Duration::from_secs(5),
    );
    assert!(!out.status.success(), "exit status {}", out.status);
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    assert!(
        lines[0].contains(&taken.to_string()),
        "names the address: {stderr}"
    );
    assert!(lines[0].contains(flag), "names {flag}: {stderr}");
    drop(occupied);
}

#[test]
fn taken_mqtt_port_fails_fast_with_one_line_naming_the_address_and_mqtt_flag() {
    assert_port_in_use_error("--mqtt");
}

#[test]
fn taken_http_port_fails_fast_with_one_line_naming_the_address_and_http_flag() {
    assert_port_in_use_error("--http");
}

#[test]
fn serve_help_lists_every_flag() {
    let (out, _) = run_aerie(
        &["serve".to_owned(), "--help".to_owned()],
        Duration::from_secs(5),
    );
    assert!(out.status.success(), "exit status {}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--mqtt",
        "--ws",
        "--mqtts",
        "--wss",
        "--tls-cert",
        "--tls-key",
        "--http",
        "--data-dir",
        "--secret-key-file",
        "--issuer",
        "--allow-anonymous",
    ] {
        // A whole word, so `--ws` is not satisfied by `--ws-path`.
        assert!(
            help.split_whitespace()
                .any(|w| w.trim_end_matches(',') == flag),
            "`aerie serve --help` does not list {flag}:\n{help}"
        );
    }
}

#[tokio::test]
async fn sigterm_sends_server_shutting_down_to_v5_clients_and_exits_zero() {
    let mut server = Server::start(&[]);
    let (mut v5, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "stay5", true).await;
    let (mut v3, _) = RawClient::connect(server.mqtt, ProtocolVersion::V311, "stay3", true).await;
    let pid = server.pid();
    let started = Instant::now();
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, started.elapsed(), server)
    });
    assert_eq!(
        v5.expect_closed().await,
        Some(ReasonCode::SERVER_SHUTTING_DOWN),
        "v5 client told why"
    );
    // 3.1.1 has no server DISCONNECT: the connection just closes.
    assert_eq!(v3.expect_closed().await, None);
    let (status, elapsed, _server) = exit.await.unwrap();
    assert!(status.success(), "aerie (pid {pid}) exited with {status}");
    assert!(
        elapsed < Duration::from_secs(4),
        "shutdown took {elapsed:?}"
    );
}

#[tokio::test]
async fn v5_client_without_credentials_is_refused_when_anonymous_is_off() {
    let server = ServerOptions::default().anonymous(false).start();
    let (mut c, ack) = RawClient::connect_with(
        server.mqtt,
        connect_packet(ProtocolVersion::V5, "anon5", true),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(c.expect_closed().await, None, "closed after the CONNACK");
}

#[tokio::test]
async fn v311_client_without_credentials_is_refused_with_return_code_5_when_anonymous_is_off() {
    let server = ServerOptions::default().anonymous(false).start();
    let mut s = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
    let mut connect = bytes::BytesMut::new();
    let packet = Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V311,
        "anon3",
        true,
    )));
    encode(&packet, ProtocolVersion::V311, &mut connect).unwrap();
    s.write_all(&connect).await.unwrap();
    // The exact 3.1.1 CONNACK: no session present, return code 5 (not authorized).
    let mut connack = [0u8; 4];
    tokio::time::timeout(aerie_e2e::WAIT, s.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x05]);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(aerie_e2e::WAIT, s.read_to_end(&mut rest))
        .await
        .expect("connection closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "nothing after CONNACK: {rest:?}"
    );
}

#[tokio::test]
async fn aerie_environment_variables_configure_the_server() {
    // Listener addresses, data dir and --allow-anonymous all from AERIE_*.
    let server = ServerOptions::default().via_env().start();
    let (status, body) = server.http_get("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (mut sub, ack) = V5::connect(v5_options(server.mqtt, "env-sub")).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    sub.client.subscribe("env/t", Q5::AtMostOnce).await.unwrap();
    let _suback = sub.next_packet().await;
    sub.client
        .publish("env/t", Q5::AtMostOnce, false, "configured by env")
        .await
        .unwrap();
    let p = sub.next_publish().await;
    assert_eq!(&p.payload[..], b"configured by env");
    assert!(server.data_dir.is_dir(), "AERIE_DATA_DIR created");
}

#[test]
fn max_packet_size_zero_is_refused_before_anything_starts() {
    // CONNACK may not announce 0 (MQTT 5 §3.2.2.3.6): refuse the flag itself.
    let (out, _) = run_aerie(
        &["serve".into(), "--max-packet-size".into(), "0".into()],
        Duration::from_secs(5),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-packet-size"), "{stderr}");
}

/// `serve` on free ports with `extra` flags and `env`, expected to exit: its stderr.
fn serve_refused(extra: &[&str], env: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = serve_args("", free_addr(), &tmp.path().join("data"));
    args.extend(extra.iter().map(|a| a.to_string()));
    let (out, _) = run_aerie_with(&args, env, Duration::from_secs(10));
    assert!(!out.status.success(), "exit status {}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bootstrap_account_without_a_usable_key_is_refused_at_start() {
    let stderr = serve_refused(&["--bootstrap-account", "ops@example.com"], &[]);
    assert!(
        stderr.contains("--bootstrap-account needs its key"),
        "{stderr}"
    );
    let weak = "aerie_acct_tooshort";
    let stderr = serve_refused(
        &["--bootstrap-account", "ops@example.com"],
        &[("AERIE_BOOTSTRAP_ACCOUNT_KEY", weak)],
    );
    assert!(
        stderr.contains("must be aerie_acct_ followed by at least 32 random letters and digits"),
        "{stderr}"
    );
    assert!(!stderr.contains(weak), "the key is not echoed: {stderr}");
}

#[test]
fn a_bootstrap_account_key_acts_as_its_account_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let key = "aerie_acct_ZyXw0123456789abcdefghijklmnopqrstuv";
    let key_file = tmp.path().join("bootstrap.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let key_file = key_file.display().to_string();
    let mut server = ServerOptions::default()
        .args(&[
            "--bootstrap-account",
            "ops@example.com",
            "--bootstrap-account-key-file",
            &key_file,
        ])
        .start();
    server
        .api(
            "POST",
            "/v1/tenants",
            Some(key),
            Some(&serde_json::json!({"name": "plant"})),
        )
        .expect(201);
    server.restart_gracefully();
    let tenants = server
        .api("GET", "/v1/tenants", Some(key), None)
        .expect(200);
    assert_eq!(tenants[0]["name"], "plant", "{tenants}");
}
