//! What the provider's tests share: one `aerie serve` for the tests of a
//! binary that run at the same time, an account with an account API key,
//! and a Terraform working directory whose `aerie/aerie` provider is this
//! crate's binary (dev_overrides). Needs `target/debug/aerie` (`cargo build
//! -p aerie`; `make test` builds it first) and Terraform 1.11 on PATH.
#![allow(dead_code)] // each test binary uses its part

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use aerie_e2e::Server;
use serde_json::{Value, json};

const PROVIDER: &str = env!("CARGO_BIN_EXE_terraform-provider-aerie");

/// The server of the tests running now: started by the first, killed when
/// the last one drops it (a static is never dropped; this is).
pub fn shared_server() -> Arc<Server> {
    static RUNNING: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut running = RUNNING.lock();
    if let Some(server) = running.upgrade() {
        return server;
    }
    let server = Arc::new(Server::start(&[]));
    *running = Arc::downgrade(&server);
    server
}

/// An account with an account API key: (session token, account key).
pub fn account(server: &Server, email: &str) -> (String, String) {
    let session = server
        .api(
            "POST",
            "/v1/accounts",
            None,
            Some(&json!({"email": email, "password": "correct horse battery"})),
        )
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = server
        .api(
            "POST",
            "/v1/account/api-keys",
            Some(&session),
            Some(&json!({"name": "terraform"})),
        )
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (session, key)
}

/// A Terraform working directory whose `aerie/aerie` provider is this
/// crate's binary, signed in with an account API key.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    key: String,
}

impl Workspace {
    pub fn new(server: &Server, key: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = Path::new(PROVIDER).parent().unwrap();
        let cli_config = format!(
            "provider_installation {{\n  dev_overrides {{\n    \"aerie/aerie\" = {:?}\n  }}\n  direct {{}}\n}}\n",
            bin_dir.display().to_string()
        );
        std::fs::write(dir.path().join("cli.tfrc"), cli_config).unwrap();
        Workspace {
            dir,
            endpoint: format!("http://{}", server.http),
            key: key.to_owned(),
        }
    }

    /// Writes main.tf: the provider block (the token from AERIE_TOKEN) and `resources`.
    pub fn configure(&self, resources: &str) {
        let main = format!(
            "terraform {{\n  required_providers {{\n    aerie = {{ source = \"aerie/aerie\" }}\n  }}\n}}\n\n\
             provider \"aerie\" {{\n  endpoint = \"{}\"\n}}\n\n{resources}",
            self.endpoint
        );
        std::fs::write(self.dir.path().join("main.tf"), main).unwrap();
    }

    /// `terraform args…` in this directory, with `env` set besides.
    pub fn terraform_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let signed_in = [
            ("AERIE_TOKEN", self.key.as_str()),
            ("AERIE_ENDPOINT", &self.endpoint),
        ];
        let env: Vec<_> = signed_in.iter().chain(env).copied().collect();
        terraform(
            self.dir.path(),
            &self.dir.path().join("cli.tfrc"),
            args,
            &env,
        )
    }

    pub fn terraform(&self, args: &[&str]) -> Output {
        self.terraform_with(args, &[])
    }

    /// Runs `terraform args…` and asserts success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.terraform(args))
    }

    pub fn apply(&self) -> String {
        self.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])
    }

    /// `terraform apply` that must fail: its stderr.
    pub fn apply_fails(&self) -> String {
        let out = self.terraform(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "apply should fail: {stderr}");
        assert!(
            !stderr.contains("backtrace"),
            "no backtrace in a diagnostic: {stderr}"
        );
        stderr
    }

    /// `terraform plan`: its exit code (0 no change, 2 changes) and stdout.
    pub fn plan(&self) -> (i32, String) {
        let out = self.terraform(&["plan", "-detailed-exitcode", "-input=false", "-no-color"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = out.status.code().unwrap();
        assert!(
            code == 0 || code == 2,
            "plan failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (code, stdout)
    }

    pub fn output(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["output", "-json", "-no-color", name])).unwrap()
    }
}

/// `terraform args…` in `dir` with the CLI config `cli_config`, `env` set
/// besides, and nothing of the caller's Terraform or Aerie settings.
pub fn terraform(dir: &Path, cli_config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19", "terraform"])
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", cli_config)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        // As a developer's shell may have it: no backtrace may reach a diagnostic.
        .env("RUST_BACKTRACE", "1")
        .env_remove("TF_LOG")
        .env_remove("AERIE_TOKEN")
        .env_remove("AERIE_ENDPOINT");
    cmd.envs(env.iter().copied());
    cmd.output().expect("terraform runs (1.11 on PATH)")
}

/// Asserts that `terraform args…` succeeded; its stdout.
pub fn succeeded(args: &[&str], out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "terraform {args:?}: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Copies the directory `from` (files and folders) into `to`, leaving out
/// what a run of Terraform there leaves behind (`.terraform`, state, lock
/// file, the example's aerie-data).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with("terraform.tfstate") || name == "aerie-data" {
            continue;
        }
        let target = to.join(&name);
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
