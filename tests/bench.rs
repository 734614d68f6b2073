//! `altinn-outbox bench` runs end to end with tiny numbers: every figure's row is printed,
//! and every loaded row was delivered. No timing is asserted (the figures vary by machine).

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_altinn-outbox");

#[test]
fn bench_prints_every_figure_and_delivers_every_row() {
    let output = Command::new(BIN)
        .args(["bench", "--rows", "40", "--runs", "1", "--little-rows", "64"])
        .args(["--pickup-rate", "40", "--pickup-seconds", "1"])
        .args(["--publish-after-ms", "0", "--first-poll-delay-ms", "100"])
        .args(["--database-url", &common::server_url()])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let figures: Vec<&str> = stdout.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
    let names = [
        "1 send throughput",
        "2 end-to-end throughput",
        "3 pickup latency p50",
        "3 pickup latency p99",
        "4 Little's law (100 ms, C=64, 64 rows)",
        "7 status requests per delivered",
        "7 worker transactions per row",
    ];
    assert_eq!(figures.len(), names.len(), "one row per figure:\n{stdout}");
    for (line, name) in figures.iter().zip(names) {
        assert!(line.starts_with(name), "{line:?} should be {name:?}");
        let median: f64 = line[name.len()..].split_whitespace().next().unwrap().parse().expect("a number");
        assert!(median.is_finite() && median >= 0.0, "{line}");
    }
    assert!(stdout.contains("delivered per run: 40 of 40"), "every row delivered:\n{stdout}");
    assert!(stderr.contains("pickup: 40 rows"), "every inserted row picked up:\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.contains("issue 6, 2026-11-21")).count(), 5, "the anchors:\n{stdout}");
}

#[test]
fn bench_json_has_every_figure() {
    let output = Command::new(BIN)
        .args(["bench", "--rows", "10", "--runs", "1", "--little-rows", "8", "--json"])
        .args(["--pickup-rate", "10", "--pickup-seconds", "1", "--publish-after-ms", "0"])
        .args(["--first-poll-delay-ms", "100", "--database-url", &common::server_url()])
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["figures"].as_array().unwrap().len(), 7);
    assert_eq!(report["delivered"], serde_json::json!([10]));
    let economy = &report["figures"][5];
    assert_eq!(economy["name"], "status requests per delivered");
    assert!(economy["median"].as_f64().unwrap() >= 1.0, "every delivered row was read at least once");
}
