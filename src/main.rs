//! The `aigw` command line.
#![forbid(unsafe_code)]

use std::{io::Read, path::PathBuf, process::ExitCode};

use aigw::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aigw",
    version,
    about = "A gRPC gateway for large-language-model APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short, default_value = "config.toml", env = "AIGW_CONFIG")]
        config: PathBuf,
        /// Listen on this address instead of the config's `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The admin listener's address instead of the config's `admin.listen`.
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
    },
    /// Validate a config file and exit (0 when valid).
    CheckConfig {
        #[arg(default_value = "config.toml")]
        path: PathBuf,
    },
    /// Exit 0 when the gateway configured by PATH answers its gRPC health check with SERVING (for container
    /// health checks).
    Healthcheck {
        #[arg(default_value = "config.toml", env = "AIGW_CONFIG")]
        path: PathBuf,
    },
    /// Run an OpenAI-compatible upstream that answers with the built-in mock's text (for benchmarks and tests).
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// Delay before the first token, e.g. "0ms", "200ms".
        #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
        first_token_latency: std::time::Duration,
        #[arg(long, default_value_t = 1_000_000.0)]
        tokens_per_second: f64,
        /// Answer with exactly this many tokens.
        #[arg(long)]
        tokens: Option<usize>,
    },
    /// Print the SHA-256 of a client key read from standard input, for `sha256 = "..."` in the config.
    HashKey,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => serve(config, listen, admin_listen),
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} keys, {} upstreams, {} models)",
                    path.display(),
                    cfg.keys.len(),
                    cfg.upstreams.len(),
                    cfg.models.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Command::Healthcheck { path } => healthcheck(path),
        Command::MockUpstream {
            listen,
            first_token_latency,
            tokens_per_second,
            tokens,
        } => {
            if !(tokens_per_second.is_finite() && tokens_per_second > 0.0) {
                eprintln!("--tokens-per-second must be above 0");
                return ExitCode::FAILURE;
            }
            let cfg = aigw::mock_server::MockServerConfig {
                first_token_latency,
                tokens_per_second,
                tokens,
            };
            mock_upstream(listen, cfg)
        }
        Command::HashKey => {
            let mut key = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut key) {
                eprintln!("reading the key from stdin: {e}");
                return ExitCode::FAILURE;
            }
            let key = key.trim_end_matches(['\r', '\n']);
            if key.is_empty() {
                eprintln!("no key on stdin (try: printf %s \"$KEY\" | aigw hash-key)");
                return ExitCode::FAILURE;
            }
            println!("{}", aigw::config::hash_key(key));
            ExitCode::SUCCESS
        }
    }
}

fn serve(
    path: PathBuf,
    listen: Option<std::net::SocketAddr>,
    admin_listen: Option<std::net::SocketAddr>,
) -> ExitCode {
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = listen {
        config.listen = addr;
    }
    if let Some(addr) = admin_listen {
        config.admin_listen = addr;
    }
    let telemetry = match aigw::telemetry::init(config.log_format, &config.tracing) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("aigw: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let server = aigw::server::Server::bind(&config).await?;
        server.serve(aigw::server::shutdown_signal()).await
    });
    drop(runtime);
    telemetry.shutdown(); // flush the last spans
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mock_upstream(
    listen: std::net::SocketAddr,
    cfg: aigw::mock_server::MockServerConfig,
) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| format!("{listen}: {e}"))?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                eprintln!("mock upstream listening addr={addr} (POST /v1/chat/completions)");
                aigw::mock_server::serve(listener, cfg, aigw::server::shutdown_signal()).await;
                Ok(())
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigw mock-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(path: PathBuf) -> ExitCode {
    let result = Config::load(&path)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(aigw::healthcheck::check(&config))
        });
    match result {
        Ok(status) => {
            println!("{status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}
