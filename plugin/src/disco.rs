//! Service discovery (XEP-0030, XEP-0045 §6): the service and its public rooms, and each room's
//! identity, features and `muc#roominfo` form.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity, Item};
use xmpp_parsers::ns;
use xmpp_parsers::rsm::{First, SetQuery, SetResult};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::commands;
use crate::errors;
use crate::features;
use crate::form;
use crate::host::{Envelope, Fault, Host, Level};
use crate::occupant::Occupant;
use crate::room::{naming, Room};
use crate::room_index;

/// Advertised on the service and on every room.
const COMMON: &[&str] = &[
    ns::MUC,
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    "http://jabber.org/protocol/muc#self-ping-optimization",
    "urn:xmpp:ping",
];

/// Advertised on the service only: what it answers beside [`COMMON`].
const SERVICE: &[&str] = &[ns::VERSION, commands::NS];

pub fn service_info() -> Element {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("conference", "text", "en", "Chatrooms")],
        features: COMMON
            .iter()
            .chain(SERVICE)
            .map(|f| f.to_string())
            .collect(),
        extensions: Vec::new(),
    }
    .into()
}

/// Rooms listed per page when the request names no `max` (XEP-0059).
pub const DEFAULT_PAGE: usize = 100;
/// The most rooms one page lists, whatever the request asks.
pub const MAX_PAGE: usize = 500;
/// A page stops early rather than grow past this many bytes of items (long room names).
const PAGE_BYTES: usize = 64 * 1024;

/// The service's disco#items: a page of the public, unlocked rooms in JID order, paged with
/// Result Set Management (XEP-0059) by `max` and `after`; a request without `<set/>` gets the
/// first page. Each reply carries `count`, and `first` and `last` to page on from. Paging
/// backwards (`before`) and jumping to an `index` other than 0 are not offered
/// (`feature-not-implemented`): the list is read forwards from where the page starts, so a page
/// costs what it holds.
pub fn service_items(
    host: &mut dyn Host,
    envelope: &Envelope,
    query: &Element,
) -> Result<(), Fault> {
    let refuse = |host: &mut dyn Host, condition, text| {
        errors::reply(
            host,
            envelope,
            "iq",
            ErrorType::Cancel,
            condition,
            Some(text),
        )
    };
    let Ok(query) = DiscoItemsQuery::try_from(query.clone()) else {
        let why = "not a disco#items query with a valid <set/>";
        return refuse(host, DefinedCondition::BadRequest, why);
    };
    let request = query.rsm.unwrap_or(SetQuery {
        max: None,
        after: None,
        before: None,
        index: None,
    });
    if request.before.is_some() || request.index.is_some_and(|index| index > 0) {
        let why = "rooms are paged forwards only, with <after/>";
        return refuse(host, DefinedCondition::FeatureNotImplemented, why);
    }
    let max = request.max.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    let rooms = room_index::public_rooms(host, request.after.as_deref(), max);
    let mut items = Vec::new();
    let mut bytes = 0;
    // The rooms the page covers, those left out included: where the next page starts.
    let mut covered: Vec<&str> = Vec::new();
    for (jid, name) in &rooms {
        match render(jid, name) {
            Ok((_, size)) if bytes + size > PAGE_BYTES && !items.is_empty() => break,
            Ok((item, size)) => {
                bytes += size;
                items.push(item);
            }
            Err(why) => host.log(
                Level::Warn,
                &format!("room {jid} left out of the list: {why}"),
            ),
        }
        covered.push(jid);
    }
    let rsm = SetResult {
        first: covered.first().map(|jid| First {
            index: request.after.is_none().then_some(0),
            item: jid.to_string(),
        }),
        last: covered.last().map(|jid| jid.to_string()),
        count: Some(room_index::public_room_count(host) as usize),
    };
    let page = DiscoItemsResult {
        node: None,
        items,
        rsm: Some(rsm),
    };
    host.send(errors::result(envelope, Some(page.into())))
}

