//! The hot-swap command on the MUC service (XEP-0050), for service administrators: the same
//! swap and rollback as `muc-host ctl`, from an XMPP client. The host owns it (the plugin being
//! replaced cannot be the one to replace itself), so the service hands such commands to
//! [`crate::swap`] instead of the plugin, and the answer comes back as a stanza from the host.
//! Here: the command's stanzas only (the form, what a submitted form asks for, the answer).

use std::collections::BTreeSet;
use std::path::PathBuf;

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

use crate::stanza_error::{error_reply, DefinedCondition, ErrorType};

pub const NS: &str = "http://jabber.org/protocol/commands";
pub const SWAP_NODE: &str = "urn:muc-host:swap";
const DATA_FORMS: &str = "jabber:x:data";

/// Whether `stanza` runs the host's command on `muc_domain` (so the plugin never sees it).
pub fn is_host_command(stanza: &Element, muc_domain: &str) -> bool {
    stanza.name() == "iq"
        && stanza.attr("type") == Some("set")
        && stanza.attr("to") == Some(muc_domain)
        && stanza
            .get_child("command", NS)
            .is_some_and(|command| command.attr("node") == Some(SWAP_NODE))
}

/// What the host does with one step of the command.
pub enum Step {
    /// Answer at once: the form, a cancellation, or a refusal.
    Answer(Element),
    /// Carry `action` out, then answer with [`completed`].
    Run { action: Action, session: String },
}

/// What an administrator asked for.
pub enum Action {
    /// Swap in the component at this path on the server.
    Swap(PathBuf),
    Rollback,
}

/// One step of the command, as XEP-0050 §3.4: the form first, then the action it asks for.
pub fn step(admins: &BTreeSet<String>, iq: &Element) -> Step {
    let from_admin = iq
        .attr("from")
        .and_then(|from| jid::Jid::new(from).ok())
        .is_some_and(|from| admins.contains(&from.to_bare().to_string()));
    if !from_admin {
        return Step::Answer(error_reply(
            iq,
            ErrorType::Auth,
            DefinedCondition::Forbidden,
        ));
    }
    let Some(command) = iq.get_child("command", NS) else {
        return Step::Answer(error_reply(
            iq,
            ErrorType::Modify,
            DefinedCondition::BadRequest,
        ));
    };
    let session = command
        .attr("sessionid")
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if command.attr("action") == Some("cancel") {
        return Step::Answer(answer(iq, &session, "canceled", None));
    }
    let Some(form) = command
        .get_child("x", DATA_FORMS)
        .and_then(|x| DataForm::try_from(x.clone()).ok())
        .filter(|form| form.type_ == DataFormType::Submit)
    else {
        return Step::Answer(answer(iq, &session, "executing", Some(swap_form())));
    };
    let value = |var: &str| {
        form.fields
            .iter()
            .find(|field| field.var.as_deref() == Some(var))
            .and_then(|field| field.values.first().cloned())
    };
    let action = match (value("action").as_deref(), value("plugin")) {
        (Some("rollback"), _) => Action::Rollback,
        (Some("swap") | None, Some(path)) if !path.trim().is_empty() => {
            Action::Swap(path.trim().into())
        }
        _ => {
            return Step::Answer(error_reply(
                iq,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
            ))
        }
    };
    Step::Run { action, session }
}

/// The command's last answer: what the action came to.
pub fn completed(iq: &Element, session: &str, outcome: Result<String, String>) -> Element {
    let (kind, message) = match outcome {
        Ok(message) => ("info", message),
        Err(message) => ("error", message),
    };
    let note = Element::builder("note", NS)
        .attr(xml_ncname!("type").into(), kind)
        .append(message)
        .build();
    answer(iq, session, "completed", Some(note))
}

fn swap_form() -> Element {
    let mut action = Field::new("action", FieldType::ListSingle).with_value("swap");
    action.label = Some("Swap to a new plugin, or roll back to the previous one".into());
    action.options = ["swap", "rollback"]
        .into_iter()
        .map(|value| Option_ {
            label: None,
            value: value.into(),
        })
        .collect();
    let mut plugin = Field::new("plugin", FieldType::TextSingle);
    plugin.label = Some("Path of the component on the server (for a swap)".into());
    with_field_types(DataForm {
        type_: DataFormType::Form,
        title: Some("Replace the MUC logic without a restart".into()),
        instructions: None,
        fields: vec![action, plugin],
    })
}

/// The form's element with every field's `type` written out: xmpp-parsers leaves out
/// `text-single` (XEP-0004's default), which clients such as profanity then show wrongly.
fn with_field_types(form: DataForm) -> Element {
    let mut element = Element::from(form);
    for field in element
        .children_mut()
        .filter(|child| child.is("field", DATA_FORMS) && child.attr("type").is_none())
    {
        field.set_attr(
            minidom::rxml::Namespace::NONE,
            xml_ncname!("type").into(),
            "text-single",
        );
    }
    element
}

fn answer(iq: &Element, session: &str, status: &str, payload: Option<Element>) -> Element {
    let mut command = Element::builder("command", NS)
        .attr(xml_ncname!("node").into(), SWAP_NODE)
        .attr(xml_ncname!("sessionid").into(), session)
        .attr(xml_ncname!("status").into(), status)
        .build();
    if let Some(payload) = payload {
        command.append_child(payload);
    }
    Element::builder("iq", "jabber:client")
        .attr(xml_ncname!("type").into(), "result")
        .attr(xml_ncname!("from").into(), iq.attr("to"))
        .attr(xml_ncname!("to").into(), iq.attr("from"))
        .attr(xml_ncname!("id").into(), iq.attr("id"))
        .append(command)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_swap_form_types_every_field() {
        let form = swap_form();
        let fields: Vec<_> = form
            .children()
            .filter(|c| c.is("field", DATA_FORMS))
            .collect();
        assert_eq!(fields.len(), 2);
        for field in fields {
            assert!(field.attr("type").is_some(), "{}", String::from(field));
        }
    }
}
