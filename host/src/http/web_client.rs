//! The web client's files: Converse.js's `dist/` (fetched by `scripts/fetch-web-client`, never
//! committed), served under [`ASSETS_PATH`] as they are on disk, confined to their directory.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The release `scripts/fetch-web-client` unpacks (keep the two in step).
pub const CONVERSE_VERSION: &str = "14.0.0";
/// Where the browser finds the client's files; Converse loads its chunks (locales, emojis)
/// relative to its script, and its other assets from its `assets_path` setting, this.
pub const ASSETS_PATH: &str = "/converse";
/// The file every page loads: without it there is no client.
const ENTRY: &str = "converse.min.js";
/// Revalidated by ETag after a day: the files change only when the client is upgraded.
const ASSETS_CACHE: &str = "public, max-age=86400";

/// A directory holding Converse.js's `dist/`.
#[derive(Clone, Debug)]
pub struct WebClient {
    dir: PathBuf,
}

impl WebClient {
    /// `given` (`--web-client DIR`), which must hold the client, or else the one the build
    /// fetched beside this executable (`target/release/muc-host` next to `target/web-client/`),
    /// if it is there; the log says when there is none.
    pub fn locate(given: Option<&Path>) -> Result<Option<WebClient>> {
        if let Some(dir) = given {
            anyhow::ensure!(
                dir.join(ENTRY).is_file(),
                "--web-client {}: no {ENTRY} there (give the dist/ directory of a Converse.js release)",
                dir.display()
            );
            return Ok(Some(WebClient { dir: dir.into() }));
        }
        let fetched = default_dir()?;
        if fetched.join(ENTRY).is_file() {
            tracing::info!(dir = %fetched.display(), "web client (Converse.js) found");
            Ok(Some(WebClient { dir: fetched }))
        } else {
            tracing::warn!(
                looked_in = %fetched.display(),
                "no web client: `/` says so; run scripts/fetch-web-client (scripts/build does), or give --web-client DIR"
            );
            Ok(None)
        }
    }

    pub fn routes(self) -> Router {
        Router::new()
            .route(&format!("{ASSETS_PATH}/{{*path}}"), get(file))
            .with_state(self)
    }
}

/// Where `scripts/fetch-web-client` unpacks the client, relative to this executable.
fn default_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating muc-host")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("locating target/")?;
    Ok(target
        .join("web-client")
        .join(format!("converse-{CONVERSE_VERSION}")))
}

/// `path` under `dir`, if every step of it is a plain name: no `..`, no `.`, no hidden files,
/// no empty steps, no backslashes (axum has decoded `%2e%2e` and `%2f` by now).
fn confined(dir: &Path, path: &str) -> Option<PathBuf> {
    let mut file = dir.to_path_buf();
    for step in path.split('/') {
        let plain = !step.is_empty()
            && !step.starts_with('.')
            && !step.contains(['\\', '\0'])
            && !step.contains(':');
        if !plain {
            return None;
        }
        file.push(step);
    }
    Some(file)
}

/// The content type of a file the client consists of, by its extension.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()).unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "ttf" => "font/ttf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

async fn file(
    State(client): State<WebClient>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such file\n").into_response();
    let Some(file) = confined(&client.dir, &path) else {
        return not_found();
    };
    let Ok(metadata) = tokio::fs::metadata(&file).await else {
        return not_found();
    };
    if !metadata.is_file() {
        return not_found();
    }
    // Size and modification time: what changes when the client is upgraded in place.
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    let etag = format!("\"{:x}-{modified:x}\"", metadata.len());
    let kind = content_type(&file);
    let common = [
        (CACHE_CONTROL, ASSETS_CACHE),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    if headers
        .get(IF_NONE_MATCH)
        .is_some_and(|seen| seen.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, common, [(ETAG, etag)]).into_response();
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => (common, [(ETAG, etag), (CONTENT_TYPE, kind.into())], bytes).into_response(),
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "reading a web client file failed");
            not_found()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_below_the_directory_are_served() {
        let dir = Path::new("/srv/client");
        assert_eq!(
            confined(dir, "chunkjs/locales/de.js"),
            Some(dir.join("chunkjs/locales/de.js"))
        );
        for hostile in [
            "../secret",
            "chunkjs/../../etc/passwd",
            "./converse.min.js",
            ".integrity",
            "a//b",
            "",
            "a\\..\\b",
            "c:/windows",
        ] {
            assert_eq!(confined(dir, hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn the_client_files_get_their_content_types() {
        assert_eq!(
            content_type(Path::new("converse.min.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("converse.min.css")),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("webfonts/muli.ttf")), "font/ttf");
        assert_eq!(
            content_type(Path::new("curve25519_compiled.wasm")),
            "application/wasm"
        );
        assert_eq!(
            content_type(Path::new("README")),
            "application/octet-stream"
        );
    }
}
