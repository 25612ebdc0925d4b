//! Shared helpers for the end-to-end tests: where the built components are, and one engine
//! whose compiled-component cache all tests share.

use std::path::{Path, PathBuf};

use muc_host::runtime::{CompiledPlugin, PluginEngine};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A component built by `.ci/run` (`cargo build --profile component --target wasm32-wasip2`).
pub fn component(name: &str) -> PathBuf {
    let path = repo_root().join(format!("target/wasm32-wasip2/component/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the components first (bash .ci/run does)",
        path.display()
    );
    path
}

pub fn engine() -> PluginEngine {
    PluginEngine::new(Some(repo_root().join("target/test-cache"))).expect("engine")
}

pub fn compile(name: &str) -> CompiledPlugin {
    engine()
        .compile(&component(name))
        .expect("compiling the component")
}

/// Prosody's scripts, beside the repository as CI lays it out.
pub fn prosody_scripts_dir() -> PathBuf {
    repo_root().join("../shared/conformance/prosody-scansion")
}

/// `muc-host serve` as a child process on an ephemeral port, killed when dropped.
pub struct Server {
    child: std::process::Child,
    pub c2s: std::net::SocketAddr,
    /// The HTTP server's address, when `--http` was given.
    pub http: Option<std::net::SocketAddr>,
    /// The HTTPS server's address, when `--https` was given.
    pub https: Option<std::net::SocketAddr>,
    pub data: tempfile::TempDir,
}

impl Server {
    /// Starts the release binary (built by `scripts/build`) with `args` after `serve`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// As [`Server::start`], on a data directory the caller prepared (its compile cache seeded,
    /// say).
    pub fn start_in(data: tempfile::TempDir, args: &[&str]) -> Server {
        use std::io::BufRead;
        let binary = repo_root().join("target/release/muc-host");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/build",
            binary.display()
        );
        let mut child = std::process::Command::new(binary)
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--c2s", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting muc-host serve");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // The listeners are announced first, in this order, before anything else is printed.
        let mut announced = |what: &str| -> std::net::SocketAddr {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(&format!("muc-host: {what} listening on "))
                .unwrap_or_else(|| panic!("expected the {what} address, got {line:?}"))
                .parse()
                .unwrap()
        };
        let c2s = announced("c2s");
        let http = args.contains(&"--http").then(|| announced("http"));
        let https = args.contains(&"--https").then(|| announced("https"));
        // Kept read to the end: the server prints more (the metrics address) and must not
        // meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            child,
            c2s,
            http,
            https,
            data,
        }
    }

    /// A TLS client on `socket` (after STARTTLS, or for HTTPS) trusting only the certificate
    /// the server made in its data directory, for `localhost`.
    pub fn tls_client<S: std::io::Read + std::io::Write>(
        &self,
        socket: S,
    ) -> rustls::StreamOwned<rustls::ClientConnection, S> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        let cert = self.data.path().join("tls/cert.pem");
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        rustls::StreamOwned::new(connection, socket)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
