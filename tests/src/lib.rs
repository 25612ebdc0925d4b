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
