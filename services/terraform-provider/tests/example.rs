//! infra/terraform/examples/local from a clean directory, as a user runs it:
//! the provider from a filesystem mirror laid out by infra/terraform/mirror.sh
//! (what `make terraform-mirror` runs), `terraform init` with that mirror as
//! the only installation source and every proxy pointing at a closed port (so
//! no registry could be asked), one apply (aerie-host starts `aerie serve`,
//! the provider makes a tenant, an API key, a device token and an issuer),
//! the printed mosquitto_pub line, then destroy: no process left and no
//! tenant in the server's database.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use aerie_e2e::server::{aerie_bin, free_addr};
use serde_json::Value;
use support::{copy_dir, succeeded, terraform};

const PROVIDER: &str = env!("CARGO_BIN_EXE_terraform-provider-aerie");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A clean copy of the example and the modules it uses, a mirror of this
/// build of the provider, and a CLI config that installs from the mirror only.
struct Example {
    root: tempfile::TempDir,
}

impl Example {
    fn new() -> Example {
        let root = tempfile::tempdir().unwrap();
        for part in ["modules", "examples"] {
            copy_dir(
                &repo().join("infra/terraform").join(part),
                &root.path().join("infra/terraform").join(part),
            );
        }
        let mirror = root.path().join("mirror");
        let laid_out = Command::new(repo().join("infra/terraform/mirror.sh"))
            .arg(PROVIDER)
            .arg(&mirror)
            .output()
            .unwrap();
        assert!(
            laid_out.status.success(),
            "mirror.sh: {}",
            String::from_utf8_lossy(&laid_out.stderr)
        );
        let cli_config = format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = {:?}\n  }}\n}}\n",
            mirror.display().to_string()
        );
        std::fs::write(root.path().join("cli.tfrc"), cli_config).unwrap();
        Example { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("infra/terraform/examples/local")
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn terraform(&self, args: &[&str]) -> std::process::Output {
        // Any request to a registry would go to a port nobody listens on.
        let offline = [
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
            // ... but the provider and the readiness probe reach the server.
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("no_proxy", "127.0.0.1,localhost"),
        ];
        terraform(
            &self.dir(),
            &self.root.path().join("cli.tfrc"),
            args,
            &offline,
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.terraform(args))
    }
}

/// A test that failed half-way leaves no server behind.
impl Drop for Example {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.data_dir().join("aerie.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

/// The `aerie serve` of `pid` is gone (a zombie no parent reaped counts as
/// gone: it holds no port, file or memory).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The bootstrap account key aerie-host made, from the state.
fn account_key(state: &Value) -> String {
    let resources = state["resources"].as_array().unwrap();
    let key = resources
        .iter()
        .find(|r| r["module"] == "module.aerie" && r["name"] == "account_key")
        .unwrap();
    // terraform_data's output is dynamically typed: {"value": …, "type": …}.
    key["instances"][0]["attributes"]["output"]["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_local_example_applies_offline_publishes_and_destroys_leaving_nothing() {
    assert!(
        Command::new("mosquitto_pub").arg("--help").output().is_ok(),
        "mosquitto_pub is not installed: run `make test-deps`"
    );
    let example = Example::new();
    let init = example.ok(&["init", "-input=false", "-no-color"]);
    assert!(
        init.contains("Installing aerie/aerie v0.1.0"),
        "from the mirror: {init}"
    );

    let vars = [
        format!("aerie_binary={}", aerie_bin().display()),
        format!("data_dir={}", example.data_dir().display()),
        format!("mqtt_port={}", free_addr().port()),
        format!("ws_port={}", free_addr().port()),
        format!("http_port={}", free_addr().port()),
    ];
    let with_vars = |command: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = command.iter().map(|a| a.to_string()).collect();
        args.extend(["-input=false", "-no-color"].map(String::from));
        for var in &vars {
            args.extend(["-var".to_owned(), var.clone()]);
        }
        args
    };
    let run = |command: &[&str]| {
        let args = with_vars(command);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        example.terraform(&args)
    };

    let applied = run(&["apply", "-auto-approve"]);
    let pid_file = example.data_dir().join("aerie.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    let pid = pid.trim();
    let applied = succeeded(&["apply"], applied);
    assert!(
        applied.contains("Apply complete! Resources: 6 added"),
        "{applied}"
    );

    // The printed line publishes as the device; with another password it is refused.
    let line = example.ok(&["output", "-raw", "mosquitto_pub"]);
    let publish = |line: &str| Command::new("sh").arg("-c").arg(line).output().unwrap();
    let published = publish(&line);
    assert!(
        published.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&published.stderr)
    );
    let token = line.split('\'').nth(1).unwrap();
    assert!(token.starts_with("eyJ"), "the device token: {line}");
    assert!(
        !publish(&line.replace(token, "not-a-token"))
            .status
            .success()
    );

    // Nothing to change: every resource reads back as applied, the bootstrap key stays.
    let args = with_vars(&["plan", "-detailed-exitcode"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let planned = example.terraform(&args);
    assert_eq!(
        planned.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&planned.stdout)
    );

    // The account key the server was started with is not in its log.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(example.dir().join("terraform.tfstate")).unwrap(),
    )
    .unwrap();
    let key = account_key(&state);
    assert!(key.starts_with("aerie_acct_"));
    let log = std::fs::read_to_string(example.data_dir().join("aerie.log")).unwrap();
    assert!(
        log.contains("bootstrap account API key registered"),
        "{log}"
    );
    assert!(!log.contains(&key));

    let destroyed = succeeded(&["destroy"], run(&["destroy", "-auto-approve"]));
    assert!(
        destroyed.contains("Destroy complete! Resources: 6 destroyed."),
        "{destroyed}"
    );
    assert!(gone(pid), "aerie serve (pid {pid}) is still running");
    assert!(!pid_file.exists());
    // The tenant was deleted through the API before the server stopped.
    let tenants = Command::new(aerie_bin())
        .args(["tenant", "list", "--json", "--data-dir"])
        .arg(example.data_dir())
        .output()
        .unwrap();
    assert!(tenants.status.success());
    let tenants: Value = serde_json::from_slice(&tenants.stdout).unwrap();
    assert_eq!(tenants, serde_json::json!([]));
}
