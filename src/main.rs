//! The `aigw` command line.
#![forbid(unsafe_code)]

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use aigw::config::Config;
use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists instead of glibc's arena locks, which a profile under load showed as about a
/// tenth of the gateway's CPU (malloc, free and their lock waits); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Keys of a running gateway, through its admin API: create, list, show, revoke, rotate.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Change a key's limits on a running gateway, through its admin API.
    Limits {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        action: LimitsAction,
    },
    /// Usage per key and per model of a running gateway (its admin API's /v1/usage).
    Usage {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Chat with a model through a running gateway (an InteractiveStream session; /cancel, /system, /model,
    /// /quit).
    Chat {
        /// The gateway: `http://host:port`, or `https://host:port` with --ca.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        target: String,
        /// Sent as `authorization: Bearer <key>`.
        #[arg(long, env = "AIGW_KEY", hide_env_values = true)]
        key: Option<String>,
        #[arg(long, default_value = "gpt-4.1")]
        model: String,
        /// A system prompt for the session.
        #[arg(long)]
        system: Option<String>,
        /// PEM file of the CA that signed the gateway's certificate (https).
        #[arg(long)]
        ca: Option<PathBuf>,
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
        /// What a stream's pieces are: text, reasoning (three quarters reasoning_content, then text) or tools
        /// (a tool call's arguments, piece by piece).
        #[arg(long, default_value = "text")]
        shape: aigw::tools::mock_server::StreamShape,
        /// Answer every POST with a stream in this API's words: openai (chat completions, the default),
        /// anthropic, gemini or bedrock (unpaced; for benchmarks of each dialect).
        #[arg(long, default_value = "openai")]
        dialect: aigw::tools::mock_server::MockDialect,
        /// Answer this share of calls with an error status, e.g. `503=0.1` (repeatable).
        #[arg(long = "error-rate", value_parser = aigw::tools::chaos::parse_rate::<aigw::tools::chaos::Status>)]
        error_rates: Vec<(aigw::tools::chaos::Status, f64)>,
        /// Sent with injected errors as Retry-After and retry-after-ms, e.g. "1s".
        #[arg(long, value_parser = humantime::parse_duration)]
        retry_after: Option<std::time::Duration>,
        /// Break this share of streams: disconnect, truncate, stall or malformed, e.g. `stall=0.05`
        /// (repeatable).
        #[arg(long = "stream-fault", value_parser = aigw::tools::chaos::parse_rate::<aigw::tools::chaos::StreamFault>)]
        stream_faults: Vec<(aigw::tools::chaos::StreamFault, f64)>,
        /// How long a stalled stream stays silent.
        #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
        stall: std::time::Duration,
        /// Put an emoji in every answer, its UTF-16 halves in two stream events (as JavaScript servers do).
        #[arg(long)]
        split_surrogates: bool,
        /// Seed of the fault draws.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Load a gateway (gRPC) or an OpenAI-style endpoint (REST) and report throughput, latency percentiles,
    /// time to first token and errors by status.
    Bench(BenchArgs),
    /// Print the SHA-256 of a client key read from standard input, for `sha256 = "..."` in the config.
    HashKey,
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The gateway's admin listener.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// The admin key.
    #[arg(long, global = true, env = "AIGW_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

#[derive(clap::Subcommand)]
enum KeysAction {
    /// Make a key; its secret is printed once.
    Create(aigw::tools::admin_cli::NewKey),
    /// Every key, without secrets.
    List,
    Show {
        name: String,
    },
    /// Revoke a key made through the API.
    Revoke {
        name: String,
    },
    /// A new secret; the old one works for the grace period.
    Rotate {
        name: String,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
}

#[derive(clap::Subcommand)]
enum LimitsAction {
    /// Set a key's rates and budget (a limit not given is removed).
    Set {
        name: String,
        #[command(flatten)]
        limits: aigw::tools::admin_cli::Limits,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// gRPC: the gateway, `http://host:port`. REST: the OpenAI base URL, e.g. `http://127.0.0.1:8081/v1`.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// "grpc" (the gateway) or "rest" (an OpenAI-style endpoint).
    #[arg(long, default_value = "grpc")]
    protocol: aigw::tools::bench::Protocol,
    /// "generate", "stream", "interactive" (sessions of --turns turns) or "idle" (sessions held open).
    #[arg(long, default_value = "generate")]
    rpc: aigw::tools::bench::Rpc,
    /// Sent as `authorization: Bearer <key>`.
    #[arg(long, env = "AIGW_BENCH_KEY", hide_env_values = true)]
    key: Option<String>,
    /// REST: a header sent with every call, `name: value` (repeatable), for a gateway that takes its
    /// upstream or its key in headers of its own.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    #[arg(long, default_value = "gpt-4.1")]
    model: String,
    #[arg(long, default_value = "Say hello in one short sentence.")]
    prompt: String,
    /// Pad the prompt to this many bytes.
    #[arg(long)]
    prompt_bytes: Option<usize>,
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Turns per interactive session.
    #[arg(long, default_value_t = 3)]
    turns: u32,
    /// Closed loop: calls kept in flight (the default, 1).
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<usize>,
    /// Open loop: calls started per second, measured from their scheduled start.
    #[arg(long)]
    rate: Option<f64>,
    /// gRPC: HTTP/2 connections to spread the calls over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Calls started in this first stretch are not counted.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: std::time::Duration,
    /// Stop after this many calls (warm-up included), if sooner than --duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Bounds each call.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Open loop: at most this many calls in flight; beyond it the schedule waits and the wait is counted.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// Runtime worker threads for the load generator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Draw the run as SVG charts in this file: calls per second and latency over time, latency by percentile.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print a progress line once a second (the default when standard error is a terminal).
    #[arg(long)]
    progress: bool,
    /// Also write the report as JSON to this file ("-": standard output, instead of the table), with the
    /// second-by-second timeline.
    #[arg(long)]
    json: Option<PathBuf>,
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
            shape,
            dialect,
            error_rates,
            retry_after,
            stream_faults,
            stall,
            split_surrogates,
            seed,
        } => {
            if !(tokens_per_second.is_finite() && tokens_per_second > 0.0) {
                eprintln!("--tokens-per-second must be above 0");
                return ExitCode::FAILURE;
            }
            let cfg = aigw::tools::mock_server::MockServerConfig {
                first_token_latency,
                tokens_per_second,
                tokens,
                shape,
                dialect,
            };
            let chaos = aigw::tools::chaos::ChaosConfig {
                errors: error_rates.into_iter().map(|(s, p)| (s.0, p)).collect(),
                retry_after,
                stream_faults,
                stall,
                split_surrogates,
                seed,
            };
            mock_upstream(listen, cfg, chaos)
        }
        Command::Bench(args) => bench(args),
        Command::Keys { admin, action } => {
            use aigw::tools::admin_cli::Request;
            let req = match action {
                KeysAction::Create(new) => Request::create_key(new),
                KeysAction::List => Request::list_keys(),
                KeysAction::Show { name } => Request::show_key(&name),
                KeysAction::Revoke { name } => Request::revoke_key(&name),
                KeysAction::Rotate { name, grace } => Request::rotate_key(&name, grace),
            };
            admin_call(admin, req)
        }
        Command::Limits {
            admin,
            action: LimitsAction::Set { name, limits },
        } => admin_call(
            admin,
            aigw::tools::admin_cli::Request::set_limits(&name, &limits),
        ),
        Command::Usage { admin } => admin_call(admin, aigw::tools::admin_cli::Request::usage()),
        Command::Chat {
            target,
            key,
            model,
            system,
            ca,
        } => chat(target, key, model, system, ca),
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
    let telemetry = match aigw::observe::telemetry::init(config.log_format, &config.tracing) {
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
        let server = aigw::server::Server::bind(&config).await?.reload_from(path);
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
    cfg: aigw::tools::mock_server::MockServerConfig,
    chaos: aigw::tools::chaos::ChaosConfig,
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
                aigw::tools::mock_server::serve_with_chaos(
                    listener,
                    cfg,
                    chaos,
                    aigw::server::shutdown_signal(),
                )
                .await;
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

fn bench(args: BenchArgs) -> ExitCode {
    let mut prompt = args.prompt;
    if let Some(n) = args.prompt_bytes {
        while prompt.len() < n {
            prompt.push_str(" lorem ipsum");
        }
        prompt.truncate(n);
    }
    let opts = aigw::tools::bench::Options {
        protocol: args.protocol,
        target: args.target,
        key: args.key,
        headers: args.headers,
        work: aigw::tools::bench::Workload {
            rpc: args.rpc,
            model: args.model,
            prompt,
            max_tokens: args.max_tokens,
            turns: args.turns.max(1),
            timeout: args.timeout,
        },
        load: match args.rate {
            Some(rate) => aigw::tools::bench::Load::Open { rate },
            None => aigw::tools::bench::Load::Closed {
                concurrency: args.concurrency.unwrap_or(1),
            },
        },
        connections: args.connections,
        warmup: args.warmup,
        duration: args.duration,
        max_calls: args.requests,
        max_in_flight: args.max_in_flight,
        progress: args.progress || std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let report = match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(aigw::tools::bench::run(&opts)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aigw bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.plot {
        let written = aigw::tools::bench::svg(&report)
            .and_then(|svg| std::fs::write(path, svg).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("aigw bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let json = || serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
    // A closed pipe (`| head`) is not an error worth a panic: the report is printed as far as it is read.
    let print = |text: String| {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    };
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => print(json()),
        Some(p) => {
            print(report.to_string());
            if let Err(e) = std::fs::write(p, json()) {
                eprintln!("aigw bench: writing {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        None => print(report.to_string()),
    }
    ExitCode::SUCCESS
}

/// Sends one admin API request and prints its JSON answer.
fn admin_call(admin: AdminArgs, req: aigw::tools::admin_cli::Request) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(aigw::tools::admin_cli::send(
                &admin.admin,
                admin.admin_key.as_deref(),
                req,
            ))
        });
    match result {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aigw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn chat(
    target: String,
    key: Option<String>,
    model: String,
    system: Option<String>,
    ca: Option<PathBuf>,
) -> ExitCode {
    let ca = match ca.map(std::fs::read).transpose() {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("aigw chat: reading the CA: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = aigw::tools::chat::ChatOptions {
        target,
        key,
        model,
        system,
        ca,
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(aigw::tools::chat::run(
                opts,
                tokio::io::BufReader::new(tokio::io::stdin()),
                tokio::io::stdout(),
            ))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigw chat: {e}");
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
            runtime.block_on(aigw::tools::healthcheck::check(&config))
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
