//! The README's control-plane examples run as written against a live
//! `aerie serve`: every ```sh block of the "Control plane API" section, in
//! order, in one bash, with curl failing on any HTTP error.

use std::process::Command;

use aerie_e2e::ServerOptions;
use aerie_e2e::server::aerie_bin;

const README: &str = include_str!("../../README.md");
const SECTION: &str = "## Control plane API";

/// The ```sh blocks between `SECTION` and the next `## ` heading.
fn shell_blocks() -> Vec<String> {
    let start = README
        .find(SECTION)
        .expect("the README has a control-plane section");
    let rest = &README[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| b[..b.find("```").expect("a closed block")].to_owned())
        .collect()
}

#[test]
fn readme_curl_examples_run_against_a_live_server() {
    // The operator examples use the admin token from the environment.
    let admin_token = "readme-admin-token-0123456789abcdef";
    let server = ServerOptions::default()
        .env("AERIE_ADMIN_TOKEN", admin_token)
        .start();
    let blocks = shell_blocks();
    assert!(blocks.len() >= 2, "found {} sh blocks", blocks.len());
    let script = blocks.concat();
    let default_api = "API=http://127.0.0.1:8080";
    assert!(
        script.contains(default_api),
        "the examples start from {default_api}"
    );
    let script = script.replace(default_api, &format!("API=http://{}", server.http));
    // The examples use `./data`: run where the server's data dir is `./data`.
    let cwd = server.data_dir.parent().unwrap();
    assert_eq!(server.data_dir, cwd.join("data"));
    let prelude = format!(
        "set -euo pipefail\n\
         curl() {{ command curl --fail-with-body --show-error \"$@\"; echo; }}\n\
         aerie() {{ '{}' \"$@\"; }}\n",
        aerie_bin().display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(cwd)
        .env("AERIE_ADMIN_TOKEN", admin_token)
        .env_remove("AERIE_DATABASE_URL")
        .env_remove("AERIE_SECRET_KEY")
        .env_remove("AERIE_SECRET_KEY_FILE")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README examples failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What the examples did is really there.
    assert!(stdout.contains("\"name\":\"plant 1\""), "{stdout}");
    assert!(stdout.contains("new signing key: "), "{stdout}");
    assert!(stdout.contains("\"kind\":\"public_key\""), "{stdout}");
    assert!(stdout.contains("plant 1  free  active  500"), "{stdout}");
}
