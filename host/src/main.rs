//! `muc-host`: the command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use jid::BareJid;
use muc_host::auth::Accounts;
use muc_host::check::{self, Expectations};
use muc_host::config::{ServeArgs, ServeConfig};
use muc_host::control::{self, Request};
use muc_host::extensions::template::{self, Language};
use muc_host::extensions::{AskedLimits, ExtensionCompiler, ExtensionLimits};
use muc_host::runtime::{host_contract, PluginEngine};
use muc_host::serve;

#[derive(Parser)]
#[command(
    version,
    about = "A Multi-User Chat (XEP-0045) service whose room logic is a WebAssembly component"
)]
struct Cli {
    /// Data directory: the durable store, accounts, the TLS certificate made on first run and
    /// the cache of compiled components [default: data].
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of `serve`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the service: its own client listener (bundled mode, the default), or a component
    /// of an existing XMPP server (--component).
    Serve(ServeArgs),
    /// Talk to the running service (on the same --data): hot swap, rollback, status.
    Ctl {
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Manage the catalog of room extensions (through the running service when there is one, so
    /// a new version takes over without a restart; directly on --data otherwise).
    Ext {
        #[command(subcommand)]
        command: ExtCommand,
    },
    /// Manage the accounts of the bundled client listener.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Play scansion scripts against a plugin in the in-process test host.
    Check {
        /// The plugin component (default: the MUC plugin built by this repository).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Compare each script's result with this file's expectation instead of requiring a pass.
        #[arg(long)]
        expectations: Option<PathBuf>,
        /// Play the scripts over c2s against this server (HOST:PORT) instead of in-process; it
        /// must accept any password (`serve --insecure-auth`, or Prosody's insecure auth).
        #[arg(long)]
        server: Option<std::net::SocketAddr>,
        /// With --server: the MUC service the scripts use.
        #[arg(long, default_value = "conference.localhost")]
        muc_domain: String,
        /// With --server: how long a `receives` step waits for each stanza, in ms.
        #[arg(long, default_value_t = 2000)]
        wait_ms: u64,
        /// A room extension component, switched on in every room the scripts use (repeatable;
        /// in-process only). Its settings are at their defaults until a script configures them.
        #[arg(long = "extension", conflicts_with = "server")]
        extensions: Vec<PathBuf>,
        /// The limits each --extension runs under, as `ext add` grants them (within the default
        /// ceilings).
        #[command(flatten)]
        limits: AskedLimits,
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

#[derive(Subcommand)]
enum CtlCommand {
    /// Replace the MUC logic with this component, without a restart: nothing is lost, nobody is
    /// disconnected. On any failure the current plugin keeps serving.
    Swap { plugin: PathBuf },
    /// Swap back to the plugin the last swap replaced.
    Rollback,
    /// The current plugin: name, versions, hash, loaded since, stanzas handled, faults.
    Status,
}

#[derive(Subcommand)]
enum ExtCommand {
    /// Install a room extension component, or replace the installed version of the same name
    /// (rooms that use it keep their settings and storage).
    Add {
        path: PathBuf,
        /// A room (bare JID) whose owners may switch it on (repeatable); default: every room.
        #[arg(long = "room")]
        rooms: Vec<String>,
        /// What its instances get, within the ceilings of the running service (`serve
        /// --extension-max-memory-mib`, `--extension-max-call-ms`; with no service running, the
        /// default ceilings).
        #[command(flatten)]
        limits: AskedLimits,
    },
    /// The installed extensions.
    List,
    /// Uninstall an extension: it is switched off in every room, and their owners are told.
    Remove { name: String },
    /// Write a small, working extension to start from: its source, a build script, a
    /// conversation script that passes as generated and the WIT it is built against.
    New {
        /// Its name, in the catalog and as its command word (`!NAME`).
        name: String,
        #[arg(long, value_enum)]
        lang: Language,
        /// The folder to write (created; must be empty) [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (salted SCRAM credentials; the password itself is never stored).
    Add {
        /// The account's bare JID, e.g. alice@localhost.
        jid: String,
        /// The password (asked for without echo when absent).
        #[arg(long)]
        password: Option<String>,
        /// Replace the password of an existing account.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A service logs its connections and faults; the tools only their problems.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("muc-host: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let data = cli.data.clone().unwrap_or_else(|| PathBuf::from("data"));
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig::resolve(args, cli.data)?;
            let engine = PluginEngine::new(Some(config.data.join("cache")))?;
            let plugin_file = std::fs::canonicalize(plugin_path(config.plugin.clone())?)?;
            let plugin = engine.compile(&plugin_file)?;
            serve::serve(config, std::sync::Arc::new(engine), plugin, plugin_file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl { command } => {
            let request = match command {
                CtlCommand::Swap { plugin } => Request::Swap {
                    path: std::fs::canonicalize(&plugin)
                        .with_context(|| format!("{}", plugin.display()))?,
                },
                CtlCommand::Rollback => Request::Rollback,
                CtlCommand::Status => Request::Status,
            };
            let answer = control::request(&data, &request)?;
            Ok(report(&answer))
        }
        Command::Ext { command } => {
            let request = match command {
                // Needs no service and no store.
                ExtCommand::New { name, lang, dir } => return new_extension(&name, lang, dir),
                ExtCommand::Add {
                    path,
                    rooms,
                    limits,
                } => Request::ExtAdd {
                    path: std::fs::canonicalize(&path)
                        .with_context(|| format!("{}", path.display()))?,
                    rooms: (!rooms.is_empty()).then_some(rooms),
                    limits,
                },
                ExtCommand::List => Request::ExtList,
                ExtCommand::Remove { name } => Request::ExtRemove { name },
            };
            let answer = match control::request(&data, &request) {
                Ok(answer) => answer,
                // No service on this data directory: change the store directly.
                Err(_) => serve::change_extensions_offline(&data, request)?,
            };
            Ok(report(&answer))
        }
        Command::User {
            command:
                UserCommand::Add {
                    jid,
                    password,
                    force,
                },
        } => {
            let jid = BareJid::new(&jid).with_context(|| format!("'{jid}' is not a bare JID"))?;
            let password = match password {
                Some(password) => password,
                None => rpassword::prompt_password(format!("Password for {jid}: "))?,
            };
            std::fs::create_dir_all(&data)?;
            let accounts = Accounts::open(&serve::database_file(&data))?;
            if force {
                accounts.set_password(&jid, &password)?;
            } else {
                accounts.add(&jid, &password)?;
            }
            println!("account {jid} ready");
            Ok(ExitCode::SUCCESS)
        }
        command => run_tool(command, &data),
    }
}

/// `ext new`: writes the template into `dir` (default `./NAME`) and says what to do next.
fn new_extension(name: &str, lang: Language, dir: Option<PathBuf>) -> Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    template::generate(name, lang, &dir)?;
    println!(
        "wrote {name} in {dir}: build it with {dir}/build.sh, then check it with \
         muc-host check --extension {dir}/{name}.wasm {dir}/{name}.scs",
        dir = dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the service's answer, and says whether it was a success.
fn report(answer: &control::Answer) -> ExitCode {
    if answer.ok {
        println!("{}", answer.message);
        ExitCode::SUCCESS
    } else {
        eprintln!("muc-host: {}", answer.message);
        ExitCode::FAILURE
    }
}

/// The commands that only need a plugin engine.
fn run_tool(command: Command, data: &Path) -> Result<ExitCode> {
    let engine = PluginEngine::new(Some(data.join("cache")))?;
    match command {
        Command::Check {
            plugin,
            expectations,
            server,
            muc_domain,
            wait_ms,
            extensions,
            limits,
            scripts,
        } => {
            let expectations = expectations
                .as_deref()
                .map(Expectations::load)
                .transpose()?;
            let results = match server {
                Some(server) => check::run_scripts_on_server(
                    server,
                    &muc_domain,
                    std::time::Duration::from_millis(wait_ms),
                    &scripts,
                ),
                None => {
                    let compiler = ExtensionCompiler::new(
                        Some(data.join("cache")),
                        ExtensionLimits::default(),
                    )?;
                    let extensions = extensions
                        .iter()
                        .map(|path| {
                            let bytes = std::fs::read(path)
                                .with_context(|| format!("reading {}", path.display()))?;
                            compiler
                                .compile_asking(&bytes, limits)
                                .with_context(|| format!("extension {}", path.display()))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let plugin = engine.compile(&plugin_path(plugin)?)?;
                    check::run_scripts(&plugin, Some((&compiler, &extensions)), &scripts)
                }
            };
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
            let runtime = muc_host::runtime::PluginRuntime::start(
                compiled,
                muc_host::storage::Storage::in_memory(),
                None,
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
        Command::Serve(_) | Command::User { .. } | Command::Ctl { .. } | Command::Ext { .. } => {
            unreachable!("handled by run")
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
