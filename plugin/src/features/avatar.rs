//! Room avatars (XEP-0486 0.1.0): the room's vCard-temp (XEP-0054) on its bare JID, set by
//! owners and read by anyone who may enter; the photo's SHA-1 (XEP-0153's hash) in disco#info's
//! `muc#roominfo_avatarhash`, and each change announced to occupants with status 104. Kept
//! durably under the room's keys, so it goes with the room.

use minidom::rxml::xml_ncname;
use minidom::Element;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use xmpp_parsers::data_forms::{Field, FieldType};
use xmpp_parsers::muc::user::{MucUser, Status};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use xmpp_parsers::vcard::VCard;

use crate::errors;
use crate::event::{RoomFeature, RoomIq};
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::occupant::{self, Occupant};
use crate::permissions;
use crate::room::Room;
use crate::rules::members_only;

pub const NS: &str = ns::VCARD;
pub const HASH_FIELD: &str = "muc#roominfo_avatarhash";
/// The largest photo kept, decoded (64 KiB, about 87 KiB of base64 on the wire).
pub const MAX_PHOTO_BYTES: usize = 64 * 1024;
/// The largest rest of the vCard kept (its other fields, serialised).
pub const MAX_OTHER_BYTES: usize = 8 * 1024;
/// The longest PHOTO TYPE kept.
const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// What is kept under `room/ROOM/vcard`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Stored {
    /// The vCard as the room answers it, serialised.
    vcard: String,
    /// The photo's SHA-1, lowercase hex; none without a photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    photo_sha1: Option<String>,
}

/// Why a vCard is refused: the condition and the text the owner reads.
type Refused = (ErrorType, DefinedCondition, String);

pub struct Avatar;

impl RoomFeature for Avatar {
    fn room_iq_namespaces(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn room_iq(&self, host: &mut dyn Host, iq: &RoomIq) -> Result<(), Fault> {
        let envelope = iq.inbound.envelope;
        let refuse = |host: &mut dyn Host, type_, condition, text: &str| {
            errors::reply(host, envelope, "iq", type_, condition, Some(text))
        };
        let sender = iq.inbound.from.to_bare().to_string();
        let affiliation = iq.muc.affiliation(host, &iq.room.jid, &sender)?;
        match envelope.type_.as_deref() {
            Some("get") => {
                let members_only = members_only::is_members_only(iq.room);
                if !permissions::may_read_room_vcard(members_only, &affiliation) {
                    return refuse(
                        host,
                        ErrorType::Auth,
                        DefinedCondition::Forbidden,
                        "Only members may read this room's vCard.",
                    );
                }
                let vcard = match load(host, &iq.room.jid)? {
                    Some(stored) => stored.vcard.parse()?,
                    None => Element::builder("vCard", NS).build(),
                };
                host.send(errors::result(envelope, Some(vcard)))
            }
            Some("set") => {
                if !permissions::may_set_room_vcard(&affiliation) {
                    return refuse(
                        host,
                        ErrorType::Auth,
                        DefinedCondition::Forbidden,
                        "Only owners may set the room's vCard.",
                    );
                }
                let stored = match checked(iq.query) {
                    Ok(stored) => stored,
                    Err((type_, condition, text)) => return refuse(host, type_, condition, &text),
                };
                let changed = load(host, &iq.room.jid)? != stored;
                match &stored {
                    Some(stored) => host.put(
                        Tier::Durable,
                        &keys::vcard(&iq.room.jid),
                        serde_json::to_vec(stored)?,
                    )?,
                    None => host.delete(Tier::Durable, &keys::vcard(&iq.room.jid)),
                }
                host.send(errors::result(envelope, None))?;
                if changed {
                    announce_change(host, iq.room)?;
                }
                Ok(())
            }
            _ => refuse(
                host,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "A vCard is read with get and set with set.",
            ),
        }
    }

    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        vec![NS]
    }

