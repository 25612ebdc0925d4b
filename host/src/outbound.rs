//! A stanza on its way out. The copies of one broadcast differ only in `to`: they share one
//! stanza and one serialisation, made the first time a copy is written, so that fanning a message
//! out to a room costs a `to` attribute per recipient, not a stanza clone and a serialisation.

use std::sync::{Arc, OnceLock};

use jid::Jid;
use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;

#[derive(Clone, Debug)]
pub struct Outbound {
    /// Parsed once, where the stanza was made: routing needs it, writing needs its text.
    to: Option<Jid>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The stanza without `to`.
    stanza: Element,
    xml: OnceLock<String>,
}

impl Shared {
    fn new(mut stanza: Element) -> Arc<Shared> {
        stanza.attrs_mut().remove(&Namespace::NONE, "to");
        Arc::new(Shared {
            stanza,
            xml: OnceLock::new(),
        })
    }
}

impl Outbound {
    /// One copy of `stanza` for each of `recipients`, `to` set on each.
    pub fn copies(stanza: Element, recipients: Vec<Jid>) -> impl Iterator<Item = Outbound> {
        let shared = Shared::new(stanza);
        recipients.into_iter().map(move |to| Outbound {
            to: Some(to),
            shared: shared.clone(),
        })
    }

    /// The addressee, when the stanza has a `to` that is a JID.
    pub fn to(&self) -> Option<&Jid> {
        self.to.as_ref()
    }

    /// `message`, `presence` or `iq`.
    pub fn name(&self) -> &str {
        self.shared.stanza.name()
    }

    /// The stanza as one element, `to` included.
    pub fn element(&self) -> Element {
        let mut stanza = self.shared.stanza.clone();
        if let Some(to) = &self.to {
            stanza.set_attr(Namespace::NONE, xml_ncname!("to").into(), to.as_str());
        }
        stanza
    }

    /// Appends the serialised stanza to `out`, for a stream whose default namespace is
    /// `jabber:client`: the shared serialisation with this copy's `to` spliced in after the
    /// element name.
    pub fn write(&self, out: &mut String) {
        let xml = self
            .shared
            .xml
            .get_or_init(|| serialise(&self.shared.stanza));
        let name_end = 1 + self.name().len();
        debug_assert!(xml[1..].starts_with(self.name()));
        out.push_str(&xml[..name_end]);
        if let Some(to) = &self.to {
            out.push_str(" to='");
            out.push_str(
                std::str::from_utf8(&minidom::element::escape(to.as_str().as_bytes()))
                    .expect("escaping keeps UTF-8"),
            );
            out.push('\'');
        }
        out.push_str(&xml[name_end..]);
    }
}

/// The stanza as text, without declaring `jabber:client`: the c2s stream declares it, and each
/// stanza inherits it (as from every XMPP server), so a client parses one declaration per
/// stream, not one per stanza.
fn serialise(stanza: &Element) -> String {
    const INHERITED: &str = " xmlns='jabber:client'";
    let mut xml = String::from(stanza);
    let name_end = 1 + stanza.name().len();
    if xml[name_end..].starts_with(INHERITED) {
        xml.replace_range(name_end..name_end + INHERITED.len(), "");
    }
    xml
}

impl From<Element> for Outbound {
    /// A stanza whose `to` is missing or not a JID goes nowhere, and is written without one.
    fn from(stanza: Element) -> Outbound {
        Outbound {
            to: stanza.attr("to").and_then(|to| Jid::new(to).ok()),
            shared: Shared::new(stanza),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stanza as a client reads it: inside a stream that declares `jabber:client`.
    fn written(stanza: &Outbound) -> Element {
        let mut out = String::new();
        stanza.write(&mut out);
        assert!(!out.contains("jabber:client"), "declared again: {out}");
        let stream: Element = format!("<stream xmlns='jabber:client'>{out}</stream>")
            .parse()
            .unwrap();
        stream.children().next().unwrap().clone()
    }

    #[test]
    fn each_copy_is_the_stanza_with_its_own_to() {
        let stanza: Element = "<message xmlns='jabber:client' from='r@muc/n' to='old@x' type='groupchat'><body>a &amp; b</body></message>"
            .parse()
            .unwrap();
        let copies: Vec<Outbound> = Outbound::copies(
            stanza.clone(),
            vec!["a@x/1".parse().unwrap(), "b@x/it's <me>".parse().unwrap()],
        )
        .collect();
        for (copy, to) in copies.iter().zip(["a@x/1", "b@x/it's <me>"]) {
            let mut expected = stanza.clone();
            expected.set_attr(Namespace::NONE, xml_ncname!("to").into(), to);
            assert_eq!(written(copy), expected);
            assert_eq!(copy.element(), expected);
            assert_eq!((copy.to().unwrap().as_str(), copy.name()), (to, "message"));
        }
    }

    #[test]
    fn a_single_stanza_keeps_its_to_and_an_empty_one_gets_none() {
        let with: Element = "<iq xmlns='jabber:client' to='a@x/1' type='result' id='1'/>"
            .parse()
            .unwrap();
        assert_eq!(written(&Outbound::from(with.clone())), with);
        let without: Element = "<presence xmlns='jabber:client'/>".parse().unwrap();
        let outbound = Outbound::from(without.clone());
        assert_eq!(written(&outbound), without);
        assert_eq!(outbound.element(), without);
    }
}
