//! A plugin call that traps, runs past its budget, hoards memory or returns an error leaves the
//! store and the outbound stanzas untouched, the sender gets a stanza error, and the next stanza
//! is answered by a fresh instance.
//!
//! The `misbehaving` fixture writes `durable/ID` and `volatile/ID`, archives the stanza as ID,
//! sends a reply whose body counts the stanzas its instance has handled, then misbehaves as its
//! id's prefix asks.

use std::time::{Duration, Instant};

use minidom::Element;
use muc_host::runtime::Limits;
use muc_host::scansion::Harness;
use muc_host::storage::{ArchiveFilter, ArchivePosition, ArchiveQuery, Tier};
use muc_host::testhost::TestHost;
use muc_tests::compile;

const BUDGET: Duration = Duration::from_millis(200);

fn host() -> TestHost {
    let limits = Limits {
        call_budget: BUDGET,
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let mut host = TestHost::with_limits(compile("misbehaving_plugin"), limits).unwrap();
    host.connect("user", "user@localhost/test", "").unwrap();
    host
}

fn send(host: &mut TestHost, id: &str) -> Element {
    let stanza: Element = format!(
        "<message xmlns='jabber:client' to='room@conference.localhost' id='{id}'><body>hi</body></message>"
    )
    .parse()
    .unwrap();
    host.send("user", stanza).unwrap();
    let answer = host.next_stanza("user", Duration::ZERO).expect("an answer");
    assert!(
        host.next_stanza("user", Duration::ZERO).is_none(),
        "exactly one answer"
    );
    answer
}

fn stored(host: &mut TestHost, tier: Tier, key: &str) -> bool {
    let storage = host.service().muc.storage_mut();
    storage.get(tier, key).is_some()
}

fn archived(host: &mut TestHost, id: &str) -> bool {
    let storage = host.service().muc.storage();
    let query = ArchiveQuery {
        filter: ArchiveFilter {
            ids: vec![id.to_string()],
            ..ArchiveFilter::default()
        },
        position: ArchivePosition::Oldest,
        limit: 1,
    };
    let page = storage
        .archive_query("room@conference.localhost", &query)
        .unwrap();
    page.count == 1
}

fn error_condition(answer: &Element) -> Option<String> {
    assert_eq!(
        answer.attr("type"),
        Some("error"),
        "{}",
        String::from(answer)
    );
    let error = answer.get_child("error", "jabber:client")?;
    error.children().next().map(|c| c.name().to_string())
}

/// The count in a successful reply's body: how many stanzas the answering instance has seen.
fn instance_count(answer: &Element) -> u32 {
    assert_eq!(answer.attr("type"), None, "{}", String::from(answer));
    answer
        .get_child("body", "jabber:client")
        .unwrap()
        .text()
        .parse()
        .unwrap()
}

fn assert_isolated(host: &mut TestHost, id: &str, condition: &str) {
    assert_eq!(instance_count(&send(host, "ok-before")), 1);
    let faults_before = host.service().muc.stats().faults;
    let answer = send(host, id);
    assert_eq!(error_condition(&answer).as_deref(), Some(condition));
    assert_eq!(answer.attr("id"), Some(id), "the error answers the stanza");
    assert!(
        !stored(host, Tier::Durable, &format!("durable/{id}")),
        "durable write discarded"
    );
    assert!(
        !stored(host, Tier::Volatile, &format!("volatile/{id}")),
        "volatile write discarded"
    );
    assert!(!archived(host, id), "archive write discarded");
    assert_eq!(host.service().muc.stats().faults, faults_before + 1);
    // The next stanza is served, by a fresh instance (its count starts again), and what was
    // committed before the fault is still there.
    assert_eq!(instance_count(&send(host, "ok-after")), 1);
    assert!(stored(host, Tier::Durable, "durable/ok-before"));
    assert!(stored(host, Tier::Volatile, "volatile/ok-before"));
    assert!(stored(host, Tier::Durable, "durable/ok-after"));
    assert!(archived(host, "ok-before") && archived(host, "ok-after"));
}

#[test]
fn a_normal_call_commits_its_writes_and_sends() {
    let mut host = host();
    assert_eq!(instance_count(&send(&mut host, "ok-1")), 1);
    assert_eq!(
        instance_count(&send(&mut host, "ok-2")),
        2,
        "the same instance serves on"
    );
    assert!(stored(&mut host, Tier::Durable, "durable/ok-1"));
    assert!(stored(&mut host, Tier::Volatile, "volatile/ok-2"));
    assert!(archived(&mut host, "ok-1") && archived(&mut host, "ok-2"));
}

#[test]
fn a_trap_is_contained() {
    assert_isolated(&mut host(), "trap-1", "internal-server-error");
}

#[test]
fn an_error_return_is_contained() {
    assert_isolated(&mut host(), "fail-1", "internal-server-error");
}

#[test]
fn memory_past_the_cap_is_a_resource_constraint() {
    assert_isolated(&mut host(), "hoard-1", "resource-constraint");
}

#[test]
fn an_endless_loop_is_interrupted_at_its_budget() {
    let mut host = host();
    let started = Instant::now();
    assert_isolated(&mut host, "loop-1", "resource-constraint");
    let elapsed = started.elapsed();
    // The loop ran for its budget: not less (it was not cut short), and it was stopped (the
    // generous upper bound only guards against hanging on a loaded machine).
    assert!(
        elapsed >= BUDGET,
        "stopped after {elapsed:?}, before the budget"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "not interrupted: {elapsed:?}"
    );
}
