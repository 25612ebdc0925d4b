//! Compiling a component once: the compiled artefact is kept under the data directory, keyed by
//! the component's hash and the engine's configuration.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Compiles a component, or loads it from `cache_dir` where an earlier compile of the same bytes
/// (`hash`) by a compatible engine left it.
pub fn compile_cached(
    engine: &Engine,
    cache_dir: Option<&Path>,
    bytes: &[u8],
    hash: &str,
) -> Result<Component> {
    let Some(dir) = cache_dir else {
        return Ok(Component::new(engine, bytes)?);
    };
    let mut compatibility = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut compatibility);
    let file = dir.join(format!("{hash}-{:016x}.cwasm", compatibility.finish()));
    if file.exists() {
        // SAFETY: the file was written by `Component::serialize` of this engine version and
        // configuration (both are in its name) into the host's own cache directory.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => return Ok(component),
            Err(error) => {
                tracing::warn!(?file, %error, "ignoring an unreadable compiled component")
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    // The cache only spares the next start a compile: failing to fill it (a full disk) is
    // said, and the component compiled here is used all the same.
    if let Err(error) = store_compiled(dir, &file, &component) {
        tracing::warn!(?file, "could not cache the compiled component: {error:#}");
    }
    Ok(component)
}

/// Writes `component` to `file` whole or not at all: into a temporary file beside it, synced,
/// then renamed. The temporary file is removed whatever fails. Several hosts (or tests) may
/// compile the same component at once: each writes its own temporary file, and the renames
/// race harmlessly to the same content.
fn store_compiled(dir: &Path, file: &Path, component: &Component) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    let serialized = component.serialize()?;
    let name = file
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("component");
    let mut partial = tempfile::Builder::new()
        .prefix(name)
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("making a file in {}", dir.display()))?;
    let written = partial
        .write_all(&serialized)
        .and_then(|()| partial.as_file().sync_all());
    written.with_context(|| format!("writing {}", partial.path().display()))?;
    partial
        .persist(file)
        .with_context(|| format!("renaming to {}", file.display()))?;
    Ok(())
}
