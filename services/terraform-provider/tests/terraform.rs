//! `aerie_tenant` through real Terraform (1.11, on PATH) with this provider
//! through `dev_overrides` against a real `aerie serve` on loopback (the
//! tests/harness Server): apply, rename in place, drift (renamed or deleted
//! outside), import, a refused name as a diagnostic on `name`, destroy.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use serde_json::json;
use support::{Workspace, account, shared_server};

fn tenant_resource(name: &str) -> String {
    format!(
        "resource \"aerie_tenant\" \"plant\" {{\n  name = {name:?}\n}}\n\n\
         output \"tenant\" {{\n  value = aerie_tenant.plant\n}}\n"
    )
}

#[test]
fn apply_rename_in_place_drift_and_destroy_a_tenant() {
    let server = shared_server();
    let (session, key) = account(&server, "platform@example.com");
    let tf = Workspace::new(&server, &key);

    // Create: the tenant exists with its computed id, plan and limits.
    tf.configure(&tenant_resource("greenhouse"));
    tf.apply();
    let tenant = tf.output("tenant");
    let id = tenant["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/tenants/{id}");
    let live = server.api("GET", &path, Some(&session), None).expect(200);
    assert_eq!(live["name"], "greenhouse");
    assert_eq!(tenant["plan"], "free");
    assert_eq!(tenant["limits"], live["limits"], "{tenant}");
    let (code, plan) = tf.plan();
    assert_eq!(code, 0, "nothing to do after apply: {plan}");

    // Rename: in place, the same id.
    tf.configure(&tenant_resource("glasshouse"));
    let (code, plan) = tf.plan();
    assert_eq!(code, 2);
    assert!(plan.contains("will be updated in-place"), "{plan}");
    assert!(
        plan.contains("0 to add, 1 to change, 0 to destroy"),
        "{plan}"
    );
    tf.apply();
    assert_eq!(tf.output("tenant")["id"], id.as_str());
    let live = server.api("GET", &path, Some(&session), None).expect(200);
    assert_eq!(live["name"], "glasshouse");

    // Renamed outside Terraform: planned back, in place.
    server
        .api(
            "PATCH",
            &path,
            Some(&session),
            Some(&json!({"name": "by hand"})),
        )
        .expect(200);
    let (code, plan) = tf.plan();
    assert_eq!(code, 2);
    assert!(plan.contains(r#""by hand" -> "glasshouse""#), "{plan}");
    assert!(
        plan.contains("0 to add, 1 to change, 0 to destroy"),
        "{plan}"
    );
    tf.apply();
    let live = server.api("GET", &path, Some(&session), None).expect(200);
    assert_eq!(live["name"], "glasshouse");

    // Deleted outside Terraform: removed from the state, created again.
    server
        .api("DELETE", &path, Some(&session), None)
        .expect(204);
    let (code, plan) = tf.plan();
    assert_eq!(code, 2);
    assert!(
        plan.contains("1 to add, 0 to change, 0 to destroy"),
        "{plan}"
    );
    tf.apply();
    let again = tf.output("tenant")["id"].as_str().unwrap().to_owned();
    assert_ne!(again, id);
    server
        .api("GET", &format!("/v1/tenants/{again}"), Some(&session), None)
        .expect(200);

    // Destroy: nothing left in the account.
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    let left = server
        .api("GET", "/v1/tenants", Some(&session), None)
        .expect(200);
    assert_eq!(left, json!([]));
}

#[test]
fn import_by_id_and_a_refused_name_is_a_diagnostic_on_name() {
    let server = shared_server();
    let (session, key) = account(&server, "importer@example.com");
    let tf = Workspace::new(&server, &key);

    // A tenant made outside Terraform, imported by its id: no change planned.
    let made = server
        .api(
            "POST",
            "/v1/tenants",
            Some(&session),
            Some(&json!({"name": "legacy"})),
        )
        .expect(201);
    let id = made["id"].as_str().unwrap();
    tf.configure(&tenant_resource("legacy"));
    tf.ok(&[
        "import",
        "-input=false",
        "-no-color",
        "aerie_tenant.plant",
        id,
    ]);
    let (code, plan) = tf.plan();
    assert_eq!(
        code, 0,
        "the imported tenant matches its configuration: {plan}"
    );

    // An unknown id is refused with a diagnostic, nothing imported.
    let other = Workspace::new(&server, &key);
    other.configure(&tenant_resource("x"));
    let out = other.terraform(&[
        "import",
        "-input=false",
        "-no-color",
        "aerie_tenant.plant",
        "nosuchtnt0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"cannot import tenant "nosuchtnt0": not found"#),
        "{stderr}"
    );

    // A name the API refuses: the error names the attribute, and no tenant is made.
    other.configure(&tenant_resource(&"x".repeat(101)));
    let out = other.terraform(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Error: cannot create the tenant: name must have 1 to 100 characters"),
        "{stderr}"
    );
    assert!(stderr.contains("with aerie_tenant.plant,"), "{stderr}");
    assert!(
        stderr.contains("name = \"xxxx"),
        "the attribute's line is shown: {stderr}"
    );
    assert!(
        !stderr.contains("backtrace"),
        "no backtrace in a diagnostic: {stderr}"
    );
    let tenants = server
        .api("GET", "/v1/tenants", Some(&session), None)
        .expect(200);
    assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");
}
