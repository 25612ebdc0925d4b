//! A bounded property run (CI runs it with every `cargo test`): stanzas built from the MUC's
//! own vocabulary, valid and not, from several clients to a few rooms. Whatever they say, the
//! plugin answers without a fault (no trap, no error, no budget hit), so every bad input gets
//! a stanza error rather than an `internal-server-error`, and the host keeps serving.

use std::time::Duration;

use minidom::Element;
use muc_host::scansion::Harness;
use muc_host::testhost::TestHost;
use muc_tests::compile;
use proptest::prelude::*;

const CLIENTS: [&str; 3] = ["owner", "other", "admin"];

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = &'static str> + Clone {
    prop::sample::select(values)
}

fn room() -> impl Strategy<Value = &'static str> {
    pick(&[
        "room@conference.localhost",
        "other@conference.localhost",
        "conference.localhost",
        "room@conference.localhost/nick",
        "room@conference.localhost/other",
        "room@conference.localhost/",
    ])
}

fn payload() -> impl Strategy<Value = String> {
    let affiliation = pick(&["owner", "admin", "member", "outcast", "none", "bogus", ""]);
    let role = pick(&["moderator", "participant", "visitor", "none", "bogus"]);
    let jid = pick(&[
        "owner@localhost",
        "other@localhost/x",
        "not a jid@",
        "admin@localhost",
        "",
    ]);
    let field = pick(&[
        "muc#roomconfig_persistentroom",
        "muc#roomconfig_membersonly",
        "muc#roomconfig_moderatedroom",
        "muc#roomconfig_passwordprotectedroom",
        "muc#roomconfig_maxusers",
        "muc#roomconfig_historylength",
        "muc#roomconfig_whois",
        "muc#roomconfig_roomowners",
        "FORM_TYPE",
        "unknown",
    ]);
    let value = pick(&[
        "1",
        "0",
        "true",
        "-5",
        "99999999999999999999",
        "anyone",
        "",
        "a@b",
    ]);
    prop_oneof![
        Just(String::new()),
        Just("<x xmlns='http://jabber.org/protocol/muc'/>".to_string()),
        Just("<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='-1' maxchars='x' seconds='9999999999999' since='yesterday'/><password>p</password></x>".to_string()),
        "[a-z ]{0,20}".prop_map(|text| format!("<body>{text}</body>")),
        "[a-z ]{0,20}".prop_map(|text| format!("<subject>{text}</subject>")),
        (affiliation.clone(), jid.clone(), role.clone()).prop_map(|(a, j, r)| format!(
            "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='{a}' jid='{j}' role='{r}' nick='nick'><reason>why</reason></item></query>"
        )),
        role.prop_map(|r| format!("<query xmlns='http://jabber.org/protocol/muc#admin'><item role='{r}' nick='nick'/></query>")),
        Just("<query xmlns='http://jabber.org/protocol/muc#owner'/>".to_string()),
        (field, value).prop_map(|(f, v)| format!(
            "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='{f}'><value>{v}</value></field></x></query>"
        )),
        Just("<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='cancel'/></query>".to_string()),
        Just("<query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='elsewhere@conference.localhost'><reason>r</reason></destroy></query>".to_string()),
        jid.prop_map(|j| format!("<x xmlns='http://jabber.org/protocol/muc#user'><invite to='{j}'><reason>r</reason></invite><decline to='{j}'/></x>")),
        Just("<query xmlns='http://jabber.org/protocol/disco#info'/>".to_string()),
        Just("<query xmlns='http://jabber.org/protocol/disco#items'/>".to_string()),
        Just("<query xmlns='jabber:iq:register'/>".to_string()),
        Just("<ping xmlns='urn:xmpp:ping'/>".to_string()),
        Just("<unknown xmlns='urn:example:nothing'><deep><deeper/></deep></unknown>".to_string()),
        Just("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#role'><value>participant</value></field></x>".to_string()),
    ]
}

fn stanza() -> impl Strategy<Value = (usize, String)> {
    let kind = prop_oneof![
        pick(&["", "unavailable", "error", "probe", "subscribe"]).prop_map(|t| ("presence", t)),
        pick(&["groupchat", "chat", "normal", "error", "", "headline"])
            .prop_map(|t| ("message", t)),
        pick(&["get", "set", "result", "error", ""]).prop_map(|t| ("iq", t)),
    ];
    (
        0..CLIENTS.len(),
        kind,
        room(),
        prop::collection::vec(payload(), 0..3),
    )
        .prop_map(|(client, (name, kind), to, payloads)| {
            let kind = if kind.is_empty() {
                String::new()
            } else {
                format!(" type='{kind}'")
            };
            (
                client,
                format!(
                    "<{name} xmlns='jabber:client' to='{to}' id='f'{kind}>{}</{name}>",
                    payloads.concat()
                ),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_stanza_makes_the_plugin_fault(stanzas in prop::collection::vec(stanza(), 1..24)) {
        let mut host = TestHost::new(compile("muc_plugin")).unwrap();
        for client in CLIENTS {
            host.connect(client, &format!("{client}@localhost/r"), "").unwrap();
        }
        for (client, xml) in &stanzas {
            let stanza: Element = xml.parse().unwrap();
            host.send(CLIENTS[*client], stanza).unwrap();
            for client in CLIENTS {
                while host.next_stanza(client, Duration::ZERO).is_some() {}
            }
            prop_assert_eq!(host.service().muc.stats().faults, 0, "after {}", xml);
        }
    }
}
