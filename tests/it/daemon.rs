//! The real binary as a separate process: start-up checks, `check`, and SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{TestApp, ORG};
use altinn_fake::{Endpoint, FaultKind, FaultRule};
use sqlx::Row;

const BIN: &str = env!("CARGO_BIN_EXE_altinn-outbox");

fn command(config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config").arg(config).args(args).env_remove("RUST_LOG").env("ALTINN_OUTBOX_LOG__FORMAT", "json");
    c
}

#[tokio::test]
async fn sigterm_during_sends_exits_zero_and_loses_nothing() {
    let app = TestApp::start().await;
    // Slow answers, so that SIGTERM arrives with requests in flight.
    app.fake.faults().add(FaultRule::always(Endpoint::Initialize, FaultKind::Delay(Duration::from_millis(400))));
    app.insert_many(60).await;
    let dir = tempfile::tempdir().unwrap();
    let config = app.config_file(dir.path());
    let child = command(&config, &["run"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();

    let start = std::time::Instant::now();
    while app.initialize_requests() < 20 {
        assert!(start.elapsed() < Duration::from_secs(30), "the worker never started sending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(exit.status.success(), "exit 0 after SIGTERM: {:?}", exit.status);
    let log = String::from_utf8_lossy(&exit.stderr);
    assert!(log.contains("SIGTERM received") && log.contains("worker stopped"), "{log}");

    assert_eq!(app.count_in("sending").await, 0, "nothing is left leased to the stopped worker");
    let sent = app.count_in("awaiting_status").await + app.count_in("delivered").await;
    assert_eq!(sent + app.count_in("pending").await, 60);
    assert_eq!(app.fake.state().correspondences().len() as i64, sent, "every request Altinn answered was written back");
    let leased: i64 = sqlx::query_scalar("SELECT count(*) FROM altinn_outbox.delivery WHERE locked_until IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(leased, 0, "released rows are claimable at once");

    app.fake.faults().clear();
    app.drain().await;
    let fake = app.fake.state().correspondences();
    assert_eq!(fake.len(), 60);
    let keys: std::collections::HashSet<_> = fake.iter().map(|c| c.idempotent_key).collect();
    assert_eq!(keys.len(), 60);
    assert_eq!(app.initialize_requests(), 60, "no row was sent twice");
}

#[tokio::test]
async fn the_daemon_serves_its_metrics_on_the_health_listener() {
    let app = TestApp::start().await;
    app.insert_many(3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = app.config_file(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = command(&config, &["run"])
        .env("ALTINN_OUTBOX_HEALTH__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let sent = r#"altinn_outbox_sends_total{outcome="sent",error_code=""} 3"#;
    let start = std::time::Instant::now();
    let scrape = loop {
        let body = match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(sent) {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never counted three sends: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(exit.status.success());
    assert!(scrape.contains("altinn_outbox_database_up 1"), "{scrape}");
    assert!(scrape.contains(r#"altinn_outbox_token_refreshes_total{outcome="ok"} 1"#), "{scrape}");
    assert_eq!(app.fake.state().correspondences().len(), 3);
}

#[tokio::test]
async fn a_bad_key_stops_the_daemon_before_any_row_is_touched() {
    let app = TestApp::start().await;
    let id = app.insert("untouched", &[ORG]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = app.config.clone();
    config.maskinporten.key_jwk_file = Some(dir.path().join("missing.jwk.json"));
    let path = dir.path().join("worker.toml");
    std::fs::write(&path, crate::common::config_toml(&config)).unwrap();

    let out = command(&path, &["run"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("maskinporten key") && stderr.contains("missing.jwk.json"), "{stderr}");
    let d = app.delivery_of(id).await;
    assert_eq!((d.get::<String, _>("state"), d.get::<i32, _>("attempts")), ("pending".into(), 0));
    assert!(app.fake.state().requests().is_empty());
}

#[tokio::test]
async fn a_config_error_names_the_setting() {
    let app = TestApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = app.config_file(dir.path());
    let out = command(&path, &["run"]).env("ALTINN_OUTBOX_WORKER__CONCURRENCY", "0").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker.concurrency"));
    let out = command(&path, &["run"]).env("ALTINN_OUTBOX_WORKER__NO_SUCH_KEY", "1").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"), "unknown keys are refused");
}

#[tokio::test]
async fn check_requests_a_token_and_says_what_failed() {
    let app = TestApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = app.config_file(dir.path());
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || command(&path, &["check"]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok   database") && stdout.contains("ok   token"), "{stdout}");
    assert_eq!(app.fake.state().grants_accepted(), 1);

    let out = tokio::task::spawn_blocking(move || {
        command(&path, &["check"]).env("ALTINN_OUTBOX_MASKINPORTEN__CLIENT_ID", "unknown-client").output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL token") && stdout.contains("invalid_client"), "{stdout}");
}

#[tokio::test]
async fn a_key_file_others_may_read_fails_check_and_is_warned_about_once_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = app.config_file(dir.path());
    let key = dir.path().join("maskinporten.jwk.json");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || command(&path, &["check"]).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let expected = format!("FAIL key file: maskinporten key file {} has mode 0644", key.display());
    assert!(stdout.contains(&expected) && stdout.contains(&format!("chmod 600 {}", key.display())), "{stdout}");

    // The daemon starts all the same (a refusal would stop every delivery at an upgrade).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = command(&path, &["run"])
        .env("ALTINN_OUTBOX_HEALTH__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the daemon never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(exit.status.success());
    let log = String::from_utf8_lossy(&exit.stderr);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(r#""level":"WARN""#)).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(&key.display().to_string()) && warnings[0].contains("chmod 600"), "{log}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tokio::task::spawn_blocking(move || command(&path, &["check"]).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !stdout.contains("key file"), "{stdout}");
}

#[tokio::test]
async fn migrate_applies_the_schema_to_an_empty_database() {
    let app = TestApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = app.config_file(dir.path());
    // Already migrated by the harness: running it again is a no-op, not an error. The file is
    // named by ALTINN_OUTBOX_CONFIG here, which must not be taken for a setting.
    let out = Command::new(BIN).arg("migrate").env("ALTINN_OUTBOX_CONFIG", &path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'altinn_outbox' ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "attachment",
            "delivery",
            "delivery_key",
            "delivery_reference",
            "delivery_status",
            "event",
            "event_cursor",
            "event_receiver",
            "event_subscription",
            "history",
            "message",
            "message_status",
            "producer_resource",
            "schedule",
            "schedule_run"
        ]
    );
    let uncommented: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns c
         WHERE c.table_schema = 'altinn_outbox'
           AND c.table_name IN ('message', 'delivery', 'attachment', 'history', 'schedule', 'schedule_run',
                                'producer_resource', 'event', 'event_receiver',
                                'event_subscription', 'event_cursor')
           AND col_description(('altinn_outbox.' || c.table_name)::regclass, c.ordinal_position) IS NULL",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(uncommented, 0, "every column carries a COMMENT");
}

/// The shipped binary is the daemon alone: the fake (a token issuer that accepts any
/// registered key) and the benchmark (which creates and drops databases) are binaries of
/// their own crates, never installed on a production host.
#[test]
fn the_shipped_binary_has_no_fake_and_no_bench() {
    for command in ["fake", "bench"] {
        let output = Command::new(BIN).arg(command).output().expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "`{command}` is refused as a usage error: {stderr}");
        assert!(stderr.contains(&format!("unrecognized subcommand '{command}'")), "{stderr}");
    }
    let help = Command::new(BIN).arg("--help").output().expect("the binary runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["run", "migrate", "check", "keygen", "status", "show", "retry", "cancel", "prune", "events"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(command)), "`{command}` in --help:\n{help}");
    }
}

/// `keygen` writes the private JWK (mode 0600, every member Maskinporten's signer needs) and
/// the public key twice, as the JWK the self-service portal's form takes and as a JWKS, both
/// without a private member; it never overwrites a key, private or public.
#[test]
fn keygen_writes_the_private_key_and_the_public_key_to_register() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("key");
    let run = || Command::new(BIN).args(["keygen", "--kid", "outbox-2026-12", "--out-dir"]).arg(&out).output().unwrap();
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let private = read("private.jwk.json");
    for member in ["kty", "use", "kid", "alg", "n", "e", "d", "p", "q", "qi", "dp", "dq"] {
        assert!(private[member].as_str().is_some_and(|v| !v.is_empty()), "private.jwk.json lacks {member}");
    }
    assert_eq!(std::fs::metadata(out.join("private.jwk.json")).unwrap().permissions().mode() & 0o777, 0o600);
    let public = read("public.jwk.json");
    let jwks = read("public.jwks.json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(jwks["keys"][0], public, "the JWKS holds the same public key");
    assert_eq!(public["kid"], "outbox-2026-12");
    assert_eq!((&public["n"], &public["e"]), (&private["n"], &private["e"]), "the public half of the private key");
    for member in ["d", "p", "q", "qi", "dp", "dq"] {
        assert!(public.get(member).is_none(), "public.jwk.json must not carry {member}");
    }
    let second = run();
    assert!(!second.status.success(), "a second keygen into the same directory must not overwrite the key");
    assert_eq!(read("private.jwk.json"), private);
    // Nor the public key registered from it, once the private key has been moved away.
    std::fs::remove_file(out.join("private.jwk.json")).unwrap();
    let third = run();
    assert!(!third.status.success(), "the public key left in the directory is not replaced");
    assert!(String::from_utf8_lossy(&third.stderr).contains("public.jwk.json exists"), "{third:?}");
    assert_eq!((read("public.jwk.json"), read("public.jwks.json")), (public, jwks));
    assert!(!out.join("private.jwk.json").exists(), "nothing was written");
}
