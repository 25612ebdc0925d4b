//! Data forms (XEP-0004) as the service sends them: every field declares its `type`.
//! xmpp-parsers leaves out `type="text-single"` (XEP-0004's default), and clients such as
//! profanity then show the field wrongly and refuse to fill it in. Every form the plugin sends
//! goes through [`element`]; a submitted configuration form is read with [`read_submitted`].

use minidom::rxml::{xml_ncname, Namespace};
use minidom::{Element, Node};
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::ns;

/// The form's element, with the default field type written out.
pub fn element(form: DataForm) -> Element {
    let mut element = Element::from(form);
    for field in element
        .children_mut()
        .filter(|child| child.is("field", ns::DATA_FORMS) && child.attr("type").is_none())
    {
        // The serialiser omits only the default type.
        field.set_attr(Namespace::NONE, xml_ncname!("type").into(), "text-single");
    }
    element
}

/// A form a client submitted, read as XEP-0004 means it whatever text lies between a field's
/// `<value/>`s: Converse.js writes a comma between the values of a list-multi field, which the
/// parser would otherwise refuse (and with it the whole form).
pub fn read_submitted(form: &Element) -> Option<DataForm> {
    let mut form = form.clone();
    for field in form
        .children_mut()
        .filter(|child| child.is("field", ns::DATA_FORMS))
    {
        for node in field.take_nodes() {
            if let Node::Element(value) = node {
                field.append_child(value);
            }
        }
    }
    DataForm::try_from(form).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;
    use crate::service::{Muc, Settings};
    use xmpp_parsers::data_forms::{DataFormType, Field, FieldType};

    const ROOM: &str = "room@muc.example";
    const OWNER: &str = "owner@example.org/desk";
    const VISITOR: &str = "visitor@example.org/phone";
    const ADMIN: &str = "admin@example.org/desk";

    /// The forms anywhere in `stanzas`, by their `FORM_TYPE` (or "" without one).
    fn forms_in(stanzas: &[Element], found: &mut Vec<(String, Element)>) {
        for stanza in stanzas {
            if stanza.is("x", ns::DATA_FORMS) {
                let form_type = stanza
                    .children()
                    .find(|f| f.attr("var") == Some("FORM_TYPE"))
                    .and_then(|f| f.get_child("value", ns::DATA_FORMS))
                    .map_or(String::new(), Element::text);
                found.push((form_type, stanza.clone()));
            }
            forms_in(&stanza.children().cloned().collect::<Vec<_>>(), found);
        }
    }

    /// Every form the plugin sends: the configuration form (with an extension's text setting),
    /// the room's `muc#roominfo`, the registration form, the voice request to moderators and
    /// the administrators' ad-hoc command.
    #[test]
    fn every_form_the_service_sends_types_every_field() {
        let muc = Muc::new(Settings {
            service: "muc.example".into(),
            admins: vec!["admin@example.org".into()],
            ..Settings::default()
        });
        let mut host = MemoryHost::default();
        host.extension_fields = vec![Field::new("extension#words#list", FieldType::TextSingle)];
        let mut sent = Vec::new();
        let mut exchange = |host: &mut MemoryHost, xml: String| {
            sent.extend(host.exchange(&muc, &xml));
        };
        let iq = |type_: &str, from: &str, to: &str, payload: &str| {
            format!("<iq xmlns='jabber:client' type='{type_}' id='q' from='{from}' to='{to}'>{payload}</iq>")
        };
        exchange(
            &mut host,
            format!(
                "<presence xmlns='jabber:client' from='{OWNER}' to='{ROOM}/owner'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
        let owner_query = "<query xmlns='http://jabber.org/protocol/muc#owner'/>";
        exchange(&mut host, iq("get", OWNER, ROOM, owner_query));
        exchange(
            &mut host,
            iq(
                "set",
                OWNER,
                ROOM,
                "<query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query>",
            ),
        );
        exchange(
            &mut host,
            iq(
                "get",
                OWNER,
                ROOM,
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            ),
        );
        exchange(
            &mut host,
            iq("get", OWNER, ROOM, "<query xmlns='jabber:iq:register'/>"),
        );
        exchange(
            &mut host,
            format!(
                "<presence xmlns='jabber:client' from='{VISITOR}' to='{ROOM}/visitor'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
        exchange(
            &mut host,
            format!(
                "<message xmlns='jabber:client' from='{VISITOR}' to='{ROOM}'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
             <field var='muc#role'><value>participant</value></field></x></message>"
            ),
        );
        exchange(
            &mut host,
            iq(
                "set",
                ADMIN,
                "muc.example",
                "<command xmlns='http://jabber.org/protocol/commands' \
             node='http://prosody.im/protocol/muc#destroy' action='execute'/>",
            ),
        );

        let mut forms = Vec::new();
        forms_in(&sent, &mut forms);
        let mut kinds: Vec<&str> = forms.iter().map(|(kind, _)| kind.as_str()).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(
            kinds,
            [
                "",
                "http://jabber.org/protocol/muc#register",
                "http://jabber.org/protocol/muc#request",
                "http://jabber.org/protocol/muc#roomconfig",
                "http://jabber.org/protocol/muc#roominfo",
            ],
            "every kind of form was sent"
        );
        for (kind, form) in &forms {
            for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
                assert!(
                    field.attr("type").is_some(),
                    "a field of the {kind:?} form has no type: {}",
                    String::from(field)
                );
            }
        }
    }

    #[test]
    fn every_field_declares_its_type() {
        let form = DataForm::new(
            DataFormType::Form,
            "urn:example",
            vec![
                Field::new("name", FieldType::TextSingle),
                Field::new("secret", FieldType::TextPrivate),
            ],
        );
        let types: Vec<_> = element(form)
            .children()
            .map(|field| field.attr("type").map(str::to_string))
            .collect();
        assert_eq!(
            types,
            [
                Some("hidden".into()),
                Some("text-single".into()),
                Some("text-private".into())
            ]
        );
    }

    #[test]
    fn text_between_submitted_values_is_not_part_of_the_form() {
        let submitted: Element = "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_presencebroadcast'><value>moderator</value>,<value>participant</value></field>\
             </x>"
            .parse()
            .unwrap();
        assert!(
            DataForm::try_from(submitted.clone()).is_err(),
            "the strict parser refuses it"
        );
        let form = read_submitted(&submitted).expect("read");
        let field = form
            .fields
            .iter()
            .find(|field| field.var.as_deref() == Some("muc#roomconfig_presencebroadcast"))
            .unwrap();
        assert_eq!(field.values, ["moderator", "participant"]);
    }
}
