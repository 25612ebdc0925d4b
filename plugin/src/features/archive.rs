//! Message Archive Management on the room JID (XEP-0313 1.1, `urn:xmpp:mam:2` and its
//! `#extended` part), over the host's archive (`muc:plugin/archive`).
//!
//! What is archived: groupchat messages with a body, subject changes, and messages carrying a
//! store hint (XEP-0334), a reaction (XEP-0444), a correction (XEP-0308) or a retraction
//! (XEP-0424); never what carries a `no-store`/`no-permanent-store` hint, nor chat states or
//! receipts alone. Each entry's id is the room's stanza-id (XEP-0359) on the live message.
//!
//! `muc#roomconfig_enablearchiving` (on by default) switches MAM on; off, the room still
//! appends (the join history is read from the archive) but keeps only its newest
//! `muc#maxhistoryfetch` entries, and answers MAM with `feature-not-implemented`.
//!
//! Who may query: whoever may enter. Outcasts, non-members of a members-only room, and in a
//! password-protected room anyone who is neither affiliated nor in it (a query carries no
//! password) get `forbidden`; a locked room is `item-not-found`, as for a join. A page holds at
//! most [`MAX_PAGE`] messages (a larger or absent `max` is taken as that), and a query names at
//! most as many ids, so each query costs bounded work; the host's rate limits bound a flood.

use std::str::FromStr;

use jid::Jid;
use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::date::DateTime;
use xmpp_parsers::delay::Delay;
use xmpp_parsers::mam::{End, Fin, MetadataResponse, Query, Start};
use xmpp_parsers::muc::user::{Affiliation, Role};
use xmpp_parsers::ns;
use xmpp_parsers::rsm::{First, SetQuery, SetResult};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::{FieldSpec, Kind};
use crate::errors;
use crate::event::{Groupchat, RoomFeature, RoomIq};
use crate::form;
use crate::host::{
    ArchiveEntry, ArchiveFilter, ArchivePage, ArchivePosition, ArchiveQuery, ArchiveQueryError,
    ArchiveWriteError, Fault, Host,
};
use crate::occupant::Occupant;
use crate::room::Room;
use crate::rules::{history, members_only, moderated, password, whois};

pub const NS: &str = "urn:xmpp:mam:2";
pub const NS_EXTENDED: &str = "urn:xmpp:mam:2#extended";

/// The most messages one query returns, and the most ids it may name.
pub const MAX_PAGE: u32 = 250;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_enablearchiving",
    label: "Archive messages (Message Archive Management)",
    kind: Kind::Boolean(true),
};

const HINTS: &str = "urn:xmpp:hints";
const REACTIONS: &str = "urn:xmpp:reactions:0";
const CORRECTION: &str = "urn:xmpp:message-correct:0";
const RETRACTION: &str = "urn:xmpp:message-retract:1";

pub fn is_enabled(room: &Room) -> bool {
    FIELD.flag(&room.config)
}

/// Whether a message as broadcast belongs in the archive.
fn worth_archiving(message: &Element) -> bool {
    let has = |name: &str, namespace: &str| message.has_child(name, namespace);
    if has("no-store", HINTS) || has("no-permanent-store", HINTS) {
        return false;
    }
    has("body", ns::JABBER_CLIENT)
        || has("subject", ns::JABBER_CLIENT)
        || has("store", HINTS)
        || has("reactions", REACTIONS)
        || has("replace", CORRECTION)
        || has("retract", RETRACTION)
}

/// Appends a groupchat message as broadcast (stamped, serialised, without `to`): its id is the
/// room's stanza-id, its sender its `from`, with the sender's occupant id and the real JID of
/// the session that sent it (none for what a room extension said).
fn store(host: &mut dyn Host, message: &Groupchat) -> Result<(), Fault> {
    let room = message.room;
    if !worth_archiving(&message.message) {
        return Ok(());
    }
    let enabled = is_enabled(room);
    let keep = history::FIELD.number(&room.config) as u32;
    // Off, the archive is only the join history, which never replays subject changes.
    if !enabled && (keep == 0 || message.changes_subject) {
        return Ok(());
    }
    let entry = ArchiveEntry {
        id: message.stanza_id.clone(),
        at_ms: host.now_ms(),
        sender: message
            .message
            .attr("from")
            .unwrap_or(&room.jid)
            .to_string(),
        occupant_id: message.occupant_id.clone(),
        real_jid: message.sender.map(|sender| sender.session.to_string()),
        stanza: message.xml.clone(),
    };
    host.archive_append(&room.jid, entry).map_err(write_fault)?;
    if !enabled {
        host.archive_trim(&room.jid, keep);
    }
    Ok(())
}

