//! `aerie migrate`, `aerie token`, `aerie tenant`, `aerie account` through the real binary:
//! on a data dir directly, and against a running `aerie serve` with --url.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use aerie_e2e::server::aerie_bin;
use aerie_e2e::{Server, ServerOptions};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdefghij";

/// Runs `aerie args…` with no `AERIE_*` variables from the test's environment.
fn aerie(args: &[&str]) -> Output {
    aerie_with(args, &[], None)
}

/// As [`aerie`], with the variables `env` and `stdin` written to its stdin.
fn aerie_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(aerie_bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("AERIE_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aerie");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("aerie ends")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A REST call with an optional JSON body given as text: (status, body).
fn call(
    server: &Server,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let r = server.api(method, path, bearer, body.map(json).as_ref());
    (r.status, r.body)
}

/// An account, one tenant and its API key, through HTTP: (tenant id, API key).
fn tenant_and_key(server: &Server) -> (String, String) {
    let (status, body) = call(
        server,
        "POST",
        "/v1/accounts",
        None,
        Some(r#"{"email":"op@example.com","password":"correct horse battery"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let session = json(&body)["token"].as_str().unwrap().to_owned();
    let (status, body) = call(
        server,
        "POST",
        "/v1/tenants",
        Some(&session),
        Some(r#"{"name":"plant"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let tid = json(&body)["id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        server,
        "POST",
        &format!("/v1/tenants/{tid}/api-keys"),
        Some(&session),
        Some(r#"{"name":"ci"}"#),
    );
    assert_eq!(status, 201, "{body}");
    (tid, json(&body)["key"].as_str().unwrap().to_owned())
}

/// The claims of a JWT (its payload, not verified).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn tenant_limits(server: &Server, tid: &str, key: &str) -> Value {
    let (status, body) = call(
        server,
        "GET",
        &format!("/v1/tenants/{tid}"),
        Some(key),
        None,
    );
    assert_eq!(status, 200, "{body}");
    json(&body)["limits"].clone()
}

fn data_dir(server: &Server) -> &str {
    server.data_dir.to_str().unwrap()
}

#[test]
fn migrate_applies_on_a_fresh_data_dir_then_is_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh");
    let dir = dir.to_str().unwrap();
    let first = stdout(&aerie(&["migrate", "--data-dir", dir]));
    assert!(first.contains("applied 0001 control"), "{first}");
    assert!(first.contains("applied 0002 tokens"), "{first}");
    assert!(!first.contains("up to date"), "{first}");
    assert!(Path::new(dir).join("control.db").exists());
    let second = stdout(&aerie(&["migrate", "--data-dir", dir]));
    assert!(second.contains("up to date"), "{second}");
    assert!(!second.contains("applied"), "{second}");
}

#[test]
fn token_mint_remote_and_local_print_a_jwt_of_the_tenant() {
    let server = Server::start(&[]);
    let (tid, key) = tenant_and_key(&server);
    let url = format!("http://{}", server.http);

    let out = stdout(&aerie(&[
        "token",
        "mint",
        "--url",
        &url,
        "--api-key",
        &key,
        "--tenant",
        &tid,
        "--client-id",
        "dev-1",
        "--pub",
        "sensors/${client_id}/#",
        "--ttl",
        "600",
    ]));
    let token = out.trim();
    assert_eq!(out.lines().count(), 1, "only the token: {out}");
    let c = claims(token);
    assert_eq!(c["tnt"], tid.as_str());
    assert_eq!(c["client_id"], "dev-1");
    assert_eq!(c["acl"]["pub"][0], "sensors/${client_id}/#");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);

    // Locally, on the server's own data dir, with its secret key.
    let out = stdout(&aerie(&[
        "token",
        "mint",
        "--data-dir",
        data_dir(&server),
        "--issuer",
        &url,
        "--tenant",
        &tid,
        "--client-id",
        "dev-2",
        "--json",
    ]));
    let minted = json(&out);
    let c = claims(minted["token"].as_str().unwrap());
    assert_eq!(c["tnt"], tid.as_str());
    assert_eq!(c["client_id"], "dev-2");
    assert_eq!(c["iss"], url.as_str());
    assert_eq!(c["jti"], minted["jti"]);
    // The server knows the token: revoking it through HTTP works once.
    let jti = minted["jti"].as_str().unwrap();
    let out = stdout(&aerie(&[
        "token",
        "revoke",
        "--url",
        &url,
        "--api-key",
        &key,
        "--tenant",
        &tid,
        jti,
    ]));
    assert!(out.contains(jti), "{out}");
    let again = aerie(&[
        "token",
        "revoke",
        "--url",
        &url,
        "--api-key",
        &key,
        "--tenant",
        &tid,
        jti,
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("token not found"));
}

#[test]
fn wrong_api_key_exits_non_zero_with_the_problem_detail() {
    let server = Server::start(&[]);
    let (tid, _) = tenant_and_key(&server);
    let url = format!("http://{}", server.http);
    let out = aerie(&[
        "token",
        "mint",
        "--url",
        &url,
        "--api-key",
        "aerie_wrongwrongwrongwrongwrongwrong",
        "--tenant",
        &tid,
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown or revoked API key"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
}

#[test]
fn tenant_set_limits_remote_with_admin_token_and_local_change_the_tenant_object() {
    let server = ServerOptions::default()
        .env("AERIE_ADMIN_TOKEN", ADMIN_TOKEN)
        .start();
    let (tid, key) = tenant_and_key(&server);
    let url = format!("http://{}", server.http);

    let out = stdout(&aerie(&[
        "tenant",
        "set-limits",
        "--url",
        &url,
        "--admin-token",
        ADMIN_TOKEN,
        &tid,
        "--connections",
        "500",
        "--max-packet-size",
        "4096",
        "--json",
    ]));
    assert_eq!(json(&out)["limits"]["connections"], 500);
    let limits = tenant_limits(&server, &tid, &key);
    assert_eq!(limits["connections"], 500);
    assert_eq!(limits["max_packet_size"], 4096);
    assert_eq!(limits["publish_rate_msgs"], 100);

    let out = stdout(&aerie(&[
        "tenant",
        "set-limits",
        "--data-dir",
        data_dir(&server),
        &tid,
        "--publish-rate-msgs",
        "7",
    ]));
    assert!(out.contains("publish_rate_msgs: 7"), "{out}");
    let limits = tenant_limits(&server, &tid, &key);
    assert_eq!(limits["publish_rate_msgs"], 7);
    assert_eq!(limits["connections"], 500);

    // A range error from the server: its detail, exit ≠ 0.
    let out = aerie(&[
        "tenant",
        "set-limits",
        "--url",
        &url,
        "--admin-token",
        ADMIN_TOKEN,
        &tid,
        "--max-packet-size",
        "15",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`max_packet_size` must be between 16"),
        "{stderr}"
    );
    // An API key is not the admin token.
    let out = aerie(&[
        "tenant",
        "set-limits",
        "--url",
        &url,
        "--admin-token",
        &key,
        &tid,
        "--connections",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the admin token"));

    // The readable list, locally and remotely.
    let table = stdout(&aerie(&["tenant", "list", "--data-dir", data_dir(&server)]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(
        lines[1].starts_with(&tid) && lines[1].contains("500"),
        "{table}"
    );
    let out = stdout(&aerie(&[
        "tenant",
        "suspend",
        "--url",
        &url,
        "--admin-token",
        ADMIN_TOKEN,
        &tid,
        "--json",
    ]));
    assert_eq!(json(&out)["status"], "suspended");
    let out = stdout(&aerie(&[
        "tenant",
        "get",
        "--url",
        &url,
        "--api-key",
        &key,
        &tid,
    ]));
    assert!(out.contains("status: suspended"), "{out}");
}

#[test]
fn serve_refuses_a_short_admin_token_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("admin.token");
    std::fs::write(&file, "too-short\n").unwrap();
    let out = aerie(&[
        "serve",
        "--data-dir",
        tmp.path().join("data").to_str().unwrap(),
        "--admin-token-file",
        file.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--mqtt",
        "127.0.0.1:0",
        "--ws",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("at least 32 characters"), "{stderr}");
    assert!(lines[0].contains("--admin-token-file"), "{stderr}");
    assert!(!stderr.contains("too-short"), "{stderr}");
}

const PASSWORD: &str = "correct horse battery";

#[test]
fn account_api_key_remote_create_list_delete_with_a_log_in() {
    let server = Server::start(&[]);
    tenant_and_key(&server); // signs up op@example.com
    let url = format!("http://{}", server.http);
    let as_op = ["--url", &url, "--email", "op@example.com"];
    let password = [("AERIE_PASSWORD", PASSWORD)];

    // Create: the key alone on stdout, and it acts as the account.
    let create = [
        &["account", "api-key", "create"],
        &as_op[..],
        &["--name", "terraform"],
    ]
    .concat();
    let key = stdout(&aerie_with(&create, &password, None))
        .trim()
        .to_owned();
    assert!(key.starts_with("aerie_acct_"), "{key}");
    let (status, body) = call(
        &server,
        "POST",
        "/v1/tenants",
        Some(&key),
        Some(r#"{"name":"barn"}"#),
    );
    assert_eq!(status, 201, "{body}");

    // List (the password on stdin this time): the name, never the key.
    let list = [&["account", "api-key", "list"], &as_op[..], &["--json"]].concat();
    let listed = json(&stdout(&aerie_with(
        &list,
        &[],
        Some(&format!("{PASSWORD}\n")),
    )));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["name"], "terraform");
    assert!(listed[0].get("key").is_none(), "{listed}");
    let table = stdout(&aerie_with(&list[..list.len() - 1], &password, None));
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains("terraform") && !table.contains(&key),
        "{table}"
    );

    // An account key cannot manage account keys, through the CLI either.
    let with_key = [
        "account",
        "api-key",
        "list",
        "--url",
        &url,
        "--session-token",
        &key,
    ];
    let out = aerie(&with_key);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session token") && stderr.contains("403"),
        "{stderr}"
    );

    // Delete: the key is refused at once; a wrong password is the API's 401.
    let id = listed[0]["id"].as_str().unwrap();
    let delete = [&["account", "api-key", "delete"], &as_op[..], &[id]].concat();
    stdout(&aerie_with(&delete, &password, None));
    let (status, _) = call(&server, "GET", "/v1/tenants", Some(&key), None);
    assert_eq!(status, 401);
    let out = aerie_with(&list, &[("AERIE_PASSWORD", "not the password")], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong email or password"), "{stderr}");
}

#[test]
fn account_api_key_local_create_works_against_the_running_server() {
    let server = Server::start(&[]);
    tenant_and_key(&server);
    let dir = data_dir(&server);
    let local = ["--data-dir", dir, "--email", " OP@example.com "];
    let create = [
        &["account", "api-key", "create"],
        &local[..],
        &["--name", "ci", "--json"],
    ]
    .concat();
    let created = json(&stdout(&aerie(&create)));
    let key = created["key"].as_str().unwrap();
    let (status, body) = call(&server, "GET", "/v1/tenants", Some(key), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body).as_array().unwrap().len(), 1);

    let id = created["id"].as_str().unwrap();
    stdout(&aerie(
        &[&["account", "api-key", "delete"], &local[..], &[id]].concat(),
    ));
    let (status, _) = call(&server, "GET", "/v1/tenants", Some(key), None);
    assert_eq!(
        status, 401,
        "deleted on the database, refused by the server"
    );
    let out = aerie(&[&["account", "api-key", "delete"], &local[..], &[id]].concat());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("account API key not found"), "{stderr}");
    let out = aerie(&[
        "account",
        "api-key",
        "list",
        "--data-dir",
        dir,
        "--email",
        "nobody@example.com",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no account with the email nobody@example.com"),
        "{stderr}"
    );
}
