//! Hats (XEP-0317 0.2): owners and admins give users hats (a URI, a title, an optional hue)
//! through ad-hoc commands on the room (`urn:xmpp:hats:commands:don` and `:doff`); every
//! presence the room shows of a user's occupant carries them, and a change is broadcast as a new
//! presence. Kept durably per bare JID under the room's keys, so they go with the room.

use minidom::rxml::xml_ncname;
use minidom::Element;
use serde::{Deserialize, Serialize};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::commands;
use crate::errors;
use crate::event::{RoomFeature, RoomIq};
use crate::form;
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::occupant::Occupant;
use crate::permissions;
use crate::room::Room;
use crate::xml::retain_children;

pub const NS: &str = "urn:xmpp:hats:0";
pub const COMMANDS_NS: &str = crate::commands::NS;
pub const DON: &str = "urn:xmpp:hats:commands:don";
pub const DOFF: &str = "urn:xmpp:hats:commands:doff";
const FORM_TYPE: &str = "urn:xmpp:hats:commands";
/// Hats one user may wear in one room.
pub const MAX_HATS_PER_USER: usize = 16;
pub const MAX_URI_CHARS: usize = 256;
pub const MAX_TITLE_CHARS: usize = 64;

/// The form's fields, and the names XEP-0317's examples use for the first two.
const JID: (&str, &str) = ("jid", "accountjid");
const URI: (&str, &str) = ("hats#uri", "hat");
const TITLE: &str = "hats#title";
const HUE: &str = "hats#hue";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hat {
    pub uri: String,
    pub title: String,
    /// A hue angle in degrees, [0, 360), for clients to colour the hat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hue: Option<f64>,
}

/// What is kept under `room/ROOM/hats/JID`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Worn {
    hats: Vec<Hat>,
}

/// A submitted command: whose hat, which one (for `don`, with its title and hue).
#[derive(Debug, PartialEq)]
struct Request {
    bare_jid: String,
    hat: Hat,
}

type Refused = (ErrorType, DefinedCondition, String);

pub struct Hats;

impl RoomFeature for Hats {
    fn room_iq_namespaces(&self) -> &'static [&'static str] {
        &[COMMANDS_NS]
    }

    fn room_iq(&self, host: &mut dyn Host, iq: &RoomIq) -> Result<(), Fault> {
        match command(host, iq)? {
            Ok(()) => Ok(()),
            Err((type_, condition, text)) => errors::reply(
                host,
                iq.inbound.envelope,
                "iq",
                type_,
                condition,
                Some(&text),
            ),
        }
    }

    fn commands(&self) -> &'static [(&'static str, &'static str)] {
        &[(DON, "Give a hat"), (DOFF, "Take a hat off")]
    }

    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        vec![NS, COMMANDS_NS]
    }

    /// The room's hats replace any a client put in its own presence.
    fn stamp_presence(
        &self,
        host: &mut dyn Host,
        room: &Room,
        occupant: &Occupant,
        presence: &mut Element,
    ) -> Result<(), Fault> {
        retain_children(presence, |child| !child.is("hats", NS));
        let worn = load(host, &room.jid, &occupant.bare_jid)?;
        if !worn.hats.is_empty() {
            presence.append_child(element(&worn.hats));
        }
        Ok(())
    }
}

/// `<hats/>` as XEP-0317 §3.1 shows it, with each hat's hue when it has one.
pub fn element(hats: &[Hat]) -> Element {
    Element::builder("hats", NS)
        .append_all(hats.iter().map(|hat| {
            let mut builder = Element::builder("hat", NS)
                .attr(xml_ncname!("uri").into(), hat.uri.as_str())
                .attr(xml_ncname!("title").into(), hat.title.as_str());
            if let Some(hue) = hat.hue {
                builder = builder.attr(xml_ncname!("hue").into(), hue.to_string());
            }
            builder.build()
        }))
        .build()
}

fn load(host: &mut dyn Host, room: &str, bare_jid: &str) -> Result<Worn, Fault> {
    match host.get(Tier::Durable, &keys::hats(room, bare_jid)) {
        Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
        None => Ok(Worn::default()),
    }
}

fn refused(type_: ErrorType, condition: DefinedCondition, text: &str) -> Refused {
    (type_, condition, text.to_string())
}

