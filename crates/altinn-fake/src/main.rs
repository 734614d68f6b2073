//! `altinn-fake`: the fake Maskinporten and Altinn on one port, for the demo, the sandbox
//! check and local work. Never installed on a production host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use altinn_fake::{FakeClient, FakeConfig};

/// The scopes a client registered on the command line may request: Correspondence as a
/// service owner, and Events (subscriptions and the pull API) with the same token.
const CLIENT_SCOPES: [&str; 3] = ["altinn:serviceowner", "altinn:correspondence.write", "altinn:events.subscribe"];

#[derive(Parser)]
#[command(version, about = "A strict fake of Maskinporten and the Altinn 3 Correspondence and Events APIs")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: String,
    /// Fake configuration (TOML, the fields of FakeConfig).
    #[arg(long)]
    fake_config: Option<PathBuf>,
    /// Register a Maskinporten client: CLIENT_ID=PATH of its public JWKS; it may request the
    /// scopes altinn:serviceowner, altinn:correspondence.write and altinn:events.subscribe.
    /// Repeatable.
    #[arg(long, value_name = "CLIENT_ID=JWKS_FILE")]
    client: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match serve(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("altinn-fake: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let mut config: FakeConfig = match &cli.fake_config {
        Some(path) => toml::from_str(&std::fs::read_to_string(path)?)?,
        None => FakeConfig::default(),
    };
    for client in &cli.client {
        let (client_id, path) =
            client.split_once('=').ok_or_else(|| anyhow::anyhow!("--client takes CLIENT_ID=JWKS_FILE"))?;
        config.clients.push(FakeClient {
            client_id: client_id.to_string(),
            jwks: serde_json::from_str(&std::fs::read_to_string(path)?)?,
            scopes: CLIENT_SCOPES.map(String::from).to_vec(),
        });
    }
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    println!("fake Maskinporten and Altinn listening on http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    altinn_fake::serve(config, listener, shutdown).await?;
    Ok(())
}

/// SIGTERM and SIGINT stop the server.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
}