/// A write the host refused: the call fails (a quota is reported by the host as such).
pub fn write_fault(error: ArchiveWriteError) -> Fault {
    match error {
        ArchiveWriteError::Refused(why) => Fault(why),
        ArchiveWriteError::DuplicateId(id) => Fault(format!("archive id {id} used twice")),
    }
}

/// A refused request: the stanza error and its text.
#[derive(Debug, PartialEq)]
struct Refusal {
    type_: ErrorType,
    condition: DefinedCondition,
    text: String,
}

impl Refusal {
    fn bad_request(text: impl Into<String>) -> Refusal {
        Refusal {
            type_: ErrorType::Modify,
            condition: DefinedCondition::BadRequest,
            text: text.into(),
        }
    }

    fn new(type_: ErrorType, condition: DefinedCondition, text: impl Into<String>) -> Refusal {
        Refusal {
            type_,
            condition,
            text: text.into(),
        }
    }
}

/// An IQ to the room in `urn:xmpp:mam:2`: a query (`set`), the form's fields (`get` on the
/// query) or the metadata (`get`).
fn handle(host: &mut dyn Host, iq: &RoomIq) -> Result<(), Fault> {
    let envelope = iq.inbound.envelope;
    let outcome = match reader(host, iq)? {
        Err(refusal) => Err(refusal),
        Ok(sees_real_jids) => {
            let set = envelope.type_.as_deref() == Some("set");
            match (set, iq.query.name()) {
                (true, "query") => query(host, iq, sees_real_jids)?,
                (false, "query") => Ok(fields_form()),
                (false, "metadata") => metadata(host, &iq.room.jid)?,
                _ => Err(Refusal::bad_request(
                    "expected a query (set or get) or metadata (get)",
                )),
            }
        }
    };
    match outcome {
        Ok(payload) => host.send(errors::result(envelope, Some(payload))),
        Err(refusal) => errors::reply(
            host,
            envelope,
            "iq",
            refusal.type_,
            refusal.condition,
            Some(&refusal.text),
        ),
    }
}

/// Whether the sender may read the room's archive, and if so whether they see real JIDs (as
/// they would live: the room is non-anonymous, or they are, or would be, a moderator).
fn reader(host: &mut dyn Host, iq: &RoomIq) -> Result<Result<bool, Refusal>, Fault> {
    let room = iq.room;
    let bare_jid = iq.inbound.from.to_bare().to_string();
    let affiliation = iq.muc.affiliation(host, &room.jid, &bare_jid)?;
    let occupant = Occupant::of_session(host, &room.jid, &iq.inbound.from.to_string())?;
    let forbidden = |why: &str| {
        Err(Refusal::new(
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            why,
        ))
    };
    if affiliation == Affiliation::Outcast {
        return Ok(forbidden("you are banned from this room"));
    }
    if !members_only::admits(room, &affiliation) {
        return Ok(forbidden("only members may read this room's archive"));
    }
    if password::is_protected(room) && affiliation == Affiliation::None && occupant.is_none() {
        return Ok(forbidden(
            "this room has a password: enter it to read its archive",
        ));
    }
    if !is_enabled(room) {
        return Ok(Err(Refusal::new(
            ErrorType::Cancel,
            DefinedCondition::FeatureNotImplemented,
            "this room does not archive its messages",
        )));
    }
    let role: Role = match &occupant {
        Some(occupant) => occupant.role(),
        None => moderated::default_role(room, &affiliation),
    };
    Ok(Ok(whois::sees_real_jids(room, &role)))
}

/// A query, as parsed from the request.
#[derive(Debug, PartialEq)]
struct Request {
    queryid: Option<String>,
    query: ArchiveQuery,
    flip_page: bool,
}

fn parse_request(element: &Element) -> Result<Request, Refusal> {
    let parsed = Query::try_from(element.clone())
        .map_err(|e| Refusal::bad_request(format!("malformed query: {e}")))?;
    if parsed.node.is_some() {
        return Err(Refusal::bad_request("a room's archive has no nodes"));
    }
    let filter = match &parsed.form {
        Some(form) => parse_form(form)?,
        None => ArchiveFilter::default(),
    };
    let set = parsed.set.unwrap_or(SetQuery {
        max: None,
        after: None,
        before: None,
        index: None,
    });
    if set.index.is_some() {
        return Err(Refusal::new(
            ErrorType::Cancel,
            DefinedCondition::FeatureNotImplemented,
            "paging by index is not supported: use after or before",
        ));
    }
    let position = match (set.after, set.before) {
        (Some(_), Some(_)) => return Err(Refusal::bad_request("both after and before given")),
        (Some(after), None) if after.is_empty() => {
            return Err(Refusal::bad_request("an empty after"))
        }
        (Some(after), None) => ArchivePosition::After(after),
        (None, Some(before)) if before.is_empty() => ArchivePosition::Newest,
        (None, Some(before)) => ArchivePosition::Before(before),
        (None, None) => ArchivePosition::Oldest,
    };
    let limit = set
        .max
        .map_or(MAX_PAGE, |max| max.min(MAX_PAGE as usize) as u32);
    Ok(Request {
        queryid: parsed.queryid.map(|id| id.0),
        query: ArchiveQuery {
            filter,
            position,
            limit,
        },
        flip_page: parsed.flip_page,
    })
}