/// One step of `don` or `doff`: the form when none came, the change when one did.
fn command(host: &mut dyn Host, iq: &RoomIq) -> Result<Result<(), Refused>, Fault> {
    let envelope = iq.inbound.envelope;
    let node = iq.query.attr("node").unwrap_or_default();
    if envelope.type_.as_deref() != Some("set") || !iq.query.is("command", COMMANDS_NS) {
        return Ok(Err(refused(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "Ad-hoc commands are executed with an IQ set of <command/>.",
        )));
    }
    if node != DON && node != DOFF {
        return Ok(Err(refused(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "This room's commands are urn:xmpp:hats:commands:don and :doff.",
        )));
    }
    let actor = iq.inbound.from.to_bare().to_string();
    let affiliation = iq.muc.affiliation(host, &iq.room.jid, &actor)?;
    if !permissions::may_manage_hats(&affiliation) {
        return Ok(Err(refused(
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            "Only owners and admins give and take hats.",
        )));
    }
    let session = iq
        .query
        .attr("sessionid")
        .map(str::to_string)
        .unwrap_or_else(|| host.unique_id());
    if iq.query.attr("action") == Some("cancel") {
        host.send(errors::result(
            envelope,
            Some(commands::response(node, &session, "canceled", None)),
        ))?;
        return Ok(Ok(()));
    }
    let Some(submitted) = iq.query.get_child("x", ns::DATA_FORMS) else {
        let form = commands::response(node, &session, "executing", Some(blank_form(node)));
        host.send(errors::result(envelope, Some(form)))?;
        return Ok(Ok(()));
    };
    let request = match parse(submitted, node == DON) {
        Ok(request) => request,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let occupants: Vec<Occupant> = Occupant::all(host, &iq.room.jid)?
        .into_iter()
        .filter(|occupant| occupant.bare_jid == request.bare_jid)
        .collect();
    let wearer = iq.muc.affiliation(host, &iq.room.jid, &request.bare_jid)?;
    if !permissions::may_wear_hats(&wearer, !occupants.is_empty()) {
        return Ok(Err(refused(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "That user is neither affiliated with the room nor in it.",
        )));
    }
    let mut worn = load(host, &iq.room.jid, &request.bare_jid)?;
    let same = worn.hats.iter().position(|hat| hat.uri == request.hat.uri);
    match (node == DON, same) {
        (true, Some(index)) => worn.hats[index] = request.hat,
        (true, None) if worn.hats.len() >= MAX_HATS_PER_USER => {
            return Ok(Err((
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                format!("A user wears at most {MAX_HATS_PER_USER} hats in a room."),
            )))
        }
        (true, None) => worn.hats.push(request.hat),
        (false, Some(index)) => {
            worn.hats.remove(index);
        }
        (false, None) => {
            return Ok(Err(refused(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "That user does not wear that hat.",
            )))
        }
    }
    let key = keys::hats(&iq.room.jid, &request.bare_jid);
    if worn.hats.is_empty() {
        host.delete(Tier::Durable, &key);
    } else {
        host.put(Tier::Durable, &key, serde_json::to_vec(&worn)?)?;
    }
    host.send(errors::result(
        envelope,
        Some(commands::response(node, &session, "completed", None)),
    ))?;
    // Everyone sees the wearer's presence again, now with the hats it has.
    for occupant in occupants {
        let role = occupant.role();
        iq.core
            .change_role(host, iq.room, occupant, wearer.clone(), role, None, None)?;
    }
    Ok(Ok(()))
}

/// The form the first step returns: whose hat, which, and for `don` its title and hue.
fn blank_form(node: &str) -> Element {
    let field = |var: &str, type_, label: &str, required| {
        let mut field = Field::new(var, type_);
        field.label = Some(label.into());
        field.required = required;
        field
    };
    let mut fields = vec![
        field(JID.0, FieldType::JidSingle, "User address", true),
        field(URI.0, FieldType::TextSingle, "Hat URI", true),
    ];
    if node == DON {
        fields.push(field(TITLE, FieldType::TextSingle, "Hat title", true));
        fields.push(field(
            HUE,
            FieldType::TextSingle,
            "Hue (0-360, optional)",
            false,
        ));
    }
    let mut form = DataForm::new(DataFormType::Form, FORM_TYPE, fields);
    form.title = Some(
        if node == DON {
            "Give a hat"
        } else {
            "Take a hat off"
        }
        .into(),
    );
    form::element(form)
}

/// The submitted form, read field by field (clients often omit its type).
fn parse(submitted: &Element, don: bool) -> Result<Request, Refused> {
    let bad = |text: &str| refused(ErrorType::Modify, DefinedCondition::BadRequest, text);
    let value = |vars: &[&str]| -> Option<String> {
        submitted
            .children()
            .filter(|f| f.is("field", ns::DATA_FORMS))
            .find(|f| f.attr("var").is_some_and(|var| vars.contains(&var)))
            .and_then(|f| f.get_child("value", ns::DATA_FORMS))
            .map(|v| v.text().trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let jid = value(&[JID.0, JID.1]).ok_or_else(|| bad("The form names no user (jid)."))?;
    let bare_jid = jid::BareJid::new(&jid)
        .map_err(|_| bad("The user's address (jid) is not a bare JID."))?
        .to_string();
    let uri = value(&[URI.0, URI.1]).ok_or_else(|| bad("The form names no hat (hats#uri)."))?;
    let title = value(&[TITLE]).unwrap_or_default();
    if don && title.is_empty() {
        return Err(bad("A hat needs a title (hats#title)."));
    }
    if uri.chars().count() > MAX_URI_CHARS || title.chars().count() > MAX_TITLE_CHARS {
        return Err((
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            format!(
                "A hat's URI has at most {MAX_URI_CHARS} characters, its title {MAX_TITLE_CHARS}."
            ),
        ));
    }
    let hue = match value(&[HUE]) {
        None => None,
        Some(text) => match text.parse::<f64>() {
            Ok(hue) if (0.0..360.0).contains(&hue) => Some(hue),
            _ => {
                return Err(bad(
                    "A hat's hue is a number of degrees, from 0 to under 360.",
                ))
            }
        },
    };
    Ok(Request {
        bare_jid,
        hat: Hat { uri, title, hue },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;
    use crate::service::{Muc, Settings};

    const ROOM: &str = "class@muc.example";
    const OWNER: &str = "professor@example.edu/office";
    const TERRY: &str = "terry@example.edu/tablet";

    fn muc() -> Muc {
        Muc::new(Settings {
            service: "muc.example".into(),
            ..Settings::default()
        })
    }

    fn join(host: &mut MemoryHost, muc: &Muc, from: &str, nick: &str) -> Vec<Element> {
        host.exchange(
            muc,
            &format!("<presence xmlns='jabber:client' from='{from}' to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
        )
    }

    fn room(host: &mut MemoryHost, muc: &Muc) {
        join(host, muc, OWNER, "prof");
        host.exchange(
            muc,
            &format!("<iq xmlns='jabber:client' type='set' id='c' from='{OWNER}' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"),
        );
    }

    fn run(
        host: &mut MemoryHost,
        muc: &Muc,
        from: &str,
        node: &str,
        fields: &[(&str, &str)],
    ) -> Vec<Element> {
        let fields: String = fields
            .iter()
            .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
            .collect();
        host.exchange(
            muc,
            &format!("<iq xmlns='jabber:client' type='set' id='h' from='{from}' to='{ROOM}'><command xmlns='{COMMANDS_NS}' node='{node}' action='complete'><x xmlns='jabber:x:data' type='submit'>{fields}</x></command></iq>"),
        )
    }

    fn condition(reply: &Element) -> Option<String> {
        let error = reply.get_child("error", ns::JABBER_CLIENT)?;
        error.children().next().map(|c| c.name().to_string())
    }

    fn hats_in(presence: &Element) -> Vec<(String, String, Option<String>)> {
        presence
            .get_child("hats", NS)
            .map(|hats| {
                hats.children()
                    .map(|h| {
                        (
                            h.attr("uri").unwrap().to_string(),
                            h.attr("title").unwrap().to_string(),
                            h.attr("hue").map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_first_step_returns_the_form() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        let sent = host.exchange(
            &muc,
            &format!("<iq xmlns='jabber:client' type='set' id='h' from='{OWNER}' to='{ROOM}'><command xmlns='{COMMANDS_NS}' node='{DON}' action='execute'/></iq>"),
        );
        let command = sent[0].get_child("command", COMMANDS_NS).unwrap();
        assert_eq!(command.attr("status"), Some("executing"));
        let form =
            DataForm::try_from(command.get_child("x", ns::DATA_FORMS).unwrap().clone()).unwrap();
        let vars: Vec<_> = form
            .fields
            .iter()
            .filter_map(|f| f.var.clone())
            .filter(|var| var != "FORM_TYPE")
            .collect();
        assert_eq!(vars, [JID.0, URI.0, TITLE, HUE]);
    }

    #[test]
    fn a_hat_given_is_shown_to_everyone_then_taken_off() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        join(&mut host, &muc, TERRY, "terry");
        let sent = run(
            &mut host,
            &muc,
            OWNER,
            DON,
            &[
                ("jid", "terry@example.edu"),
                ("hats#uri", "urn:example:ta"),
                ("hats#title", "Assistant"),
                ("hats#hue", "200"),
            ],
        );
        assert_eq!(
            sent[0]
                .get_child("command", COMMANDS_NS)
                .unwrap()
                .attr("status"),
            Some("completed")
        );
        let presences: Vec<&Element> = sent.iter().filter(|s| s.name() == "presence").collect();
        assert_eq!(
            presences.len(),
            2,
            "terry and the professor see it: {sent:?}"
        );
        for presence in &presences {
            assert_eq!(
                hats_in(presence),
                [(
                    "urn:example:ta".into(),
                    "Assistant".into(),
                    Some("200".into())
                )]
            );
        }
        // A later joiner sees it in the join state.
        let joined = join(&mut host, &muc, "steve@example.edu/x", "steve");
        let terry = joined
            .iter()
            .find(|p| p.attr("from") == Some("class@muc.example/terry"))
            .unwrap();
        assert_eq!(hats_in(terry).len(), 1);

        let sent = run(
            &mut host,
            &muc,
            OWNER,
            DOFF,
            &[("jid", "terry@example.edu"), ("hats#uri", "urn:example:ta")],
        );
        assert_eq!(sent.iter().filter(|s| s.name() == "presence").count(), 3);
        assert!(sent.iter().all(|s| hats_in(s).is_empty()));
        assert!(host
            .get(Tier::Durable, &keys::hats(ROOM, "terry@example.edu"))
            .is_none());
    }

    #[test]
    fn a_client_cannot_put_on_a_hat_itself() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        let sent = host.exchange(
            &muc,
            &format!("<presence xmlns='jabber:client' from='{TERRY}' to='{ROOM}/terry'><x xmlns='http://jabber.org/protocol/muc'/><hats xmlns='{NS}'><hat uri='urn:example:boss' title='Boss'/></hats></presence>"),
        );
        assert!(sent.iter().all(|s| hats_in(s).is_empty()), "{sent:?}");
    }

    #[test]
    fn refusals_store_nothing() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        join(&mut host, &muc, TERRY, "terry");
        let long_title = "t".repeat(MAX_TITLE_CHARS + 1);
        // Who, which command, the form's fields, the error expected.
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                TERRY,
                DON,
                vec![
                    ("jid", "terry@example.edu"),
                    ("hats#uri", "u"),
                    ("hats#title", "T"),
                ],
                "forbidden",
            ),
            (OWNER, "urn:example:other", vec![], "item-not-found"),
            (
                OWNER,
                DON,
                vec![
                    ("jid", "stranger@example.org"),
                    ("hats#uri", "u"),
                    ("hats#title", "T"),
                ],
                "item-not-found",
            ),
            (
                OWNER,
                DON,
                vec![("hats#uri", "u"), ("hats#title", "T")],
                "bad-request",
            ),
            (
                OWNER,
                DON,
                vec![("jid", "terry@example.edu"), ("hats#title", "T")],
                "bad-request",
            ),
            (
                OWNER,
                DON,
                vec![("jid", "terry@example.edu"), ("hats#uri", "u")],
                "bad-request",
            ),
            (
                OWNER,
                DON,
                vec![
                    ("jid", "terry@example.edu"),
                    ("hats#uri", "u"),
                    ("hats#title", "T"),
                    ("hats#hue", "360"),
                ],
                "bad-request",
            ),
            (
                OWNER,
                DON,
                vec![
                    ("jid", "terry@example.edu"),
                    ("hats#uri", "u"),
                    ("hats#title", &long_title),
                ],
                "not-acceptable",
            ),
            (
                OWNER,
                DOFF,
                vec![("jid", "terry@example.edu"), ("hats#uri", "u")],
                "item-not-found",
            ),
        ];
        for (from, node, fields, expected) in cases {
            let sent = run(&mut host, &muc, from, node, &fields);
            assert_eq!(sent.len(), 1, "{fields:?}: {sent:?}");
            assert_eq!(
                condition(&sent[0]).as_deref(),
                Some(expected),
                "{node} {fields:?}"
            );
        }
        assert!(host
            .get(Tier::Durable, &keys::hats(ROOM, "terry@example.edu"))
            .is_none());
    }

    #[test]
    fn a_user_wears_a_bounded_number_of_hats_and_a_hat_given_again_is_updated() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        for n in 0..MAX_HATS_PER_USER {
            let uri = format!("urn:example:{n}");
            let sent = run(
                &mut host,
                &muc,
                OWNER,
                DON,
                &[
                    ("jid", "professor@example.edu"),
                    ("hats#uri", &uri),
                    ("hats#title", "T"),
                ],
            );
            assert!(condition(&sent[0]).is_none());
        }
        let sent = run(
            &mut host,
            &muc,
            OWNER,
            DON,
            &[
                ("jid", "professor@example.edu"),
                ("hats#uri", "urn:example:more"),
                ("hats#title", "T"),
            ],
        );
        assert_eq!(condition(&sent[0]).as_deref(), Some("not-acceptable"));
        let sent = run(
            &mut host,
            &muc,
            OWNER,
            DON,
            &[
                ("accountjid", "professor@example.edu"),
                ("hat", "urn:example:0"),
                ("hats#title", "Renamed"),
            ],
        );
        assert!(
            condition(&sent[0]).is_none(),
            "the XEP's own field names work too"
        );
        let worn = load(&mut host, ROOM, "professor@example.edu").unwrap();
        assert_eq!(worn.hats.len(), MAX_HATS_PER_USER);
        assert_eq!(worn.hats[0].title, "Renamed");
    }
}
