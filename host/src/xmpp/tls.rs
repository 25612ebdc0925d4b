//! The client listener's TLS: the configured certificate, or a self-signed one for the served
//! domains, made on first run and kept under `DATA/tls/` so clients can pin it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// The server configuration for STARTTLS.
pub fn server_config(
    configured: Option<&(PathBuf, PathBuf)>,
    data: &Path,
    domains: &[&str],
) -> Result<Arc<ServerConfig>> {
    let (cert, key) = match configured {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => self_signed(&data.join("tls"), domains)?,
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the certificate and key do not fit together")?;
    Ok(Arc::new(config))
}

/// `dir/cert.pem` and `dir/key.pem`, made now if absent.
fn self_signed(dir: &Path, domains: &[&str]) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).context("making a certificate")?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem())?;
    tracing::warn!(
        cert = %cert.display(),
        "no TLS certificate configured: made a self-signed one (clients must accept or pin it)"
    );
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
