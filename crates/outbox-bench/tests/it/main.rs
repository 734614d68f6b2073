//! `outbox-bench` runs end to end with tiny numbers: every figure's row is printed,
//! and every loaded row was delivered. No timing is asserted (the figures vary by machine).

// A panic is how a test fails: tests and their helpers unwrap.
#![allow(clippy::unwrap_used)]

mod sql;
#[path = "../../../../tests/it/common/sql_check.rs"]
mod sql_check;

use std::process::Command;

use outbox_bench::anchors::{parse_results, summarise};

const BIN: &str = env!("CARGO_BIN_EXE_outbox-bench");

/// The server the runs create their databases on; `OUTBOX_TEST_DATABASE_URL` overrides.
fn server_url() -> String {
    std::env::var("OUTBOX_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[test]
fn bench_prints_every_figure_and_delivers_every_row() {
    let output = Command::new(BIN)
        .args(["--rows", "40", "--runs", "1", "--little-rows", "64", "--figures", "1,2,3,4,7,8"])
        .args(["--pickup-rate", "40", "--pickup-seconds", "1"])
        .args(["--publish-after-ms", "0", "--first-poll-delay-ms", "100"])
        .args(["--database-url", &server_url()])
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
    assert_eq!(stdout.lines().filter(|l| l.contains("reference, 2026-11-21")).count(), 5, "the anchors:\n{stdout}");
}

#[test]
fn bench_json_has_every_figure() {
    let report = bench_json(&[
        "--rows",
        "10",
        "--little-rows",
        "8",
        "--figures",
        "1,2,3,4,7,8",
        "--pickup-rate",
        "10",
        "--pickup-seconds",
        "1",
        "--publish-after-ms",
        "0",
        "--first-poll-delay-ms",
        "100",
    ]);
    assert_eq!(report["figures"].as_array().unwrap().len(), 7);
    assert_eq!(report["delivered"], serde_json::json!([10]));
    let economy = &report["figures"][5];
    assert_eq!(economy["name"], "status requests per delivered");
    assert!(economy["median"].as_f64().unwrap() >= 1.0, "every delivered row was read at least once");
}

/// Runs the bench with `args` on the test server and returns its JSON report.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN)
        .args(args)
        .args(["--runs", "1", "--json", "--database-url", &server_url()])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn numbers(report: &serde_json::Value) -> Vec<&str> {
    report["figures"].as_array().unwrap().iter().map(|f| f["number"].as_str().unwrap()).collect()
}

#[test]
fn only_the_selected_figures_are_measured_and_figure_1_alone_stops_at_sent() {
    let report = bench_json(&["--figures", "6,1", "--rows", "30", "--scale-rows", "500"]);
    assert_eq!(report["selected"], serde_json::json!([1, 6]));
    assert_eq!(numbers(&report), ["1", "6"], "{report:#}");
    assert_eq!(report["backlog_until"], "sent", "figures 2 and 7 not asked for: no waiting for delivery");
    assert_eq!(report["sent"], serde_json::json!([30]));
    assert_eq!(report["anchors"], serde_json::json!([]), "figure 8 not asked for");
    assert_eq!(report["memory"], serde_json::json!([]), "figure 5 not asked for");
    let scale = &report["figures"][1];
    assert_eq!(scale["unit"], "% of empty");
    assert!(scale["median"].as_f64().unwrap() > 0.0, "the preloaded run sent rows: {scale}");
}

#[test]
fn figure_5_measures_a_worker_process_that_sends_every_row() {
    let report = bench_json(&["--figures", "5", "--rss-rows", "200", "--rss-file-rows", "6", "--rss-file-kib", "256"]);
    assert_eq!(numbers(&report), ["5", "5", "5"], "{report:#}");
    let runs = report["memory"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "the backlog and the files: {report:#}");
    for (run, (load, rows, file_bytes)) in runs.iter().zip([("backlog", 200, 0), ("files", 6, 256 * 1024)]) {
        assert_eq!(run["load"], load);
        assert_eq!(run["sent"], rows, "every row sent before the process was stopped: {run}");
        assert_eq!(run["file_bytes"], file_bytes);
        let pid = run["pid"].as_u64().unwrap();
        assert!(pid > 0 && pid != u64::from(std::process::id()), "a process of its own: {run}");
        assert!(run["peak_rss_kib"].as_u64().unwrap() > 0, "{run}");
        assert!(run["samples"].as_u64().unwrap() > 0, "its /proc status was read while it ran: {run}");
        assert_eq!(run["exit_code"], 0, "it stopped on SIGTERM: {run}");
    }
    let peak = report["figures"][0]["median"].as_f64().unwrap();
    assert_eq!(peak, runs[0]["peak_rss_kib"].as_f64().unwrap() / 1024.0, "the figure is the process's VmHWM in MiB");
}

#[test]
fn anchors_run_their_script_with_our_n_and_c_and_stand_beside_figure_1() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.tsv");
    // A stand-in for run-all.sh: writes one result line with the N and C it was given.
    let script = format!(
        "#!/bin/sh\nprintf 'pgqueuer\\thttp\\t%s\\t%s\\t2.00\\t1000\\tok\\n' \"$N\" \"$C\" > {}\necho 'Results file: {}'\n",
        results.display(),
        results.display()
    );
    let path = dir.path().join("run-all.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let anchors_dir = dir.path().to_str().unwrap();
    let report = bench_json(&[
        "--figures",
        "1,8",
        "--rows",
        "20",
        "--concurrency",
        "4",
        "--anchors",
        "--anchors-dir",
        anchors_dir,
    ]);
    let anchors = report["anchors"].as_array().unwrap();
    assert_eq!(anchors.len(), 1, "{report:#}");
    assert_eq!(anchors[0]["name"], "pgqueuer http, C=4", "C passed on");
    assert_eq!(anchors[0]["source"], "this run: N=20, 1 pass(es)", "N passed on");
    assert_eq!(anchors[0]["rows_per_s"], 1000.0);
}

#[test]
fn anchors_without_their_folder_stop_before_any_run_and_say_what_is_missing() {
    let output = Command::new(BIN)
        .args(["--figures", "8", "--anchors", "--database-url", "postgres://postgres@127.0.0.1:1"])
        .env_remove("ALTINN_OUTBOX_ANCHORS_DIR")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--anchors-dir") && stderr.contains("ALTINN_OUTBOX_ANCHORS_DIR"), "{stderr}");
}

#[test]
fn anchors_results_file_is_parsed_and_passes_are_summarised_by_median() {
    let tsv = "sink(wrk -t1)\thttp-only\t78205\t32\t5.00\t15641\treqs=78205\n\
               pgbench-ceiling(k=32)\tnoop\t20000\t32\t1.14\t17508\tclients=32; cpu busy 97% steal 0%\n\
               graphile-worker(batched)\thttp\t20000\t32\t4.76\t4206\tmode=batched; errors=0\n\
               graphile-worker(batched)\thttp\t20000\t32\t7.21\t2775\tmode=batched; errors=0\n\
               \n\
               graphile-worker(batched)\thttp\t20000\t32\t3.97\t5039\tmode=batched; errors=0\n";
    let lines = parse_results(tsv).expect("valid results");
    assert_eq!(lines.len(), 5, "the empty line is skipped");
    assert_eq!(lines[1].system, "pgbench-ceiling(k=32)");
    assert_eq!(lines[1].workload, "noop");
    assert_eq!((lines[1].n, lines[1].concurrency), (20000, 32));
    assert_eq!((lines[1].seconds, lines[1].rows_per_s), (1.14, 17508.0));
    assert_eq!(lines[1].notes, "clients=32; cpu busy 97% steal 0%");
    let anchors = summarise(&lines);
    let names: Vec<&str> = anchors.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["sink(wrk -t1) http-only, C=32", "pgbench-ceiling(k=32) noop, C=32", "graphile-worker(batched) http, C=32"]
    );
    assert_eq!(anchors[2].rows_per_s, 4206.0, "the median of three passes");
    assert_eq!(anchors[2].source, "this run: N=20000, 3 pass(es)");
    let broken = parse_results("pgqueuer\thttp\t20000\tmany\t1.0\t100\tnote\n").unwrap_err();
    assert!(format!("{broken:#}").contains("line 1"), "{broken:#}");
}
