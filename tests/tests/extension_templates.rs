//! `muc-host ext new NAME --lang rust|python|js`: each template, generated into a temporary
//! folder, builds with its own build script, using the toolchains this repository's build
//! scripts installed (cargo offline, componentize-py's venv and componentize-js's node_modules
//! under target/), and passes its conversation script as generated.

use std::path::{Path, PathBuf};
use std::process::Command;

use muc_tests::repo_root;

/// Runs `command`, which must succeed; returns what it printed.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command:?} failed:\n{printed}");
    printed
}

/// A toolchain a build script installs under target/.
fn installed(root: &Path, path: &str, script: &str) -> PathBuf {
    let path = root.join(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/{script}",
        path.display()
    );
    path
}

#[test]
fn each_language_s_template_builds_and_passes_its_script_as_generated() {
    let root = repo_root().canonicalize().unwrap();
    let muc_host = installed(&root, "target/release/muc-host", "build");
    let venv = installed(
        &root,
        "target/python-extensions/venv",
        "build-python-extensions",
    );
    let node_bin = installed(
        &root,
        "target/js-extensions/node_modules/.bin",
        "build-js-extensions",
    );
    let tools = [venv.join("bin"), node_bin];
    let path = std::env::join_paths(tools.iter().cloned().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    std::thread::scope(|threads| {
        for lang in ["rust", "python", "js"] {
            let (work, muc_host, path, venv, root) = (work.path(), &muc_host, &path, &venv, &root);
            threads.spawn(move || {
                let name = format!("hello-{lang}");
                let folder = work.join(lang);
                let wrote = run(Command::new(muc_host)
                    .args(["ext", "new", &name, "--lang", lang, "--dir"])
                    .arg(&folder));
                assert!(wrote.contains(&format!("wrote {name}")), "{wrote}");
                run(Command::new(folder.join("build.sh"))
                    .env("PATH", path)
                    .env("VIRTUAL_ENV", venv)
                    // The Rust template's dependencies as this repository's build fetched them,
                    // compiled once for every run.
                    .env("CARGO_NET_OFFLINE", "true")
                    .env("CARGO_TARGET_DIR", root.join("target/extension-templates")));
                let checked = run(Command::new(muc_host)
                    .arg("--data")
                    .arg(work.join(format!("data-{lang}")))
                    .args(["check", "--extension"])
                    .arg(folder.join(format!("{name}.wasm")))
                    .arg(folder.join(format!("{name}.scs"))));
                assert!(checked.contains("1 passed, 0 failed"), "{lang}: {checked}");
            });
        }
    });
}
