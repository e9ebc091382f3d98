//! The README's "From sign-up to a connected device" runs as written against
//! a live `aerie serve`: the five shell commands (curl, jq, mosquitto_pub),
//! then the MQTT.js snippet (in Node.js, over WebSocket) with a token minted
//! for it, which must print the device's retained message.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aerie_e2e::Server;
use aerie_e2e::tenants::{Tenant, mint};
use serde_json::json;

const README: &str = include_str!("../../README.md");
const SECTION: &str = "## From sign-up to a connected device";
/// MQTT.js comes from the console's dependencies (`make web`).
const JS_DEPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/node_modules");

/// The `lang` blocks of `SECTION`.
fn blocks(lang: &str) -> Vec<String> {
    let start = README
        .find(SECTION)
        .expect("the README has the walkthrough");
    let rest = &README[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    section
        .split(&format!("```{lang}\n"))
        .skip(1)
        .map(|b| b[..b.find("```").expect("a closed block")].to_owned())
        .collect()
}

/// Runs the shell block against `server`; returns the tenant it made.
fn run_the_five_commands(server: &Server) -> Tenant {
    let sh = blocks("sh");
    assert_eq!(sh.len(), 1, "one shell block");
    let commands = sh[0].lines().filter(|l| !l.ends_with('\\')).count();
    assert_eq!(commands, 6, "API=… and five commands:\n{}", sh[0]);
    let script = sh[0]
        .replace(
            "API=http://127.0.0.1:8080",
            &format!("API=http://{}", server.http),
        )
        .replace(
            "-h 127.0.0.1 -p 1883",
            &format!("-h 127.0.0.1 -p {}", server.mqtt.port()),
        );
    assert_ne!(script, sh[0], "the block uses the default addresses");
    let prelude = "set -euo pipefail\n\
                   curl() { command curl --fail-with-body --show-error \"$@\"; }\n";
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{prelude}{script}\necho \"TID=$TID\"; echo \"KEY=$KEY\"; echo \"SESSION=$TOKEN\""
        ))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the walkthrough failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .to_owned()
    };
    Tenant {
        id: value("TID"),
        api_key: value("KEY"),
        session: value("SESSION"),
    }
}

#[test]
fn the_readme_walkthrough_connects_a_device_and_a_browser_client_reads_it() {
    assert!(
        Path::new(JS_DEPS).join("mqtt").is_dir(),
        "MQTT.js is missing: run `make web` (npm ci in web/)"
    );
    let server = Server::start(&[]);
    let tenant = run_the_five_commands(&server);

    // The browser snippet, with a token minted as the README says.
    let (browser_token, _) = mint(
        &server,
        &tenant,
        json!({"client_id": "dashboard-1", "sub": ["greenhouse/#"]}),
    );
    let js = blocks("js");
    assert_eq!(js.len(), 1, "one js block");
    let snippet = js[0].replace(
        "ws://127.0.0.1:8083/mqtt",
        &format!("ws://{}/mqtt", server.ws),
    );
    assert_ne!(snippet, js[0], "the snippet uses the default address");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(JS_DEPS, dir.path().join("node_modules")).unwrap();
    let file = dir.path().join("snippet.mjs");
    std::fs::write(
        &file,
        format!("const BROWSER_TOKEN = {browser_token:?};\n{snippet}"),
    )
    .unwrap();
    let mut node = Command::new("node")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (make test-deps)");
    let (tx, rx) = mpsc::channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(10));
    let _ = node.kill();
    let output = node.wait_with_output().unwrap();
    assert_eq!(
        line.as_deref(),
        Ok("greenhouse/temperature 21.5"),
        "node stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