    /// XEP-0486 §3.3: the hash only while a photo is set.
    fn stored_room_info(&self, host: &mut dyn Host, room: &Room) -> Result<Vec<Field>, Fault> {
        let hash = load(host, &room.jid)?.and_then(|stored| stored.photo_sha1);
        Ok(hash
            .map(|hash| {
                let mut field = Field::new(HASH_FIELD, FieldType::TextMulti).with_value(&hash);
                field.label = Some("Avatar hash".into());
                field
            })
            .into_iter()
            .collect())
    }
}

fn load(host: &mut dyn Host, room: &str) -> Result<Option<Stored>, Fault> {
    match host.get(Tier::Durable, &keys::vcard(room)) {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// The vCard an owner sent, as it will be kept: none for an empty one (the avatar removed).
fn checked(query: &Element) -> Result<Option<Stored>, Refused> {
    let bad = |text: String| (ErrorType::Modify, DefinedCondition::BadRequest, text);
    let too_large = |text: String| (ErrorType::Modify, DefinedCondition::NotAcceptable, text);
    let vcard = VCard::try_from(query.clone()).map_err(|error| {
        bad(format!(
            "Not a vCard this room keeps (one PHOTO with a TYPE and a base64 BINVAL): {error}"
        ))
    })?;
    let other_bytes: usize = vcard
        .payloads
        .iter()
        .map(|payload| String::from(payload).len())
        .sum();
    if other_bytes > MAX_OTHER_BYTES {
        return Err(too_large(format!(
            "The vCard's fields other than PHOTO take {other_bytes} bytes; at most {MAX_OTHER_BYTES} are kept."
        )));
    }
    let photo_sha1 = match &vcard.photo {
        None => None,
        Some(photo) => {
            let media_type = photo.type_.data.trim();
            // RFC 6838 §4.2: a media type name is at most 127 + 1 + 127 characters.
            if !media_type.starts_with("image/") || media_type.len() > MAX_MEDIA_TYPE_BYTES {
                return Err(bad(format!(
                    "The PHOTO's TYPE is {:?}, not an image/* media type.",
                    media_type.chars().take(64).collect::<String>()
                )));
            }
            let size = photo.binval.data.len();
            if size > MAX_PHOTO_BYTES {
                return Err(too_large(format!(
                    "The photo is {size} bytes; a room's avatar may be at most {MAX_PHOTO_BYTES} bytes."
                )));
            }
            if size == 0 {
                return Err(bad("The PHOTO's BINVAL is empty.".into()));
            }
            Some(sha1_hex(&photo.binval.data))
        }
    };
    if vcard.photo.is_none() && vcard.payloads.is_empty() {
        return Ok(None);
    }
    Ok(Some(Stored {
        vcard: String::from(&Element::from(vcard)),
        photo_sha1,
    }))
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// XEP-0486 §3.2 (as XEP-0045 §10.2.1 for any change that is not about privacy): status 104 to
/// every occupant, who may then read the new hash. XEP-0486 §5.2 discourages the older
/// presence from the room's bare JID, so none is sent.
fn announce_change(host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
    let occupants = Occupant::all(host, &room.jid)?;
    let everyone = occupant::sessions(&occupants.iter().collect::<Vec<_>>());
    if everyone.is_empty() {
        return Ok(());
    }
    let notice = Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "groupchat")
        .attr(xml_ncname!("from").into(), room.jid.as_str())
        .append(Element::from(
            MucUser::new().with_statuses(vec![Status::ConfigNonPrivacyRelated]),
        ))
        .build();
    host.broadcast(notice, &everyone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;
    use crate::service::{Muc, Settings};

    const ROOM: &str = "garden@muc.example";
    const OWNER: &str = "romeo@example.net/garden";
    const GUEST: &str = "juliet@example.com/balcony";
    /// XEP-0486's example image: a red square, as SVG.
    const SVG: &str = "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIzMiIgaGVpZ2h0PSIzMiI+CiA8cmVjdCB4PSIwIiB5PSIwIiB3aWR0aD0iMzIiIGhlaWdodD0iMzIiIGZpbGw9InJlZCIvPgo8L3N2Zz4K";
    const SVG_SHA1: &str = "a31c4bd04de69663cfd7f424a8453f4674da37ff";

    fn muc() -> Muc {
        Muc::new(Settings {
            service: "muc.example".into(),
            ..Settings::default()
        })
    }

    /// A room made by OWNER (joined, configured as an instant room), with GUEST in it.
    fn room(host: &mut MemoryHost, muc: &Muc) {
        host.exchange(
            muc,
            &format!("<presence xmlns='jabber:client' from='{OWNER}' to='{ROOM}/romeo'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
        );
        host.exchange(
            muc,
            &format!("<iq xmlns='jabber:client' type='set' id='c' from='{OWNER}' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"),
        );
        host.exchange(
            muc,
            &format!("<presence xmlns='jabber:client' from='{GUEST}' to='{ROOM}/juliet'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
        );
    }

    fn set(host: &mut MemoryHost, muc: &Muc, from: &str, vcard: &str) -> Vec<Element> {
        host.exchange(
            muc,
            &format!("<iq xmlns='jabber:client' type='set' id='v' from='{from}' to='{ROOM}'>{vcard}</iq>"),
        )
    }

    fn photo(type_: &str, binval: &str) -> String {
        format!("<vCard xmlns='vcard-temp'><PHOTO><TYPE>{type_}</TYPE><BINVAL>{binval}</BINVAL></PHOTO></vCard>")
    }

    fn hashes(host: &mut MemoryHost, muc: &Muc) -> Vec<String> {
        let info = host.exchange(
            muc,
            &format!("<iq xmlns='jabber:client' type='get' id='d' from='{GUEST}' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
        );
        let query = info[0].get_child("query", ns::DISCO_INFO).unwrap();
        let form = query.get_child("x", ns::DATA_FORMS).unwrap();
        form.children()
            .filter(|f| f.attr("var") == Some(HASH_FIELD))
            .flat_map(|f| f.children().map(Element::text).collect::<Vec<_>>())
            .collect()
    }

    fn condition(reply: &Element) -> Option<String> {
        let error = reply.get_child("error", ns::JABBER_CLIENT)?;
        error.children().next().map(|c| c.name().to_string())
    }

    #[test]
    fn an_owner_sets_the_photo_everyone_reads_it_and_sees_its_hash() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        assert!(hashes(&mut host, &muc).is_empty(), "no hash before a photo");

        let sent = set(&mut host, &muc, OWNER, &photo("image/svg+xml", SVG));
        assert_eq!(sent[0].attr("type"), Some("result"));
        let notices: Vec<&Element> = sent.iter().filter(|s| s.name() == "message").collect();
        assert_eq!(notices.len(), 2, "104 to both occupants: {sent:?}");
        for notice in &notices {
            let x = notice.get_child("x", ns::MUC_USER).unwrap();
            assert_eq!(
                x.get_child("status", ns::MUC_USER).unwrap().attr("code"),
                Some("104")
            );
        }
        assert_eq!(hashes(&mut host, &muc), [SVG_SHA1]);

        let read = host.exchange(
            &muc,
            &format!("<iq xmlns='jabber:client' type='get' id='g' from='{GUEST}' to='{ROOM}'><vCard xmlns='vcard-temp'/></iq>"),
        );
        let vcard = VCard::try_from(read[0].get_child("vCard", NS).unwrap().clone()).unwrap();
        assert_eq!(sha1_hex(&vcard.photo.unwrap().binval.data), SVG_SHA1);

        // The same vCard again changes nothing: no notice.
        let again = set(&mut host, &muc, OWNER, &photo("image/svg+xml", SVG));
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn an_empty_vcard_removes_the_photo_and_its_hash() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        set(&mut host, &muc, OWNER, &photo("image/svg+xml", SVG));
        let sent = set(&mut host, &muc, OWNER, "<vCard xmlns='vcard-temp'/>");
        assert_eq!(sent[0].attr("type"), Some("result"));
        assert_eq!(sent.len(), 3, "the result and two 104 notices");
        assert!(hashes(&mut host, &muc).is_empty());
        assert!(host.get(Tier::Durable, &keys::vcard(ROOM)).is_none());
    }

    #[test]
    fn only_owners_set_and_bad_vcards_are_refused_with_nothing_stored() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        let refusals = [
            (GUEST, photo("image/png", SVG), "forbidden"),
            (OWNER, photo("text/plain", SVG), "bad-request"),
            (
                OWNER,
                photo(&format!("image/{}", "x".repeat(MAX_MEDIA_TYPE_BYTES)), SVG),
                "bad-request",
            ),
            (OWNER, photo("image/png", "not base64!"), "bad-request"),
            (OWNER, photo("image/png", ""), "bad-request"),
            (
                OWNER,
                "<vCard xmlns='vcard-temp'><PHOTO><EXTVAL>https://example.org/a.png</EXTVAL></PHOTO></vCard>".into(),
                "bad-request",
            ),
            (
                OWNER,
                format!(
                    "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{SVG}</BINVAL></PHOTO><PHOTO><TYPE>image/png</TYPE><BINVAL>{SVG}</BINVAL></PHOTO></vCard>"
                ),
                "bad-request",
            ),
            (
                OWNER,
                photo("image/png", &"AAAA".repeat(MAX_PHOTO_BYTES / 3 + 1)),
                "not-acceptable",
            ),
            (
                OWNER,
                format!(
                    "<vCard xmlns='vcard-temp'><DESC>{}</DESC></vCard>",
                    "x".repeat(MAX_OTHER_BYTES + 1)
                ),
                "not-acceptable",
            ),
        ];
        for (from, vcard, expected) in refusals {
            let sent = set(&mut host, &muc, from, &vcard);
            assert_eq!(sent.len(), 1, "only the error: {sent:?}");
            assert_eq!(
                condition(&sent[0]).as_deref(),
                Some(expected),
                "{vcard:.80}"
            );
            assert!(host.get(Tier::Durable, &keys::vcard(ROOM)).is_none());
        }
        // The largest photo allowed is kept.
        let largest = photo("image/png", &"AAAA".repeat(MAX_PHOTO_BYTES / 3));
        assert_eq!(
            set(&mut host, &muc, OWNER, &largest)[0].attr("type"),
            Some("result")
        );
    }

    #[test]
    fn a_members_only_room_shows_its_vcard_to_members_only() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        let mut room = Room::load(&mut host, ROOM).unwrap().unwrap();
        room.config
            .insert(members_only::FIELD.var.into(), true.into());
        room.save(&mut host).unwrap();
        let read = host.exchange(
            &muc,
            &format!("<iq xmlns='jabber:client' type='get' id='g' from='nobody@example.org/x' to='{ROOM}'><vCard xmlns='vcard-temp'/></iq>"),
        );
        assert_eq!(condition(&read[0]).as_deref(), Some("forbidden"));
        let read = host.exchange(
            &muc,
            &format!("<iq xmlns='jabber:client' type='get' id='g' from='{OWNER}' to='{ROOM}'><vCard xmlns='vcard-temp'/></iq>"),
        );
        assert_eq!(read[0].attr("type"), Some("result"));
    }

    #[test]
    fn the_vcard_goes_with_the_room() {
        let mut host = MemoryHost::default();
        let muc = muc();
        room(&mut host, &muc);
        set(&mut host, &muc, OWNER, &photo("image/svg+xml", SVG));
        host.exchange(
            &muc,
            &format!("<iq xmlns='jabber:client' type='set' id='x' from='{OWNER}' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>"),
        );
        assert!(host.get(Tier::Durable, &keys::vcard(ROOM)).is_none());
    }
}
