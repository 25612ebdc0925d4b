//! `muc-host`: the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use muc_host::check::{self, Expectations};
use muc_host::runtime::{host_contract, PluginEngine};

#[derive(Parser)]
#[command(
    version,
    about = "A Multi-User Chat (XEP-0045) service whose room logic is a WebAssembly component"
)]
struct Cli {
    /// Data directory: the durable store and the cache of compiled components.
    #[arg(long, global = true, default_value = "data")]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play scansion scripts against a plugin in the in-process test host.
    Check {
        /// The plugin component (default: the MUC plugin built by this repository).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Compare each script's result with this file's expectation instead of requiring a pass.
        #[arg(long)]
        expectations: Option<PathBuf>,
        /// Scansion scripts (.scs).
        #[arg(required = true)]
        scripts: Vec<PathBuf>,
    },
    /// Print a plugin's name, versions and hash, after checking it against this host.
    Info {
        #[arg(long)]
        plugin: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("muc-host: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let engine = PluginEngine::new(Some(cli.data.join("cache")))?;
    match cli.command {
        Command::Check {
            plugin,
            expectations,
            scripts,
        } => {
            let plugin = engine.compile(&plugin_path(plugin)?)?;
            let expectations = expectations
                .as_deref()
                .map(Expectations::load)
                .transpose()?;
            let results = check::run_scripts(&plugin, &scripts);
            let report = check::report(&results, expectations.as_ref());
            print!("{}", report.text);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Info { plugin } => {
            let path = plugin_path(plugin)?;
            let compiled = engine.compile(&path)?;
            let storage = std::sync::Arc::new(std::sync::Mutex::new(
                muc_host::storage::Storage::in_memory(),
            ));
            let runtime = muc_host::runtime::PluginRuntime::start(
                compiled,
                storage,
                Default::default(),
                std::sync::Arc::new(muc_host::clock::SystemClock),
            )?;
            let info = runtime.info();
            println!("plugin:   {}", path.display());
            println!("name:     {}", info.name);
            println!("version:  {}", info.version);
            println!("contract: {} (host: {})", info.contract, host_contract());
            println!("sha256:   {}", info.hash);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The given plugin, or the MUC plugin this repository builds, found beside the executable
/// (`target/<profile>/muc-host` next to `target/wasm32-wasip2/component/`).
fn plugin_path(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating muc-host")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("locating target/")?;
    let built = target.join("wasm32-wasip2/component/muc_plugin.wasm");
    anyhow::ensure!(
        built.exists(),
        "no plugin given and none built at {}: run `cargo build --profile component --target wasm32-wasip2 -p muc-plugin`",
        built.display()
    );
    Ok(built)
}
