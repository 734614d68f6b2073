//! `outbox-bench`: the figures of docs/performance.md, measured on a scratch database.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Measure altinn-outbox against the fake on a scratch database")]
struct Cli {
    #[command(flatten)]
    args: outbox_bench::Args,
}

#[tokio::main]
async fn main() -> ExitCode {
    // The bench prints its table; the worker's info lines would only interleave with it.
    altinn_outbox::telemetry::init(&altinn_outbox::config::LogConfig { level: "warn".into(), ..Default::default() });
    match outbox_bench::run(Cli::parse().args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outbox-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
