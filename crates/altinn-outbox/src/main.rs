//! The `altinn-outbox` command: parses the command line, loads config, starts telemetry and
//! calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use altinn_outbox::config::Config;
use altinn_outbox::{admin, app, events, health, housekeeping, metrics, outbox, systemd, telemetry, worker};

#[derive(Parser)]
#[command(version, about = "Send Altinn 3 Correspondence messages inserted into PostgreSQL")]
#[command(after_help = admin::EXIT_CODES)]
struct Cli {
    /// Configuration file [default: /etc/altinn-outbox/worker.toml]
    #[arg(long, global = true, env = "ALTINN_OUTBOX_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database migrations (creates the altinn_outbox schema).
    Migrate,
    /// Run the worker until SIGTERM or SIGINT.
    Run,
    /// Check the configuration, the key, the database and a token request, and with
    /// --resource whether Altinn accepts the token for each resource; say what failed.
    Check(CheckArgs),
    /// Generate an RSA key pair: a private JWK for this service, and the public key (JWK and
    /// JWKS) to register on the Maskinporten client.
    Keygen {
        /// The kid to give the key.
        #[arg(long)]
        kid: String,
        /// Directory to write private.jwk.json, public.jwk.json and public.jwks.json into.
        #[arg(long)]
        out_dir: PathBuf,
    },
    #[command(flatten)]
    Admin(admin::Command),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// A resource id to prove the token on, with the sender search (it changes nothing);
    /// repeatable. Each is said to be ok, or missing a scope, without access, or unknown.
    #[arg(long, value_name = "ID")]
    resource: Vec<String>,
    /// Print one JSON document instead of lines (its fields are described in docs/admin.md).
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Admin(command) => return admin_command(cli.config, command).await,
        Command::Keygen { kid, out_dir } => keygen(&kid, &out_dir),
        command => with_config(cli.config, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("altinn-outbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn with_config(path: Option<PathBuf>, command: Command) -> anyhow::Result<()> {
    let config = Config::load(path.as_deref())?;
    match command {
        Command::Check(_) => quiet_log(&config),
        _ => telemetry::init(&config.log),
    }
    match command {
        Command::Migrate => migrate(&config).await,
        Command::Run => run(&config).await,
        Command::Check(args) => check(&config, &args).await,
        Command::Keygen { .. } | Command::Admin(_) => {
            unreachable!("handled before")
        }
    }
}

/// The admin commands choose their own exit codes (`admin::EXIT_CODES`).
async fn admin_command(path: Option<PathBuf>, command: admin::Command) -> ExitCode {
    match Config::load(path.as_deref()) {
        Ok(config) => {
            quiet_log(&config);
            ExitCode::from(admin::run(&config, command).await)
        }
        Err(e) => {
            eprintln!("altinn-outbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// For a command whose output is the answer (check, the admin commands): the daemon's info
/// lines (key loaded, ...) would only be noise on an operator's terminal. Warnings still show,
/// and RUST_LOG overrides.
fn quiet_log(config: &Config) {
    telemetry::init(&altinn_outbox::config::LogConfig { level: "warn".into(), ..config.log.clone() });
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let pool = outbox::connect_lazy(
        config.database.url.expose(),
        2,
        std::time::Duration::from_millis(config.database.connect_timeout_ms),
    )?;
    outbox::migrate(&pool).await?;
    println!("migrations applied");
    Ok(())
}

async fn run(config: &Config) -> anyhow::Result<()> {
    let ctx = Arc::new(app::build_context(config)?);
    if let Err(open) = app::key_file_permissions(config) {
        // A warning, not a refusal: a key installed that way before this check existed would
        // otherwise stop every delivery at the upgrade. `check` refuses it.
        tracing::warn!("{open}");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    if let Some(listen) = &config.health.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("health.listen: cannot listen on {listen}: {e}"))?;
        // Only a listener can show metrics: without one, counting would be wasted.
        let metrics = metrics::install().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
        tracing::info!(%listen, "health listener started");
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = health::serve(listener, ctx, metrics, shutdown).await {
                tracing::error!(error = %e, "health listener stopped");
            }
        });
    }
    if !app::wait_for_database(&ctx.pool, &shutdown).await {
        return Ok(());
    }
    let managing = match config.events()? {
        Some(settings) => Some(start_receiver(&ctx, settings, &shutdown).await?),
        None => None,
    };
    systemd::ready();
    tokio::spawn(systemd::watchdog(ctx.liveness.clone(), shutdown.clone()));
    let schedules = housekeeping::Schedules::from_config(&config.schedules);
    let housekeeping = tokio::spawn(housekeeping::run(ctx.clone(), schedules, shutdown.clone()));
    worker::run(ctx, shutdown).await;
    let _ = housekeeping.await;
    // The events lease is given up before the exit, so that the next instance manages at once.
    if let Some(managing) = managing {
        let _ = managing.await;
    }
    Ok(())
}

/// The Altinn Events receiver on its own listener ([events]), and the management of the
/// subscriptions and the pull; a listener that cannot bind stops the start, naming the setting.
async fn start_receiver(
    ctx: &Arc<worker::Context>,
    settings: altinn_outbox::config::EventsSettings,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listen = settings.listen;
    // A certificate that cannot be read stops the start, naming the setting.
    let tls = match &settings.tls {
        Some((cert, key)) => Some(events::tls::acceptor(cert, key).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("events.listen: cannot listen on {listen}: {e}"))?;
    let receiver = events::receiver::Receiver::new(ctx.pool.clone(), settings.clone())
        .await
        .map_err(|e| anyhow::anyhow!("events: cannot read or make the receiver's secret: {e}"))?;
    tracing::info!(%listen, tls = tls.is_some(), "Altinn Events receiver started");
    let manager = events::manage::Manager::new(ctx.clone(), receiver.endpoint(), settings);
    let managing = tokio::spawn(events::manage::run(manager, shutdown.clone()));
    let receiver = Arc::new(receiver);
    let serving = match tls {
        Some(acceptor) => tokio::spawn(events::receiver::serve(
            events::tls::TlsListener::new(listener, acceptor)?,
            receiver,
            shutdown.clone(),
        )),
        None => tokio::spawn(events::receiver::serve(listener, receiver, shutdown.clone())),
    };
    tokio::spawn(async move {
        if let Ok(Err(e)) = serving.await {
            tracing::error!(error = %e, "Altinn Events receiver stopped");
        }
    });
    Ok(managing)
}

/// SIGTERM (systemd) and SIGINT (a terminal) both stop the worker gracefully.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    systemd::stopping();
    shutdown.cancel();
}

async fn check(config: &Config, args: &CheckArgs) -> anyhow::Result<()> {
    let report = altinn_outbox::check::check(config, &args.resource).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    if !report.ok {
        anyhow::bail!("check failed");
    }
    Ok(())
}

fn keygen(kid: &str, out_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let (private, public) = altinn_outbox::maskinporten::generate_jwk(kid, 2048);
    // Digdir's self-service portal takes one key (a JWK) in its form, its API a JWKS: both.
    let jwks: serde_json::Value = serde_json::from_str(&public)?;
    let jwk = jwks["keys"].get(0).ok_or_else(|| anyhow::anyhow!("the generated JWKS holds no key"))?;
    let files = [
        ("private.jwk.json", private, 0o600),
        ("public.jwk.json", format!("{}\n", serde_json::to_string_pretty(jwk)?), 0o644),
        ("public.jwks.json", public, 0o644),
    ];
    // A key pair is never mixed with another's half: any of the three files already there
    // (an earlier key, perhaps registered) stops the command before anything is written.
    std::fs::create_dir_all(out_dir)?;
    if let Some((name, ..)) = files.iter().find(|(name, ..)| out_dir.join(name).exists()) {
        anyhow::bail!(
            "{} exists: keygen writes a new key pair into an empty directory only",
            out_dir.join(name).display()
        );
    }
    for (name, content, mode) in &files {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(*mode).open(out_dir.join(name))?;
        std::io::Write::write_all(&mut file, content.as_bytes())?;
    }
    println!(
        "wrote {} (the private key: keep it secret), and public.jwk.json and public.jwks.json \
         (the public key, kid {kid}: register it on the Maskinporten client)",
        out_dir.join("private.jwk.json").display()
    );
    Ok(())
}
