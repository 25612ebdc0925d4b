//! `muc-host ext new`: a small, working room extension to start from, in Rust, Python or
//! JavaScript, with its build script and a conversation script that passes as generated. The
//! templates are the files under `templates/extension/`, built into the binary; each folder gets
//! a copy of the extension world's WIT, so it builds anywhere.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The languages a template exists in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
}

/// One generated file: where it goes in the folder, and its template.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

macro_rules! template {
    ($path:literal, $source:literal) => {
        TemplateFile {
            path: $path,
            text: include_str!(concat!("../../../templates/extension/", $source)),
        }
    };
}

/// What every language's folder holds: the contract, the script, the notes.
const COMMON: &[TemplateFile] = &[
    TemplateFile {
        path: "wit/room-extension.wit",
        text: include_str!("../../../wit/extension/room-extension.wit"),
    },
    template!("{{name}}.scs", "extension.scs"),
    template!("README.md", "README.md"),
];

const RUST: &[TemplateFile] = &[
    template!("Cargo.toml", "rust/Cargo.toml"),
    template!("src/lib.rs", "rust/src/lib.rs"),
    template!("build.sh", "rust/build.sh"),
];

const PYTHON: &[TemplateFile] = &[
    template!("{{module}}.py", "python/module.py"),
    template!("build.sh", "python/build.sh"),
];

const JS: &[TemplateFile] = &[
    template!("{{module}}.js", "js/module.js"),
    template!("build.sh", "js/build.sh"),
];

impl Language {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Language::Rust => RUST,
            Language::Python => PYTHON,
            Language::Js => JS,
        }
    }

    /// The README's words: the language's flag, its source file, its toolchain.
    fn notes(self) -> [(&'static str, &'static str); 3] {
        match self {
            Language::Rust => [
                ("{{lang}}", "rust"),
                ("{{source}}", "src/lib.rs"),
                (
                    "{{toolchain}}",
                    "cargo, with the wasm32-wasip2 target, and wit-bindgen",
                ),
            ],
            Language::Python => [
                ("{{lang}}", "python"),
                ("{{source}}", "{{module}}.py"),
                ("{{toolchain}}", "componentize-py 0.25.1 from PyPI"),
            ],
            Language::Js => [
                ("{{lang}}", "js"),
                ("{{source}}", "{{module}}.js"),
                ("{{toolchain}}", "componentize-js 0.23.0 from npm"),
            ],
        }
    }
}

/// Writes the extension `name` in `language` into `dir` (which must not exist, or be empty) and
/// returns the files written.
pub fn generate(name: &str, language: Language, dir: &Path) -> Result<Vec<PathBuf>> {
    // A manifest's name is `[a-z0-9-]+`; the Python module and the Rust crate made from it must
    // not start with a digit or a dash.
    anyhow::ensure!(
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "'{name}' is not an extension name: a lowercase letter, then lowercase letters, digits \
         and '-'"
    );
    let occupied = dir
        .read_dir()
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    anyhow::ensure!(!occupied, "{} is not empty", dir.display());
    let module = name.replace('-', "_");
    let fill = |text: &str| {
        let mut text = text.to_string();
        for (placeholder, value) in language.notes() {
            text = text.replace(placeholder, value);
        }
        text.replace("{{name}}", name)
            .replace("{{module}}", &module)
    };
    let mut written = Vec::new();
    for file in COMMON.iter().chain(language.files()) {
        let path = dir.join(fill(file.path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("making {}", parent.display()))?;
        }
        std::fs::write(&path, fill(file.text))
            .with_context(|| format!("writing {}", path.display()))?;
        if file.path == "build.sh" {
            make_executable(&path)?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_the_name_and_refuses_a_bad_one_or_a_used_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("hello");
        let written = generate("say-hello", Language::Python, &folder).unwrap();
        let module = std::fs::read_to_string(folder.join("say_hello.py")).unwrap();
        assert!(module.contains("name=\"say-hello\"") && module.contains("command=\"!say-hello\""));
        let readme = std::fs::read_to_string(folder.join("README.md")).unwrap();
        assert!(
            readme.contains("`say_hello.py`") && readme.contains("--lang python"),
            "{readme}"
        );
        let everything: String = written
            .iter()
            .map(|path| path.display().to_string() + &std::fs::read_to_string(path).unwrap())
            .collect();
        assert!(!everything.contains("{{"), "every placeholder filled in");
        assert!(generate("say-hello", Language::Js, &folder)
            .unwrap_err()
            .to_string()
            .contains("is not empty"));
        for bad in ["Hello", "1up", "-x", "a_b", ""] {
            assert!(
                generate(bad, Language::Rust, &dir.path().join("bad")).is_err(),
                "{bad}"
            );
        }
    }
}
