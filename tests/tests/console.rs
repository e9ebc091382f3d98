//! The web console end to end: `web/e2e/console.test.mjs` drives the built
//! console in Debian's headless Chromium (playwright-core) against this real
//! `aerie serve`, with a real MQTT device beside it. It saves screenshots of
//! each page under `web/test-output/screenshots/`.
//!
//! Needs `make web` (the build and node_modules) and `make test-deps`
//! (Chromium); `make test` runs both first.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aerie_e2e::ServerOptions;

const WEB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web");
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser scenario normally takes well under a minute.
const LIMIT: Duration = Duration::from_secs(240);

#[test]
fn the_console_provisions_a_tenant_talks_mqtt_in_a_real_browser_and_revokes_a_device() {
    let web = Path::new(WEB);
    let dist = web.join("dist");
    assert!(
        dist.join("index.html").is_file(),
        "the console is not built in {}: run `make web`",
        dist.display()
    );
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "the console's node_modules are missing: run `make web`"
    );
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run `make test-deps`"
    );
    // Usage is flushed every second, so the overview's charts have figures.
    let server = ServerOptions::default()
        .anonymous(false)
        .args(&[
            "--console-dir",
            dist.to_str().unwrap(),
            "--usage-flush-interval",
            "1",
        ])
        .start();

    let mut node = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-concurrency=1",
            "e2e/",
        ])
        .current_dir(web)
        .env("CONSOLE_URL", format!("http://{}", server.http))
        .env("MQTT_URL", format!("mqtt://{}", server.mqtt))
        .env(
            "BROKER_ORIGINS",
            format!("ws://{},wss://{}", server.ws, server.wss),
        )
        .env("SCREENSHOT_DIR", web.join("test-output/screenshots"))
        .env("CHROMIUM", CHROMIUM)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (make test-deps)");
    let mut stdout = node.stdout.take().unwrap();
    let mut stderr = node.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("{out}");
    eprintln!("{err}");
    match status {
        None => panic!("the browser tests did not finish within {LIMIT:?}"),
        Some(status) => assert!(status.success(), "the browser tests failed ({status})"),
    }
}