fn parse_form(form: &DataForm) -> Result<ArchiveFilter, Refusal> {
    if form.type_ != DataFormType::Submit {
        return Err(Refusal::bad_request("the form must be of type submit"));
    }
    if form.form_type() != Some(NS) {
        return Err(Refusal::bad_request(format!(
            "the form's FORM_TYPE must be {NS}"
        )));
    }
    let mut filter = ArchiveFilter::default();
    for field in &form.fields {
        let var = field.var.as_deref().unwrap_or_default();
        if var == "FORM_TYPE" {
            continue;
        }
        let values: Vec<&str> = field
            .values
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        if var == "ids" {
            if values.len() > MAX_PAGE as usize {
                return Err(Refusal::bad_request(format!(
                    "at most {MAX_PAGE} ids in one query"
                )));
            }
            filter.ids = values.iter().map(|v| v.to_string()).collect();
            continue;
        }
        let value = match values.as_slice() {
            [] => continue,
            [one] => *one,
            _ => {
                return Err(Refusal::bad_request(format!(
                    "field {var} has several values"
                )))
            }
        };
        match var {
            "start" => filter.start_ms = Some(parse_time(var, value)?),
            "end" => filter.end_ms = Some(parse_time(var, value)?),
            "with" => {
                let jid = Jid::new(value)
                    .map_err(|_| Refusal::bad_request(format!("with: {value:?} is not a JID")))?;
                filter.with = Some(jid.to_string());
            }
            "after-id" => filter.after_id = Some(value.to_string()),
            "before-id" => filter.before_id = Some(value.to_string()),
            _ => return Err(Refusal::bad_request(format!("unknown field {var:?}"))),
        }
    }
    Ok(filter)
}

/// A XEP-0082 date and time, in ms since the Unix epoch (earlier: 0).
fn parse_time(var: &str, value: &str) -> Result<u64, Refusal> {
    let time = DateTime::from_str(value).map_err(|_| {
        Refusal::bad_request(format!(
            "{var}: {value:?} is not a date and time (XEP-0082)"
        ))
    })?;
    Ok(time.0.timestamp_millis().max(0) as u64)
}

