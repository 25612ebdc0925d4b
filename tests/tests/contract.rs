//! The host runs only components of its contract's major version, and says why it refuses.

use muc_host::runtime::host_contract;
use muc_tests::{component, engine};

fn refusal(path: &std::path::Path) -> String {
    match engine().compile(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(error) => format!("{error:#}"),
    }
}

#[test]
fn a_component_of_another_major_version_is_refused_naming_both() {
    let why = refusal(&component("contract_v2_plugin"));
    assert!(why.contains("2.0.0"), "{why}");
    assert!(why.contains(&host_contract()), "{why}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"not wasm at all").unwrap();
    assert!(refusal(&path).contains("compiling plugin"));
}

#[test]
fn compiled_components_are_cached_by_content_hash() {
    let cache = tempfile::tempdir().unwrap();
    let engine = muc_host::runtime::PluginEngine::new(Some(cache.path().to_path_buf())).unwrap();
    let first = engine.compile(&component("misbehaving_plugin")).unwrap();
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].to_string_lossy().starts_with(&first.hash));
    // A damaged cache entry is recompiled, not trusted.
    std::fs::write(cache.path().join(&cached[0]), b"damaged").unwrap();
    let second = engine.compile(&component("misbehaving_plugin")).unwrap();
    assert_eq!(first.hash, second.hash);
}

#[test]
fn a_component_of_an_older_minor_version_runs_without_what_came_later() {
    use muc_host::scansion::Harness;
    let mut host = muc_host::testhost::TestHost::new(muc_tests::compile("contract_v1_0_plugin"))
        .expect("a 1.0 plugin starts on a 1.1 host");
    assert_eq!(host.service().muc.info().contract, "1.0.0");
    host.connect("user", "user@localhost/x", "").unwrap();
    host.send(
        "user",
        "<message xmlns='jabber:client' to='conference.localhost'><body>hi</body></message>"
            .parse()
            .unwrap(),
    )
    .unwrap();
    let echo = host.next_stanza("user", std::time::Duration::ZERO).unwrap();
    assert_eq!(
        echo.get_child("body", "jabber:client").unwrap().text(),
        "older"
    );
}
