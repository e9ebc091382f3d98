//! The static checks of infra/terraform, for what cannot be applied here
//! (the Kubernetes modules: their providers cannot be downloaded): `terraform
//! fmt -check` on the whole tree, `terraform validate` where it runs without
//! a registry (the aerie-host module: built-ins only), our python-hcl2
//! assertions (infra/terraform/check_kubernetes.py) and checkov on
//! modules/aerie-kubernetes. Each check is also run on a copy broken on
//! purpose, which it must refuse. python-hcl2 and checkov come from `make
//! test-deps` (pinned, under ~/.cache/aerie-tools); missing, this fails.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::copy_dir;

/// As `make test-deps` installs it (CHECKOV_VERSION there).
const CHECKOV_VERSION: &str = "3.3.30";

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/terraform")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// `check_kubernetes.py` on `module`; exit code 2 (python-hcl2 missing) fails here.
fn hcl2_checks(module: &Path) -> Output {
    let out = run(Command::new("nice")
        .args(["-n", "19", "python3"])
        .arg(infra().join("check_kubernetes.py"))
        .arg(module));
    assert_ne!(
        out.status.code(),
        Some(2),
        "python-hcl2 is missing: run `make test-deps`\n{}",
        text(&out)
    );
    out
}

fn checkov(module: &Path) -> Output {
    let checkov = std::env::var_os("AERIE_CHECKOV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(format!(
                ".cache/aerie-tools/checkov-{CHECKOV_VERSION}/bin/checkov"
            ))
        });
    assert!(
        checkov.exists(),
        "checkov {CHECKOV_VERSION} is not at {}: run `make test-deps` (or set AERIE_CHECKOV)",
        checkov.display()
    );
    // --skip-download: nothing is fetched from the vendor's platform.
    run(Command::new("nice")
        .args(["-n", "19"])
        .arg(checkov)
        .args([
            "--framework",
            "terraform",
            "--compact",
            "--quiet",
            "--skip-download",
            "-d",
        ])
        .arg(module))
}

/// A copy of modules/aerie-kubernetes with `file`'s `from` replaced by `to`.
fn broken(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let module = dir.join("aerie-kubernetes");
    copy_dir(&infra().join("modules/aerie-kubernetes"), &module);
    let path = module.join(file);
    let code = std::fs::read_to_string(&path).unwrap();
    assert!(code.contains(from), "{file} has {from}");
    std::fs::write(&path, code.replacen(from, to, 1)).unwrap();
    module
}

#[test]
fn every_module_is_formatted_and_the_host_module_validates() {
    let fmt = run(Command::new("terraform")
        .args(["fmt", "-check", "-recursive", "-no-color"])
        .arg(infra()));
    assert!(fmt.status.success(), "not formatted:\n{}", text(&fmt));

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&infra().join("modules/aerie-host"), dir.path());
    let in_dir = |args: &[&str]| {
        let out = run(Command::new("terraform")
            .args(args)
            .current_dir(dir.path())
            .env("TF_CLI_CONFIG_FILE", "/dev/null"));
        assert!(out.status.success(), "terraform {args:?}:\n{}", text(&out));
        text(&out)
    };
    in_dir(&["init", "-backend=false", "-input=false", "-no-color"]);
    let valid = in_dir(&["validate", "-no-color"]);
    assert!(valid.contains("The configuration is valid."), "{valid}");
}

#[test]
fn the_kubernetes_module_passes_the_hcl2_assertions_and_refuses_a_broken_copy() {
    let out = hcl2_checks(&infra().join("modules/aerie-kubernetes"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("every check passed"));

    let dir = tempfile::tempdir().unwrap();
    let module = broken(
        dir.path(),
        "variables.tf",
        "  type        = string\n  sensitive   = true\n}\n\nvariable \"secret_key\"",
        "  type        = string\n  default     = \"postgres://aerie:hunter2@db/aerie\"\n}\n\nvariable \"secret_key\"",
    );
    let workload = module.join("workload/main.tf");
    let code = std::fs::read_to_string(&workload).unwrap();
    let code = code.replace(
        "kubernetes_horizontal_pod_autoscaler_v2",
        "kubernetes_config_map_v1",
    );
    std::fs::write(
        &workload,
        code.replacen("path = \"/readyz\"", "path = \"/\"", 1),
    )
    .unwrap();
    let out = hcl2_checks(&module);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let found = text(&out);
    for failure in [
        "FAILED: var.database_url: sensitive",
        "FAILED: var.database_url: no default (no secret in the code)",
        "FAILED: a URL with a password in the code: postgres://aerie:hunter2@db/aerie",
        "FAILED: workload: a HorizontalPodAutoscaler (v2) of the Deployment",
        "FAILED: workload: readiness_probe on /readyz",
    ] {
        assert!(found.contains(failure), "{failure}:\n{found}");
    }
}

#[test]
fn checkov_finds_nothing_unexplained_in_the_kubernetes_module_and_refuses_a_broken_copy() {
    let out = checkov(&infra().join("modules/aerie-kubernetes"));
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("Failed checks: 0"), "{report}");

    let dir = tempfile::tempdir().unwrap();
    let module = broken(
        dir.path(),
        "workload/main.tf",
        "allow_privilege_escalation = false",
        "allow_privilege_escalation = true",
    );
    let out = checkov(&module);
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("CKV_K8S_20"), "{report}");
}