/// Runs a query: sends each result to the querier, and returns the `<fin/>`.
fn query(
    host: &mut dyn Host,
    iq: &RoomIq,
    sees_real_jids: bool,
) -> Result<Result<Element, Refusal>, Fault> {
    let room = iq.room;
    let request = match parse_request(iq.query) {
        Ok(request) => request,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let page = match host.archive_query(&room.jid, &request.query) {
        Ok(page) => page,
        Err(ArchiveQueryError::ItemNotFound(id)) => {
            return Ok(Err(Refusal::new(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                format!("no message with id {id:?} in this archive"),
            )))
        }
    };
    let to = iq.inbound.from.to_string();
    let mut entries: Vec<&ArchiveEntry> = page.entries.iter().collect();
    if request.flip_page {
        entries.reverse();
    }
    for entry in &entries {
        let result = result_message(
            &room.jid,
            &to,
            request.queryid.as_deref(),
            entry,
            sees_real_jids,
        )?;
        host.send_serialised(result)?;
    }
    Ok(Ok(Element::from(fin(&page, request.flip_page))))
}

/// One archived message as a query result (XEP-0313 §4.2), serialised. The stored stanza is
/// spliced in as stored text: parsing it again (or passing it through xmpp-parsers'
/// `Forwarded`, which refuses some stanzas the room relays unchanged) would cost most of a page.
fn result_message(
    room: &str,
    to: &str,
    queryid: Option<&str>,
    entry: &ArchiveEntry,
    sees_real_jids: bool,
) -> Result<String, Fault> {
    let delay = Delay {
        from: Some(Jid::new(room)?),
        stamp: date_time(entry.at_ms)?,
        data: None,
    };
    let forwarded = Element::builder("forwarded", ns::FORWARD)
        .append(Element::from(delay))
        .build();
    let mut result = Element::builder("result", NS)
        .attr(xml_ncname!("id").into(), entry.id.as_str())
        .append(forwarded);
    if let Some(queryid) = queryid {
        result = result.attr(xml_ncname!("queryid").into(), queryid);
    }
    let wrapper = String::from(
        &Element::builder("message", ns::JABBER_CLIENT)
            .attr(xml_ncname!("from").into(), room)
            .attr(xml_ncname!("to").into(), to)
            .append(result.build())
            .build(),
    );
    let real_jid = match (sees_real_jids, &entry.real_jid) {
        (true, Some(real_jid)) => Some(String::from(
            &Element::builder("x", ns::MUC_USER)
                .append(
                    Element::builder("item", ns::MUC_USER)
                        .attr(xml_ncname!("jid").into(), real_jid.as_str())
                        .build(),
                )
                .build(),
        )),
        _ => None,
    };
    let stanza = match real_jid {
        // The root's own close tag: the stanza ends with it.
        Some(x) if entry.stanza.trim_end().ends_with("</message>") => {
            insert_before_close(&entry.stanza, "</message>", &x)
        }
        Some(_) => None,
        None => Some(entry.stanza.clone()),
    };
    stanza
        .and_then(|stanza| insert_before_close(&wrapper, "</forwarded>", &stanza))
        .ok_or_else(|| Fault(format!("archived message {} is not a stanza", entry.id)))
}

/// `xml` with `inner` inserted before its last `close` tag (text escapes `<`, so the last one
/// is markup).
fn insert_before_close(xml: &str, close: &str, inner: &str) -> Option<String> {
    let at = xml.rfind(close)?;
    let mut out = String::with_capacity(xml.len() + inner.len());
    out.push_str(&xml[..at]);
    out.push_str(inner);
    out.push_str(&xml[at..]);
    Some(out)
}

/// The `<fin/>` closing a query: `first` and `last` name the page's first and last result in
/// the order they were sent (flipped with `flip-page`). No RSM `index` on `first`, as Prosody:
/// slixmpp's RSM iterator (poezio's MAM) stops paging backwards after one page when it has one.
fn fin(page: &ArchivePage, flip_page: bool) -> Fin {
    let (oldest, newest) = (page.entries.first(), page.entries.last());
    let (first, last) = if flip_page {
        (newest, oldest)
    } else {
        (oldest, newest)
    };
    Fin {
        complete: page.complete,
        set: SetResult {
            first: first.map(|entry| First {
                index: None,
                item: entry.id.clone(),
            }),
            last: last.map(|entry| entry.id.clone()),
            count: Some(page.count as usize),
        },
    }
}

/// The query form's fields (XEP-0313 §5.1), with the `#extended` ones.
fn fields_form() -> Element {
    let fields = vec![
        Field::new("with", FieldType::JidSingle),
        Field::new("start", FieldType::TextSingle),
        Field::new("end", FieldType::TextSingle),
        Field::new("before-id", FieldType::TextSingle),
        Field::new("after-id", FieldType::TextSingle),
        Field::new("ids", FieldType::ListMulti),
    ];
    let form = form::element(DataForm::new(DataFormType::Form, NS, fields));
    Element::builder("query", NS).append(form).build()
}

/// The first and last archived message's id and time (XEP-0313 §7.1).
fn metadata(host: &mut dyn Host, room: &str) -> Result<Result<Element, Refusal>, Fault> {
    let mut end_of = |position: ArchivePosition| -> Result<Option<(String, DateTime)>, Fault> {
        let query = ArchiveQuery {
            filter: ArchiveFilter::default(),
            position,
            limit: 1,
        };
        let page = host
            .archive_query(room, &query)
            .map_err(|e| Fault(format!("the metadata query failed: {e:?}")))?;
        page.entries
            .first()
            .map(|entry| Ok((entry.id.clone(), date_time(entry.at_ms)?)))
            .transpose()
    };
    let start = end_of(ArchivePosition::Oldest)?;
    let end = end_of(ArchivePosition::Newest)?;
    let response = MetadataResponse {
        start: start.map(|(id, timestamp)| Start { id, timestamp }),
        end: end.map(|(id, timestamp)| End { id, timestamp }),
    };
    Ok(Ok(Element::from(response)))
}

fn date_time(at_ms: u64) -> Result<DateTime, Fault> {
    let time = chrono::DateTime::from_timestamp_millis(at_ms as i64)
        .ok_or_else(|| Fault(format!("bad archive time {at_ms}")))?;
    Ok(DateTime(time.fixed_offset()))
}

pub struct Archive;

impl RoomFeature for Archive {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    /// An archive left under this name (by a temporary room a restart forgot) is not this room's.
    fn created(&self, host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
        host.archive_delete(&room.jid);
        Ok(())
    }

    fn destroyed(&self, host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
        host.archive_delete(&room.jid);
        Ok(())
    }

    fn store_groupchat(&self, host: &mut dyn Host, message: &Groupchat) -> Result<(), Fault> {
        store(host, message)
    }

    fn room_iq_namespaces(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn room_iq(&self, host: &mut dyn Host, iq: &RoomIq) -> Result<(), Fault> {
        handle(host, iq)
    }

    fn disco_features(&self, room: &Room) -> Vec<&'static str> {
        if is_enabled(room) {
            vec![NS, NS_EXTENDED]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Muc, Settings};
    use crate::memory_host::MemoryHost;

    const ROOM: &str = "r@muc.example";

    fn query_element(xml: &str) -> Element {
        format!("<query xmlns='{NS}' queryid='q'>{xml}</query>")
            .parse()
            .unwrap()
    }

    fn form(fields: &str) -> String {
        format!(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{NS}</value></field>{fields}</x>"
        )
    }

    fn refusal_of(xml: &str) -> (DefinedCondition, String) {
        let refusal = parse_request(&query_element(xml)).unwrap_err();
        (refusal.condition, refusal.text)
    }

    #[test]
    fn a_query_names_its_filter_position_and_page_size() {
        let request = parse_request(&query_element(&format!(
            "{}<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>a1</after></set>\
             <flip-page/>",
            form(
                "<field var='start'><value>1970-01-01T00:00:02Z</value></field>\
                 <field var='end'><value>1970-01-01T01:00:00+01:00</value></field>\
                 <field var='with'><value>r@muc.example/Nick</value></field>\
                 <field var='after-id'><value>x</value></field>\
                 <field var='before-id'><value>y</value></field>\
                 <field var='ids'><value>i1</value><value>i2</value></field>"
            )
        )))
        .unwrap();
        assert_eq!(
            request,
            Request {
                queryid: Some("q".into()),
                query: ArchiveQuery {
                    filter: ArchiveFilter {
                        start_ms: Some(2000),
                        end_ms: Some(0),
                        with: Some("r@muc.example/Nick".into()),
                        after_id: Some("x".into()),
                        before_id: Some("y".into()),
                        ids: vec!["i1".into(), "i2".into()],
                    },
                    position: ArchivePosition::After("a1".into()),
                    limit: 10,
                },
                flip_page: true,
            }
        );
    }

    #[test]
    fn page_sizes_are_capped_and_before_alone_is_the_last_page() {
        let rsm = |inner: &str| {
            parse_request(&query_element(&format!(
                "<set xmlns='http://jabber.org/protocol/rsm'>{inner}</set>"
            )))
            .unwrap()
            .query
        };
        assert_eq!(rsm("<max>100000</max>").limit, MAX_PAGE);
        assert_eq!(rsm("").limit, MAX_PAGE);
        assert_eq!(rsm("<max>0</max>").limit, 0);
        assert_eq!(rsm("<before/>").position, ArchivePosition::Newest);
        assert_eq!(
            rsm("<before>b</before>").position,
            ArchivePosition::Before("b".into())
        );
        assert_eq!(rsm("").position, ArchivePosition::Oldest);
    }

    #[test]
    fn malformed_queries_are_bad_requests_with_a_reason() {
        let bad = DefinedCondition::BadRequest;
        let (condition, text) = refusal_of(&form("<field var='fulltext'><value>x</value></field>"));
        assert_eq!(
            (condition, text.as_str()),
            (bad.clone(), "unknown field \"fulltext\"")
        );
        let (condition, text) =
            refusal_of(&form("<field var='start'><value>yesterday</value></field>"));
        assert_eq!(condition, bad);
        assert!(text.contains("yesterday"), "{text}");
        let (condition, _) = refusal_of(&form("<field var='with'><value>@@</value></field>"));
        assert_eq!(condition, bad);
        let (condition, _) =
            refusal_of("<set xmlns='http://jabber.org/protocol/rsm'><max>many</max></set>");
        assert_eq!(condition, bad);
        let (condition, _) = refusal_of(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:other</value></field></x>",
        );
        assert_eq!(condition, bad);
        let (condition, _) = refusal_of(
            "<set xmlns='http://jabber.org/protocol/rsm'><after>a</after><before>b</before></set>",
        );
        assert_eq!(condition, bad);
        let many: String = (0..=MAX_PAGE)
            .map(|i| format!("<value>{i}</value>"))
            .collect();
        let (condition, _) = refusal_of(&form(&format!("<field var='ids'>{many}</field>")));
        assert_eq!(condition, bad);
        let (condition, _) =
            refusal_of("<set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set>");
        assert_eq!(condition, DefinedCondition::FeatureNotImplemented);
    }

    /// A service with one unlocked room owned by `owner@example.org` (in it as Owner), and
    /// `config` submitted.
    fn service_with_room(config: &str) -> (Muc, MemoryHost) {
        let muc = Muc::new(Settings {
            service: "muc.example".into(),
            ..Settings::default()
        });
        let mut host = MemoryHost::default();
        host.exchange(
            &muc,
            &format!(
                "<presence xmlns='jabber:client' from='owner@example.org/o' to='{ROOM}/Owner'>\
                 <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
        let answer = host.exchange(
            &muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='c' from='owner@example.org/o' to='{ROOM}'>\
                 <query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 {config}</x></query></iq>"
            ),
        );
        assert_eq!(answer[0].attr("type"), Some("result"), "{answer:?}");
        (muc, host)
    }

    fn join(muc: &Muc, host: &mut MemoryHost, from: &str, nick: &str) {
        host.exchange(
            muc,
            &format!(
                "<presence xmlns='jabber:client' from='{from}' to='{ROOM}/{nick}'>\
                 <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
    }

    /// Sends `body` from `from`; returns the stanza-id the live copy carries.
    fn say(muc: &Muc, host: &mut MemoryHost, from: &str, payload: &str) -> Option<String> {
        let sent = host.exchange(
            muc,
            &format!(
                "<message xmlns='jabber:client' type='groupchat' from='{from}' to='{ROOM}'>\
                 {payload}</message>"
            ),
        );
        let live = sent.first()?;
        live.children()
            .find(|c| c.is("stanza-id", "urn:xmpp:sid:0") && c.attr("by") == Some(ROOM))
            .and_then(|c| c.attr("id"))
            .map(str::to_string)
    }

    /// The result messages' ids, and the iq's `<fin/>`, for a query by `from`.
    fn ask(muc: &Muc, host: &mut MemoryHost, from: &str, query: &str) -> (Vec<Element>, Element) {
        let mut sent = host.exchange(
            muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='m' from='{from}' to='{ROOM}'>\
                 <query xmlns='{NS}' queryid='q'>{query}</query></iq>"
            ),
        );
        let iq = sent.pop().expect("an answer");
        (sent, iq)
    }

    fn ids(results: &[Element]) -> Vec<String> {
        results
            .iter()
            .map(|m| {
                m.get_child("result", NS)
                    .unwrap()
                    .attr("id")
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn fin_of(iq: &Element) -> Fin {
        assert_eq!(iq.attr("type"), Some("result"), "{iq:?}");
        Fin::try_from(iq.get_child("fin", NS).unwrap().clone()).unwrap()
    }

    fn error_of(iq: &Element) -> String {
        assert_eq!(iq.attr("type"), Some("error"), "{iq:?}");
        let error = iq.get_child("error", ns::JABBER_CLIENT).unwrap();
        error.children().next().unwrap().name().to_string()
    }

    fn rsm(inner: &str) -> String {
        format!("<set xmlns='http://jabber.org/protocol/rsm'>{inner}</set>")
    }

    #[test]
    fn pages_go_both_ways_with_the_live_stanza_ids() {
        let (muc, mut host) = service_with_room("");
        let owner = "owner@example.org/o";
        let mut live = Vec::new();
        for n in 1..=5 {
            host.now_ms = n * 1000;
            live.push(say(&muc, &mut host, owner, &format!("<body>{n}</body>")).unwrap());
        }
        // Not archived: a chat state alone.
        say(
            &muc,
            &mut host,
            owner,
            "<active xmlns='http://jabber.org/protocol/chatstates'/>",
        );

        let (results, iq) = ask(&muc, &mut host, owner, &rsm("<max>2</max>"));
        assert_eq!(ids(&results), live[..2]);
        let fin = fin_of(&iq);
        assert!(!fin.complete);
        assert_eq!(
            iq.get_child("fin", NS).unwrap().attr("complete"),
            Some("false")
        );
        assert_eq!(fin.set.count, Some(5));
        assert_eq!(fin.set.first.as_ref().unwrap().item, live[0]);
        assert_eq!(fin.set.last.as_deref(), Some(live[1].as_str()));

        let (results, iq) = ask(
            &muc,
            &mut host,
            owner,
            &rsm(&format!("<max>2</max><after>{}</after>", live[3])),
        );
        assert_eq!(ids(&results), live[4..]);
        assert!(fin_of(&iq).complete);

        let (results, iq) = ask(&muc, &mut host, owner, &rsm("<max>2</max><before/>"));
        assert_eq!(ids(&results), live[3..]);
        assert!(!fin_of(&iq).complete);
        assert_eq!(fin_of(&iq).set.first.unwrap().index, None);

        let (results, iq) = ask(
            &muc,
            &mut host,
            owner,
            &format!("{}<flip-page/>", rsm("<max>2</max><before/>")),
        );
        assert_eq!(ids(&results), [live[4].clone(), live[3].clone()]);
        let fin = fin_of(&iq);
        assert_eq!(fin.set.first.unwrap().item, live[4]);
        assert_eq!(fin.set.last.as_deref(), Some(live[3].as_str()));

        let forwarded = results[0]
            .get_child("result", NS)
            .and_then(|r| r.get_child("forwarded", ns::FORWARD))
            .unwrap();
        let delay =
            Delay::try_from(forwarded.get_child("delay", ns::DELAY).unwrap().clone()).unwrap();
        assert_eq!(delay.stamp.0.timestamp_millis(), 5000);
        let message = forwarded.get_child("message", ns::JABBER_CLIENT).unwrap();
        assert_eq!(message.attr("from"), Some("r@muc.example/Owner"));
        assert!(message.attr("to").is_none());
        assert!(message.has_child("occupant-id", "urn:xmpp:occupant-id:0"));
        assert_eq!(results[0].attr("to"), Some(owner));
        assert_eq!(
            results[0].get_child("result", NS).unwrap().attr("queryid"),
            Some("q")
        );

        let (results, iq) = ask(&muc, &mut host, owner, &rsm("<max>0</max>"));
        assert!(results.is_empty());
        assert_eq!(fin_of(&iq).set.count, Some(5));

        let unknown = rsm("<after>nope</after>");
        assert_eq!(
            error_of(&ask(&muc, &mut host, owner, &unknown).1),
            "item-not-found"
        );
    }

    #[test]
    fn what_is_archived_and_what_is_not() {
        let (muc, mut host) = service_with_room("");
        let owner = "owner@example.org/o";
        let first = say(&muc, &mut host, owner, "<body>first</body>").unwrap();
        let retraction = format!("<retract xmlns='urn:xmpp:message-retract:1' id='{first}'/>");
        let kept = [
            "<body>hi</body>",
            "<subject>topic</subject>",
            "<store xmlns='urn:xmpp:hints'/><x xmlns='urn:example'/>",
            "<reactions xmlns='urn:xmpp:reactions:0' id='s1'><reaction>+1</reaction></reactions>",
            "<replace xmlns='urn:xmpp:message-correct:0' id='c1'/>",
            &retraction,
        ];
        let dropped = [
            "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
            "<received xmlns='urn:xmpp:receipts' id='x'/>",
            "<body>secret</body><no-store xmlns='urn:xmpp:hints'/>",
        ];
        for payload in kept.iter().chain(&dropped) {
            say(&muc, &mut host, owner, payload);
        }
        assert_eq!(host.archives[ROOM].len(), 1 + kept.len());
    }

    #[test]
    fn filters_by_time_sender_and_ids() {
        let (muc, mut host) = service_with_room("");
        join(&muc, &mut host, "other@example.org/x", "Other");
        let mut live = Vec::new();
        for (n, from) in [
            (1, "owner@example.org/o"),
            (2, "other@example.org/x"),
            (3, "owner@example.org/o"),
        ] {
            host.now_ms = n * 60_000;
            live.push(say(&muc, &mut host, from, "<body>m</body>").unwrap());
        }
        let owner = "owner@example.org/o";
        let with = form("<field var='with'><value>r@muc.example/Other</value></field>");
        assert_eq!(
            ids(&ask(&muc, &mut host, owner, &with).0),
            [live[1].clone()]
        );
        let start = form("<field var='start'><value>1970-01-01T00:02:00Z</value></field>");
        assert_eq!(ids(&ask(&muc, &mut host, owner, &start).0), live[1..]);
        let end = form("<field var='end'><value>1970-01-01T00:02:00Z</value></field>");
        assert_eq!(ids(&ask(&muc, &mut host, owner, &end).0), live[..2]);
        let by_ids = form(&format!(
            "<field var='ids'><value>{}</value><value>{}</value></field>",
            live[0], live[2]
        ));
        assert_eq!(
            ids(&ask(&muc, &mut host, owner, &by_ids).0),
            [live[0].clone(), live[2].clone()]
        );
        let after = form(&format!(
            "<field var='after-id'><value>{}</value></field>",
            live[0]
        ));
        assert_eq!(ids(&ask(&muc, &mut host, owner, &after).0), live[1..]);
    }

    #[test]
    fn who_may_read_and_who_sees_real_jids() {
        let (muc, mut host) =
            service_with_room("<field var='muc#roomconfig_membersonly'><value>1</value></field>");
        let owner = "owner@example.org/o";
        say(&muc, &mut host, owner, "<body>hi</body>");
        let (_, iq) = ask(&muc, &mut host, "stranger@example.org/x", "");
        assert_eq!(error_of(&iq), "forbidden");
        host.exchange(
            &muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='a' from='{owner}' to='{ROOM}'>\
                 <query xmlns='http://jabber.org/protocol/muc#admin'>\
                 <item affiliation='member' jid='member@example.org'/>\
                 <item affiliation='outcast' jid='bad@example.org'/></query></iq>"
            ),
        );
        assert_eq!(
            error_of(&ask(&muc, &mut host, "bad@example.org/x", "").1),
            "forbidden"
        );
        let real_jid = |results: &[Element]| {
            results[0]
                .get_child("result", NS)
                .and_then(|r| r.get_child("forwarded", ns::FORWARD))
                .and_then(|f| f.get_child("message", ns::JABBER_CLIENT))
                .and_then(|m| m.get_child("x", ns::MUC_USER))
                .and_then(|x| x.get_child("item", ns::MUC_USER))
                .and_then(|i| i.attr("jid"))
                .map(str::to_string)
        };
        // Semi-anonymous: the member (a participant) does not see it, the owner (a moderator) does.
        let (results, iq) = ask(&muc, &mut host, "member@example.org/m", "");
        fin_of(&iq);
        assert_eq!(real_jid(&results), None);
        let (results, _) = ask(&muc, &mut host, owner, "");
        assert_eq!(real_jid(&results).as_deref(), Some(owner));
    }

    #[test]
    fn a_locked_room_is_not_found_and_a_room_without_archiving_says_so() {
        let muc = Muc::new(Settings::default());
        let mut host = MemoryHost::default();
        join(&muc, &mut host, "owner@example.org/o", "Owner");
        let (_, iq) = ask(&muc, &mut host, "other@example.org/x", "");
        assert_eq!(error_of(&iq), "item-not-found");

        let (muc, mut host) = service_with_room(
            "<field var='muc#roomconfig_enablearchiving'><value>0</value></field>",
        );
        let (_, iq) = ask(&muc, &mut host, "owner@example.org/o", "");
        assert_eq!(error_of(&iq), "feature-not-implemented");
        let room = Room::load(&mut host, ROOM).unwrap().unwrap();
        assert!(Archive.disco_features(&room).is_empty());
    }

    #[test]
    fn metadata_names_the_first_and_last_message_and_the_form_its_fields() {
        let (muc, mut host) = service_with_room("");
        let owner = "owner@example.org/o";
        let get = |host: &mut MemoryHost, payload: &str| {
            host.exchange(
                &muc,
                &format!(
                    "<iq xmlns='jabber:client' type='get' id='g' from='{owner}' to='{ROOM}'>{payload}</iq>"
                ),
            )
            .pop()
            .unwrap()
        };
        let metadata = format!("<metadata xmlns='{NS}'/>");
        let empty = get(&mut host, &metadata);
        let response =
            MetadataResponse::try_from(empty.get_child("metadata", NS).unwrap().clone()).unwrap();
        assert_eq!(response.start, None);
        host.now_ms = 1000;
        let first = say(&muc, &mut host, owner, "<body>1</body>").unwrap();
        host.now_ms = 2000;
        let last = say(&muc, &mut host, owner, "<body>2</body>").unwrap();
        let answer = get(&mut host, &metadata);
        let response =
            MetadataResponse::try_from(answer.get_child("metadata", NS).unwrap().clone()).unwrap();
        let (start, end) = (response.start.unwrap(), response.end.unwrap());
        assert_eq!(
            (start.id, start.timestamp.0.timestamp_millis()),
            (first, 1000)
        );
        assert_eq!((end.id, end.timestamp.0.timestamp_millis()), (last, 2000));

        let answer = get(&mut host, &format!("<query xmlns='{NS}'/>"));
        let form = DataForm::try_from(
            answer
                .get_child("query", NS)
                .and_then(|q| q.get_child("x", ns::DATA_FORMS))
                .unwrap()
                .clone(),
        )
        .unwrap();
        let vars: Vec<_> = form.fields.iter().filter_map(|f| f.var.clone()).collect();
        for var in [
            "FORM_TYPE",
            "with",
            "start",
            "end",
            "before-id",
            "after-id",
            "ids",
        ] {
            assert!(vars.iter().any(|v| v == var), "{var} missing: {vars:?}");
        }
    }

    #[test]
    fn destroying_a_room_deletes_its_archive() {
        let (muc, mut host) = service_with_room("");
        let owner = "owner@example.org/o";
        say(&muc, &mut host, owner, "<body>hi</body>");
        assert!(host.archives.get(ROOM).is_some_and(|a| !a.is_empty()));
        host.exchange(
            &muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='d' from='{owner}' to='{ROOM}'>\
                 <query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>"
            ),
        );
        assert!(host.archives.get(ROOM).is_none_or(Vec::is_empty));
    }

    #[test]
    fn with_archiving_off_the_archive_keeps_only_the_join_history() {
        let (muc, mut host) = service_with_room(
            "<field var='muc#roomconfig_enablearchiving'><value>0</value></field>\
             <field var='muc#maxhistoryfetch'><value>2</value></field>",
        );
        let owner = "owner@example.org/o";
        let live: Vec<String> = (1..=5)
            .map(|n| say(&muc, &mut host, owner, &format!("<body>{n}</body>")).unwrap())
            .collect();
        say(&muc, &mut host, owner, "<subject>news</subject>");
        let kept: Vec<&str> = host.archives[ROOM]
            .iter()
            .map(|entry| entry.id.as_str())
            .collect();
        assert_eq!(kept, live[3..]);
    }
}
