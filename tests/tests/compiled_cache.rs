//! The compiled-component cache (`DATA/cache`) when its file cannot be written, as on a full
//! disk: simulated with a file-size limit (RLIMIT_FSIZE, set by util-linux's `prlimit`, with
//! SIGXFSZ ignored so that the write fails with EFBIG instead of killing the process), which
//! stdout and stderr escape by being pipes.

use std::process::{Command, Stdio};

#[test]
fn a_cache_that_cannot_be_written_leaves_no_partial_file_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let binary = muc_tests::repo_root().join("target/release/muc-host");
    let plugin = muc_tests::component("muc_plugin");
    // The limit is the component file's size: less than the compiled component (native code
    // is larger than the WebAssembly it comes from), more than the memory image wasmtime writes
    // to a memfd when instantiating (its data segments), which the limit also applies to.
    let limit = std::fs::metadata(&plugin).unwrap().len();
    let output = Command::new("sh")
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=\"$0\" \"$@\""])
        .arg(limit.to_string())
        .arg(&binary)
        .arg("--data")
        .arg(data.path())
        .arg("info")
        .arg("--plugin")
        .arg(&plugin)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The cache is only a speed-up: the component compiled in memory is used all the same.
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("contract:"), "{stdout}");
    assert!(
        stderr.contains("could not cache the compiled component")
            && stderr.contains("File too large"),
        "{stderr}"
    );
    let left: Vec<String> = std::fs::read_dir(data.path().join("cache"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "nothing half-written is left: {left:?}");

    // Without the limit the same command fills the cache with one whole file.
    let output = Command::new(&binary)
        .arg("--data")
        .arg(data.path())
        .arg("info")
        .arg("--plugin")
        .arg(&plugin)
        .output()
        .unwrap();
    assert!(output.status.success());
    let cached: Vec<String> = std::fs::read_dir(data.path().join("cache"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.len() == 1 && cached[0].ends_with(".cwasm"),
        "{cached:?}"
    );
    let compiled = std::fs::metadata(data.path().join("cache").join(&cached[0])).unwrap();
    assert!(
        compiled.len() > limit,
        "the limit was meant to stop this file"
    );
}