/// A listed room's item and its size, if it is one the wire can carry: the serialised item must
/// parse again as the host will parse it (a name over the XML token limit would not).
fn render(jid: &str, name: &str) -> Result<(Item, usize), String> {
    let item = Item {
        jid: jid.parse().map_err(|e| format!("bad JID: {e}"))?,
        node: None,
        name: Some(name.to_string()),
    };
    let xml = String::from(&Element::from(item.clone()));
    xml.parse::<Element>().map_err(|e| e.to_string())?;
    Ok((item, xml.len()))
}

pub fn room_info(host: &mut dyn Host, room: &Room) -> Result<Element, Fault> {
    let occupants = Occupant::all(host, &room.jid)?.len();
    let mut info_fields = vec![
        Field::new("muc#roominfo_occupants", FieldType::TextSingle)
            .with_value(&occupants.to_string()),
        Field::new("muc#roominfo_subject", FieldType::TextSingle)
            .with_value(room.subject.as_ref().map_or("", |s| s.text.as_str())),
    ];
    info_fields.extend(features::room_info(room));
    info_fields.extend(features::stored_room_info(host, room)?);
    let mut features_list: Vec<String> = COMMON.iter().map(|f| f.to_string()).collect();
    features_list.extend(
        features::disco_features(room)
            .into_iter()
            .map(str::to_string),
    );
    let mut info: Element = DiscoInfoResult {
        node: None,
        identities: vec![Identity::new(
            "conference",
            "text",
            "en",
            naming::display_name(room),
        )],
        features: features_list.into_iter().collect(),
        extensions: Vec::new(),
    }
    .into();
    info.append_child(form::element(DataForm::new(
        DataFormType::Result_,
        "http://jabber.org/protocol/muc#roominfo",
        info_fields,
    )));
    Ok(info)
}

/// A room lists no items (occupants are not disclosed this way), but on the ad-hoc commands
/// node (XEP-0050 §2.2) the commands its features answer; running one checks who may.
pub fn room_items(room: &str, node: Option<&str>) -> Result<Element, Fault> {
    let items = match node {
        Some(commands::NS) => features::commands()
            .map(|(node, name)| {
                Ok(Item {
                    jid: jid::Jid::new(room)?,
                    node: Some(node.to_string()),
                    name: Some(name.to_string()),
                })
            })
            .collect::<Result<_, Fault>>()?,
        _ => Vec::new(),
    };
    Ok(DiscoItemsResult {
        node: node.map(str::to_string),
        items,
        rsm: None,
    }
    .into())
}

#[cfg(test)]
mod advertised_namespaces {
    use super::*;
    use crate::memory_host::MemoryHost;
    use crate::service::{Muc, Settings};

    const SERVICE_JID: &str = "muc.example";
    const ROOM: &str = "room@muc.example";
    const OWNER: &str = "owner@example.org/desk";

    /// IQ namespaces an XMPP entity may answer, each with a request that a service answering
    /// the namespace does not refuse as unknown.
    const IQ_PROBES: &[(&str, &str, &str)] = &[
        (ns::DISCO_INFO, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>"),
        (ns::DISCO_ITEMS, "get", "<query xmlns='http://jabber.org/protocol/disco#items'/>"),
        (ns::PING, "get", "<ping xmlns='urn:xmpp:ping'/>"),
        (ns::VERSION, "get", "<query xmlns='jabber:iq:version'/>"),
        ("jabber:iq:register", "get", "<query xmlns='jabber:iq:register'/>"),
        (
            commands::NS,
            "set",
            "<command xmlns='http://jabber.org/protocol/commands' node='urn:example' action='execute'/>",
        ),
        (crate::owner::NS, "get", "<query xmlns='http://jabber.org/protocol/muc#owner'/>"),
        (
            crate::admin::NS,
            "get",
            "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='owner'/></query>",
        ),
        ("vcard-temp", "get", "<vCard xmlns='vcard-temp'/>"),
        ("jabber:iq:last", "get", "<query xmlns='jabber:iq:last'/>"),
        ("urn:xmpp:time", "get", "<time xmlns='urn:xmpp:time'/>"),
        ("urn:xmpp:mam:2", "set", "<query xmlns='urn:xmpp:mam:2'/>"),
        (
            "urn:xmpp:message-moderate:1",
            "set",
            "<moderate xmlns='urn:xmpp:message-moderate:1' id='x'>\
             <retract xmlns='urn:xmpp:message-retract:1'/></moderate>",
        ),
    ];

    /// Answered but not advertised: XEP-0045's own IQ namespaces, which the
    /// `http://jabber.org/protocol/muc` feature stands for (XEP-0045 §6.4 lists no others).
    const PART_OF_MUC: &[&str] = &[crate::owner::NS, crate::admin::NS];

    /// Advertised features that are not IQ namespaces: what the entity is or does.
    fn is_not_an_iq_namespace(feature: &str) -> bool {
        feature.starts_with("muc_")
            || [
                ns::MUC,
                "http://jabber.org/protocol/muc#self-ping-optimization",
                "http://jabber.org/protocol/muc#stable_id",
                "urn:xmpp:occupant-id:0",
                "urn:xmpp:sid:0",
                // What the `urn:xmpp:mam:2` queries accept (the `ids` field).
                "urn:xmpp:mam:2#extended",
                // Retractions are groupchat messages; tombstones are what the archive keeps.
                "urn:xmpp:message-retract:1",
                "urn:xmpp:message-retract:1#tombstone",
                // Hats are shown in presence, given through ad-hoc commands.
                "urn:xmpp:hats:0",
            ]
            .contains(&feature)
    }

    fn iq(type_: &str, to: &str, payload: &str) -> String {
        format!("<iq xmlns='jabber:client' type='{type_}' id='p' from='{OWNER}' to='{to}'>{payload}</iq>")
    }

    /// Whether the IQ's answer shows the namespace is served (anything but "unknown here").
    fn answered(host: &mut MemoryHost, muc: &Muc, to: &str, type_: &str, payload: &str) -> bool {
        let replies = host.exchange(muc, &iq(type_, to, payload));
        assert_eq!(replies.len(), 1, "one answer to {payload}: {replies:?}");
        let unknown = replies[0]
            .get_child("error", ns::JABBER_CLIENT)
            .is_some_and(|error| {
                error.has_child("service-unavailable", ns::XMPP_STANZAS)
                    || error.has_child("feature-not-implemented", ns::XMPP_STANZAS)
            });
        !unknown
    }

    /// Every IQ namespace `to` advertises is answered, and every one it answers is advertised.
    fn assert_features_agree_with_answers(host: &mut MemoryHost, muc: &Muc, to: &str) {
        let info = host.exchange(muc, &iq("get", to, IQ_PROBES[0].2));
        let advertised: Vec<String> = info[0]
            .get_child("query", ns::DISCO_INFO)
            .expect("a disco#info result")
            .children()
            .filter(|c| c.is("feature", ns::DISCO_INFO))
            .filter_map(|c| c.attr("var").map(str::to_string))
            .collect();
        for feature in &advertised {
            if is_not_an_iq_namespace(feature) {
                continue;
            }
            let Some((_, type_, payload)) = IQ_PROBES.iter().find(|(ns, ..)| ns == feature) else {
                panic!("{to} advertises {feature}: add it to IQ_PROBES or to the non-IQ features");
            };
            assert!(
                answered(host, muc, to, type_, payload),
                "{to} advertises {feature} but does not answer it"
            );
        }
        for (namespace, type_, payload) in IQ_PROBES {
            if answered(host, muc, to, type_, payload) && !PART_OF_MUC.contains(namespace) {
                assert!(
                    advertised.iter().any(|f| f == namespace),
                    "{to} answers {namespace} but does not advertise it: {advertised:?}"
                );
            }
        }
    }

    #[test]
    fn a_name_stored_before_its_maximum_keeps_the_room_its_identity() {
        let mut host = MemoryHost::default();
        let mut room = Room::new_locked(ROOM);
        room.locked = false;
        // Over rxml's 8 KiB token limit: the host could not parse an identity named so.
        let long_name = "n".repeat(10_000);
        room.config
            .insert(naming::NAME.var.into(), long_name.clone().into());
        let info = room_info(&mut host, &room).unwrap();
        let reparsed: Element = String::from(&info)
            .parse()
            .expect("the disco#info result parses back");
        let identity = reparsed.get_child("identity", ns::DISCO_INFO).unwrap();
        assert_eq!(identity.attr("name"), Some(&long_name[..200]));
    }

    #[test]
    fn the_service_and_a_room_advertise_what_they_answer() {
        let muc = Muc::new(Settings {
            service: SERVICE_JID.into(),
            ..Settings::default()
        });
        let mut host = MemoryHost::default();
        host.exchange(
            &muc,
            &format!(
                "<presence xmlns='jabber:client' from='{OWNER}' to='{ROOM}/owner'>\
                 <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
        host.exchange(
            &muc,
            &iq(
                "set",
                ROOM,
                "<query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='submit'/></query>",
            ),
        );
        assert_features_agree_with_answers(&mut host, &muc, SERVICE_JID);
        assert_features_agree_with_answers(&mut host, &muc, ROOM);
    }
}

#[cfg(test)]
mod room_list {
    use std::collections::BTreeSet;

    use super::*;
    use crate::features::{persistent, public};
    use crate::host::{StanzaKind, Tier};
    use crate::keys;
    use crate::memory_host::MemoryHost;
    use crate::service::{Muc, Settings};

    const SERVICE: &str = "muc.example.org";

    /// Stores `n` rooms through the room record's own writes: every third one temporary, every
    /// seventh hidden, every eleventh still locked. Returns the JIDs the list must show.
    fn store_rooms(host: &mut MemoryHost, n: usize) -> BTreeSet<String> {
        let mut listed = BTreeSet::new();
        for i in 0..n {
            let mut room = Room::new_locked(&format!("room{i:05}@{SERVICE}"));
            room.locked = i % 11 == 0;
            room.config
                .insert(persistent::FIELD.var.into(), (i % 3 != 0).into());
            room.config
                .insert(public::FIELD.var.into(), (i % 7 != 0).into());
            room.save(host).unwrap();
            if !room.locked && public::is_public(&room) {
                listed.insert(room.jid);
            }
        }
        listed
    }

    /// The service's answer to a disco#items query holding `set` (RSM children, or none).
    fn items(host: &mut MemoryHost, set: Option<&str>) -> Element {
        let rsm = set.map_or(String::new(), |children| {
            format!("<set xmlns='http://jabber.org/protocol/rsm'>{children}</set>")
        });
        let xml = format!(
            "<iq xmlns='jabber:client' type='get' id='i1'>\
             <query xmlns='http://jabber.org/protocol/disco#items'>{rsm}</query></iq>"
        );
        let envelope = Envelope {
            kind: StanzaKind::Iq,
            type_: Some("get".into()),
            from: "a@example.org/r".into(),
            to: SERVICE.into(),
            id: Some("i1".into()),
        };
        let muc = Muc::new(Settings::default());
        muc.handle_stanza(host, &envelope, &xml).unwrap();
        let mut sent = host.take_sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        sent.remove(0)
    }

    fn page(reply: &Element) -> DiscoItemsResult {
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
        let query = reply.children().next().expect("a query").clone();
        DiscoItemsResult::try_from(query).unwrap()
    }

    fn jids(page: &DiscoItemsResult) -> Vec<String> {
        page.items.iter().map(|item| item.jid.to_string()).collect()
    }

    fn error_condition(reply: &Element) -> String {
        assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
        let error = reply.get_child("error", ns::JABBER_CLIENT).unwrap();
        error.children().next().unwrap().name().to_string()
    }

    #[test]
    fn the_room_list_comes_in_pages_that_walk_every_public_room_once() {
        let mut host = MemoryHost::default();
        let listed = store_rooms(&mut host, 3000);

        let first = page(&items(&mut host, None));
        assert_eq!(first.items.len(), DEFAULT_PAGE, "a request without <set/>");
        let rsm = first.rsm.clone().expect("an RSM set to page on");
        assert_eq!(rsm.count, Some(listed.len()));
        let first_item = rsm.first.expect("first");
        assert_eq!(first_item.index, Some(0));
        assert_eq!(first_item.item, jids(&first)[0]);
        assert_eq!(rsm.last.as_deref(), jids(&first).last().map(String::as_str));

        assert_eq!(
            page(&items(&mut host, Some("<max>10</max>"))).items.len(),
            10
        );
        let biggest = page(&items(&mut host, Some("<max>100000</max>")));
        assert_eq!(biggest.items.len(), MAX_PAGE);

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let children = match &after {
                Some(last) => format!("<max>37</max><after>{last}</after>"),
                None => "<max>37</max>".to_string(),
            };
            let reply = page(&items(&mut host, Some(&children)));
            if reply.items.is_empty() {
                let rsm = reply.rsm.expect("an empty page still counts");
                assert_eq!((rsm.first, rsm.last), (None, None));
                break;
            }
            assert!(reply.items.len() <= 37);
            let rsm = reply.rsm.clone().unwrap();
            assert_eq!(rsm.count, Some(listed.len()));
            let index = rsm.first.unwrap().index;
            assert_eq!(
                index,
                after.is_none().then_some(0),
                "known on the first page only"
            );
            seen.extend(jids(&reply));
            after = rsm.last;
        }
        let walked: Vec<String> = listed.iter().cloned().collect();
        assert_eq!(
            seen, walked,
            "each public, unlocked room once, in JID order"
        );
    }

    #[test]
    fn a_page_reads_what_it_lists_however_many_rooms_are_stored() {
        let reads_for_page = |rooms: usize| {
            let mut host = MemoryHost::default();
            store_rooms(&mut host, rooms);
            let after = format!("<max>10</max><after>room00500@{SERVICE}</after>");
            host.entries_read = 0;
            assert_eq!(page(&items(&mut host, Some(&after))).items.len(), 10);
            host.entries_read
        };
        let reads = reads_for_page(1000);
        assert_eq!(reads, reads_for_page(20_000));
        // At most a page from each tier, and the two counts.
        assert!(reads <= 2 * 10 + 2, "{reads} entries read for a page of 10");
    }

    #[test]
    fn paging_backwards_or_by_index_is_refused_and_max_zero_only_counts() {
        let mut host = MemoryHost::default();
        let listed = store_rooms(&mut host, 50);
        for set in [
            "<before/>",
            "<max>5</max><before>room00020@muc.example.org</before>",
        ] {
            assert_eq!(
                error_condition(&items(&mut host, Some(set))),
                "feature-not-implemented"
            );
        }
        assert_eq!(
            error_condition(&items(&mut host, Some("<index>3</index>"))),
            "feature-not-implemented"
        );
        assert_eq!(
            jids(&page(&items(
                &mut host,
                Some("<index>0</index><max>2</max>")
            ))),
            listed.iter().take(2).cloned().collect::<Vec<_>>()
        );
        let counted = page(&items(&mut host, Some("<max>0</max>")));
        assert!(counted.items.is_empty());
        assert_eq!(counted.rsm.unwrap().count, Some(listed.len()));
        assert_eq!(
            error_condition(&items(&mut host, Some("<max>lots</max>"))),
            "bad-request"
        );
    }

    #[test]
    fn a_room_the_wire_cannot_carry_is_left_out_of_the_list_and_logged() {
        let mut host = MemoryHost::default();
        let listed = store_rooms(&mut host, 20);
        // A record an older or buggy writer left: its list entry names no valid JID.
        host.volatile
            .insert(keys::public_room("bad@@jid"), b"Bad".to_vec());

        let reply = page(&items(&mut host, None));
        assert_eq!(
            jids(&reply),
            listed.iter().cloned().collect::<Vec<_>>(),
            "every other room is listed"
        );
        let warnings: Vec<&String> = host.logged.iter().map(|(_, m)| m).collect();
        assert!(
            warnings.iter().any(|m| m.contains("bad@@jid")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_page_stops_before_growing_past_its_byte_budget() {
        let mut host = MemoryHost::default();
        // Titles at their maximum (200 characters of 4 bytes each): fewer than the page's
        // 500 rooms fit in its bytes.
        for i in 0..400 {
            let mut room = Room::new_locked(&format!("r{i:03}@{SERVICE}"));
            room.locked = false;
            room.config
                .insert(naming::NAME.var.into(), "\u{1F600}".repeat(200).into());
            room.save(&mut host).unwrap();
        }
        let first = page(&items(&mut host, Some("<max>500</max>")));
        assert!(first.items.len() < 400 && first.items.len() * 800 <= PAGE_BYTES);
        let last = first.rsm.unwrap().last.unwrap();
        let rest = page(&items(&mut host, Some(&format!("<after>{last}</after>"))));
        assert_eq!(
            rest.items[0].jid.to_string(),
            format!("r{:03}@{SERVICE}", first.items.len())
        );
    }

    #[test]
    fn the_list_follows_each_room_through_its_changes() {
        let mut host = MemoryHost::default();
        let listed = |host: &mut MemoryHost| {
            let reply = page(&items(host, None));
            let names: Vec<(String, String)> = reply
                .items
                .iter()
                .map(|i| (i.jid.to_string(), i.name.clone().unwrap()))
                .collect();
            (names, reply.rsm.unwrap().count.unwrap())
        };
        let mut room = Room::new_locked(&format!("garden@{SERVICE}"));
        room.save(&mut host).unwrap();
        assert_eq!(listed(&mut host), (vec![], 0), "locked");

        room.locked = false;
        room.save(&mut host).unwrap();
        let jid = room.jid.clone();
        assert_eq!(listed(&mut host), (vec![(jid.clone(), "garden".into())], 1));

        room.config
            .insert(naming::NAME.var.into(), "The Garden".into());
        room.config
            .insert(persistent::FIELD.var.into(), true.into());
        room.save(&mut host).unwrap();
        persistent::move_to_own_tier(&mut host, &room, Tier::Volatile).unwrap();
        assert_eq!(
            listed(&mut host),
            (vec![(jid.clone(), "The Garden".into())], 1),
            "renamed and moved to the durable tier, counted once"
        );
        assert!(host.durable.contains_key(&keys::public_room(&jid)));
        assert!(!host.volatile.contains_key(&keys::public_room(&jid)));

        room.config.insert(public::FIELD.var.into(), false.into());
        room.save(&mut host).unwrap();
        assert_eq!(listed(&mut host), (vec![], 0), "hidden");

        room.config.insert(public::FIELD.var.into(), true.into());
        room.save(&mut host).unwrap();
        room.delete(&mut host).unwrap();
        assert_eq!(listed(&mut host), (vec![], 0), "destroyed");
    }

    #[test]
    fn upgrading_layout_1_data_builds_the_list_from_the_room_records() {
        let mut host = MemoryHost::default();
        host.durable.insert(keys::LAYOUT.into(), b"1".to_vec());
        let record = |jid: &str, locked: bool, public: bool| {
            serde_json::json!({
                "jid": jid, "locked": locked, "subject": null,
                "config": {"muc#roomconfig_persistentroom": true, "muc#roomconfig_publicroom": public}
            })
            .to_string()
            .into_bytes()
        };
        for (name, locked, public) in [("a", false, true), ("b", false, false), ("c", true, true)] {
            let jid = format!("{name}@{SERVICE}");
            host.durable
                .insert(keys::room(&jid), record(&jid, locked, public));
            host.durable.insert(
                keys::affiliation(&jid, "o@example.org"),
                br#"{"affiliation":"owner"}"#.to_vec(),
            );
        }
        let temporary = format!("t@{SERVICE}");
        host.volatile.insert(
            keys::room(&temporary),
            serde_json::json!({"jid": temporary, "config": {}})
                .to_string()
                .into_bytes(),
        );
        assert!(
            page(&items(&mut host, None)).items.is_empty(),
            "layout 1 has no list"
        );

        let muc = Muc::new(Settings::default());
        muc.upgrade(&mut host, "0.1.0").unwrap();
        let reply = page(&items(&mut host, None));
        assert_eq!(jids(&reply), [format!("a@{SERVICE}"), temporary]);
        assert_eq!(reply.rsm.unwrap().count, Some(2));
        assert_eq!(
            host.durable.get(keys::LAYOUT).unwrap(),
            keys::LAYOUT_VERSION.to_string().as_bytes()
        );

        // Run again (another version change), it makes the same list, not a doubled count, and
        // counts a room whose record names its creator against that creator.
        let made = format!("made@{SERVICE}");
        let mut record =
            serde_json::from_slice::<serde_json::Value>(&record(&made, false, true)).unwrap();
        record["creator"] = "c@example.org".into();
        host.durable
            .insert(keys::room(&made), record.to_string().into_bytes());
        muc.upgrade(&mut host, "0.1.0").unwrap();
        assert_eq!(page(&items(&mut host, None)).rsm.unwrap().count, Some(3));
        assert_eq!(room_index::rooms_created(&mut host, "c@example.org", 10), 1);
    }

    #[test]
    fn a_nick_or_resource_ending_in_config_is_no_room_to_the_rebuild() {
        let mut host = MemoryHost::default();
        host.durable.insert(keys::LAYOUT.into(), b"1".to_vec());
        let mut room = Room::new_locked(&format!("real@{SERVICE}"));
        room.locked = false;
        room.config.insert(public::FIELD.var.into(), true.into());
        room.save(&mut host).unwrap();
        let planted = format!(r#"{{"jid":"fake@{SERVICE}","creator":"victim@example.org"}}"#);
        host.volatile.insert(
            keys::session(&room.jid, "u@example.org/x/config"),
            planted.clone().into_bytes(),
        );
        host.volatile.insert(
            keys::occupant(&room.jid, "n/config"),
            br#"{"nick":"n/config","bare_jid":"u@example.org","role":"participant","sessions":[]}"#
                .to_vec(),
        );
        host.volatile.insert(
            keys::room(&format!("other@{SERVICE}")),
            planted.into_bytes(),
        );

        Muc::new(Settings::default())
            .upgrade(&mut host, "0.1.0")
            .unwrap();
        let reply = page(&items(&mut host, None));
        assert_eq!(jids(&reply), [room.jid.clone()]);
        assert_eq!(reply.rsm.unwrap().count, Some(1));
        assert_eq!(
            room_index::rooms_created(&mut host, "victim@example.org", 10),
            0
        );
    }

    #[test]
    fn a_swap_between_versions_that_keep_the_indexes_reads_no_room() {
        let mut host = MemoryHost::default();
        let current = keys::LAYOUT_VERSION.to_string().into_bytes();
        host.durable.insert(keys::LAYOUT.into(), current);
        for i in 0..100 {
            let mut room = Room::new_locked(&format!("r{i}@{SERVICE}"));
            room.locked = false;
            room.config.insert(public::FIELD.var.into(), true.into());
            room.save(&mut host).unwrap();
        }
        let muc = Muc::new(Settings::default());
        for from in ["0.2.0", "0.2.1+swap-test", "1.0.0"] {
            host.entries_read = 0;
            muc.upgrade(&mut host, from).unwrap();
            assert!(host.entries_read <= 1, "from {from}: {}", host.entries_read);
        }
        host.entries_read = 0;
        muc.upgrade(&mut host, "0.1.0").unwrap();
        assert!(
            host.entries_read >= 100,
            "from 0.1.0, the indexes are rebuilt"
        );
        assert_eq!(page(&items(&mut host, None)).rsm.unwrap().count, Some(100));
    }

    #[test]
    fn data_in_a_newer_layout_is_refused_untouched() {
        let mut host = MemoryHost::default();
        let newer = (keys::LAYOUT_VERSION + 1).to_string().into_bytes();
        host.durable.insert(keys::LAYOUT.into(), newer);
        let muc = Muc::new(Settings::default());
        assert!(muc.upgrade(&mut host, "9.0.0").is_err());
        assert_eq!(host.durable.len(), 1);
    }
}
