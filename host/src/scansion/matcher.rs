//! Compares an expected stanza (from a script) with a received one.
//!
//! Elements in `jabber:client` match by subset (what the script writes must be there, extras and
//! child order are ignored); elements in other namespaces match strictly (same attributes, same
//! children in the same order). `scansion-strict="true|false"` on an expected element overrides
//! its namespace's rule, and `{scansion:any}` as an attribute value matches any value.
//! `{scansion:capture:NAME}` as an attribute value or an element's text matches any value too,
//! and the runner keeps what it matched as `${NAME}` for later steps (an id the room made up,
//! say): an extension of ours, not in Prosody's scansion.

use std::collections::HashMap;

use minidom::rxml::Namespace;
use minidom::Element;

use super::script::escape_xml;

const STANZA_NS: &str = "jabber:client";
/// `scansion:strict` as [`super::script::parse_stanza`] rewrites it.
const STRICT_ATTR: &str = "scansion-strict";
const ANY_VALUE: &str = "{scansion:any}";
const CAPTURE: &str = "{scansion:capture:";
const VCARD_UPDATE_NS: &str = "vcard-temp:x:update";

/// Whether `received` satisfies `expected`.
pub fn matches(expected: &Element, received: &Element) -> bool {
    let strict = is_strict(expected);
    expected.name() == received.name()
        && expected.ns() == received.ns()
        && attributes_match(expected, received, strict)
        && text_matches(expected, received, strict)
        && children_match(expected, received, strict)
}

fn is_strict(expected: &Element) -> bool {
    match expected.attr(STRICT_ATTR) {
        Some(value) => value != "false",
        None => expected.ns() != STANZA_NS,
    }
}

fn attributes_match(expected: &Element, received: &Element, strict: bool) -> bool {
    let written: Vec<_> = expected
        .attrs()
        .iter()
        .filter(|((ns, name), _)| !(ns.is_none() && name.as_str() == STRICT_ATTR))
        .collect();
    let all_present = written.iter().all(|((ns, name), value)| {
        received
            .attrs()
            .get(*ns, *name)
            .is_some_and(|got| wildcard(value).is_some() || got == *value)
    });
    // minidom keeps `xmlns` declarations out of the attributes, so counting compares the sets.
    all_present && (!strict || received.attrs().len() == written.len())
}

fn text_matches(expected: &Element, received: &Element, strict: bool) -> bool {
    let want = expected.text();
    let want = want.trim();
    let got = received.text();
    let got = got.trim();
    if !want.is_empty() {
        return got == want || (wildcard(want).is_some() && !got.is_empty());
    }
    // An empty strict leaf means "no text"; the scripts never mix text and children.
    let empty_leaf = expected.children().next().is_none();
    !(strict && empty_leaf) || got.is_empty()
}

/// `Some(name)` for a capture, `Some("")` for `{scansion:any}`, `None` for a plain value.
fn wildcard(value: &str) -> Option<&str> {
    if value == ANY_VALUE {
        return Some("");
    }
    value.strip_prefix(CAPTURE)?.strip_suffix('}')
}

/// What the captures in `expected` took from `received`, which it matches.
pub fn capture(expected: &Element, received: &Element, captured: &mut HashMap<String, String>) {
    for ((ns, name), value) in expected.attrs().iter() {
        let Some(var) = wildcard(value).filter(|var| !var.is_empty()) else {
            continue;
        };
        if let Some(got) = received.attrs().get(ns, name) {
            captured.insert(var.to_string(), got.to_string());
        }
    }
    if let Some(var) = wildcard(expected.text().trim()).filter(|var| !var.is_empty()) {
        captured.insert(var.to_string(), received.text().trim().to_string());
    }
    let wanted: Vec<&Element> = expected.children().collect();
    let got: Vec<&Element> = received.children().collect();
    let pairs: Vec<Option<usize>> = if is_strict(expected) {
        (0..wanted.len()).map(Some).collect()
    } else {
        pair_up(&wanted, &got)
    };
    for (w, g) in wanted.iter().zip(pairs) {
        if let Some(g) = g {
            capture(w, got[g], captured);
        }
    }
}

fn children_match(expected: &Element, received: &Element, strict: bool) -> bool {
    let wanted: Vec<&Element> = expected.children().collect();
    let got: Vec<&Element> = received.children().collect();
    if strict {
        wanted.len() == got.len() && wanted.iter().zip(&got).all(|(w, g)| matches(w, g))
    } else {
        pair_up(&wanted, &got).iter().all(Option::is_some)
    }
}

/// Pairs each expected element with a distinct received element it matches, pairing as many as
/// possible: entry `i` is the index in `received` paired with `expected[i]`, if any.
///
/// A greedy first-fit pairing can fail where a pairing exists (a loose expectation taking the
/// only element a tighter one fits), hence augmenting paths (Kuhn's algorithm).
pub fn pair_up(expected: &[&Element], received: &[&Element]) -> Vec<Option<usize>> {
    let fits: Vec<Vec<bool>> = expected
        .iter()
        .map(|wanted| received.iter().map(|got| matches(wanted, got)).collect())
        .collect();
    let mut owner_of_received = vec![None; received.len()];
    for wanted in 0..expected.len() {
        claim(
            wanted,
            &fits,
            &mut owner_of_received,
            &mut vec![false; received.len()],
        );
    }
    let mut partner_of_expected = vec![None; expected.len()];
    for (got, owner) in owner_of_received.iter().enumerate() {
        if let Some(wanted) = owner {
            partner_of_expected[*wanted] = Some(got);
        }
    }
    partner_of_expected
}

/// Finds a received element for `wanted`, moving earlier pairs to other elements if needed.
fn claim(
    wanted: usize,
    fits: &[Vec<bool>],
    owners: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    for got in 0..owners.len() {
        if !fits[wanted][got] || seen[got] {
            continue;
        }
        seen[got] = true;
        if owners[got].is_none_or(|other| claim(other, fits, owners, seen)) {
            owners[got] = Some(wanted);
            return true;
        }
    }
    false
}

/// Removes every `<x xmlns='vcard-temp:x:update'>` from the expected tree: Prosody's client
/// connections add those avatar hashes, they are not MUC behaviour.
pub fn drop_prosody_only(expected: &mut Element) {
    while expected.remove_child("x", VCARD_UPDATE_NS).is_some() {}
    for child in expected.children_mut() {
        drop_prosody_only(child);
    }
}

/// `el` as indented XML, for error messages. Namespaces are shown where they change.
pub fn describe(el: &Element) -> String {
    let mut out = String::new();
    write_element(el, "", 0, &mut out);
    out.pop(); // the last newline
    out
}

fn write_element(el: &Element, parent_ns: &str, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    let name = el.name();
    out.push_str(&format!("{indent}<{name}{}", attributes(el, parent_ns)));
    let text = el.text();
    let text = escape_xml(text.trim());
    if el.children().next().is_none() {
        let end = if text.is_empty() {
            "/>".to_owned()
        } else {
            format!(">{text}</{name}>")
        };
        out.push_str(&end);
        out.push('\n');
        return;
    }
    out.push_str(">\n");
    if !text.is_empty() {
        out.push_str(&format!("{indent}  {text}\n"));
    }
    for child in el.children() {
        write_element(child, &el.ns(), depth + 1, out);
    }
    out.push_str(&format!("{indent}</{name}>\n"));
}

/// The attributes of `el`'s start tag, with an `xmlns` where its namespace differs from its
/// parent's.
fn attributes(el: &Element, parent_ns: &str) -> String {
    let ns = el.ns();
    let mut out = String::new();
    if ns != parent_ns {
        out.push_str(&format!(" xmlns='{}'", escape_xml(&ns)));
    }
    for ((attr_ns, name), value) in el.attrs() {
        let prefix = if *attr_ns == Namespace::XML {
            "xml:"
        } else {
            ""
        };
        out.push_str(&format!(
            " {prefix}{}='{}'",
            name.as_str(),
            escape_xml(value)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::script::parse_stanza;
    use super::*;

    const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

    fn check(expected: &str, received: &str) -> bool {
        matches(
            &parse_stanza(expected).unwrap(),
            &parse_stanza(received).unwrap(),
        )
    }

    fn presence(x: &str) -> String {
        format!("<presence from='room@muc/romeo'>{x}</presence>")
    }

    #[test]
    fn stanzas_match_by_subset() {
        let expected = "<presence from='room@muc/romeo'><status>Hi</status><show/></presence>";
        let received = "<presence from='room@muc/romeo' to='r@l/x' id='1'>\
                        <show>away</show><c xmlns='caps'/><status> Hi </status></presence>";
        assert!(check(expected, received));
        assert!(!check(
            expected,
            "<presence from='room@muc/romeo'><status>Hi</status></presence>"
        ));
        assert!(!check(
            expected,
            "<presence from='room@muc/juliet'><status>Hi</status><show/></presence>"
        ));
        assert!(!check(
            expected,
            "<message from='room@muc/romeo'><status>Hi</status><show/></message>"
        ));
    }

    #[test]
    fn other_namespaces_match_strictly() {
        // A redundant `xmlns` is a declaration, not an attribute to compare.
        let expected = presence(&format!(
            "<x xmlns='{MUC_USER}'><item affiliation='owner'/><status xmlns='{MUC_USER}' code='110'/></x>"
        ));
        let exact = presence(&format!(
            "<x xmlns='{MUC_USER}'><item affiliation='owner'/><status code='110'/></x>"
        ));
        let extra_attr = presence(&format!(
            "<x xmlns='{MUC_USER}'><item affiliation='owner' role='moderator'/><status code='110'/></x>"
        ));
        let extra_child = presence(&format!(
            "<x xmlns='{MUC_USER}'><item affiliation='owner'/><status code='110'/><status code='201'/></x>"
        ));
        let reordered = presence(&format!(
            "<x xmlns='{MUC_USER}'><status code='110'/><item affiliation='owner'/></x>"
        ));
        assert!(check(&expected, &exact));
        assert!(!check(&expected, &extra_attr));
        assert!(!check(&expected, &extra_child));
        assert!(!check(&expected, &reordered));
    }

    #[test]
    fn scansion_strict_overrides_the_namespace_rule() {
        let loose = presence(&format!(
            "<x xmlns='{MUC_USER}' scansion:strict='false'><status code='110'/></x>"
        ));
        let received = presence(&format!(
            "<x xmlns='{MUC_USER}'><item affiliation='owner'/><status code='110'/></x>"
        ));
        assert!(check(&loose, &received));
        let strict_stanza = "<presence scansion:strict='true' from='room@muc/romeo'/>";
        assert!(check(strict_stanza, "<presence from='room@muc/romeo'/>"));
        assert!(!check(
            strict_stanza,
            "<presence from='room@muc/romeo' to='r@l/x'/>"
        ));
    }

    #[test]
    fn a_stanza_child_of_a_strict_element_keeps_the_subset_rule() {
        let expected = "<message><forwarded xmlns='urn:xmpp:forward:0'>\
                        <message xmlns='jabber:client' id='m1'/></forwarded></message>";
        let received = "<message><forwarded xmlns='urn:xmpp:forward:0'>\
                        <message xmlns='jabber:client' id='m1' type='chat'><body>x</body></message>\
                        </forwarded></message>";
        assert!(check(expected, received));
    }

    #[test]
    fn any_value_needs_the_attribute() {
        let expected = "<message><delay xmlns='urn:xmpp:delay' stamp='{scansion:any}'/></message>";
        assert!(check(
            expected,
            "<message><delay xmlns='urn:xmpp:delay' stamp='2024'/></message>"
        ));
        assert!(!check(
            expected,
            "<message><delay xmlns='urn:xmpp:delay'/></message>"
        ));
    }

    #[test]
    fn text_must_match_where_given() {
        let error = |text: &str| {
            format!("<iq type='error'><error type='cancel'><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>{text}</text></error></iq>")
        };
        assert!(check(&error("\n\t\tGone\n"), &error("Gone")));
        assert!(!check(&error("Gone"), &error("Here")));
        // A strict empty element means "no text"; a stanza-namespace one does not care.
        assert!(!check(&error(""), &error("Gone")));
        assert!(check(
            "<message><subject/></message>",
            "<message><subject>Hi</subject></message>"
        ));
    }

    #[test]
    fn children_pair_with_distinct_received_children() {
        let two = "<message><body/><body/></message>";
        assert!(!check(two, "<message><body>a</body></message>"));
        assert!(check(
            two,
            "<message><body>a</body><body>b</body></message>"
        ));
        // First fit would give `a` to the loose <body/>, leaving nothing for <body>a</body>.
        let loose_first = "<message><body/><body>a</body></message>";
        assert!(check(
            loose_first,
            "<message><body>a</body><body>b</body></message>"
        ));
    }

    #[test]
    fn pair_up_reports_unpaired_expectations() {
        let expected = [parse_stanza("<a/>").unwrap(), parse_stanza("<b/>").unwrap()];
        let received = [parse_stanza("<b/>").unwrap(), parse_stanza("<c/>").unwrap()];
        let pairs = pair_up(
            &expected.iter().collect::<Vec<_>>(),
            &received.iter().collect::<Vec<_>>(),
        );
        assert_eq!(pairs, [None, Some(0)]);
    }

    #[test]
    fn drops_vcard_updates_everywhere() {
        let mut expected = parse_stanza(
            "<presence><x xmlns='vcard-temp:x:update'><photo/></x>\
             <wrap xmlns='w'><x xmlns='vcard-temp:x:update'/><x xmlns='other'/></wrap></presence>",
        )
        .unwrap();
        drop_prosody_only(&mut expected);
        assert_eq!(describe(&expected), "<presence xmlns='jabber:client'>\n  <wrap xmlns='w'>\n    <x xmlns='other'/>\n  </wrap>\n</presence>");
    }

    #[test]
    fn describes_indented_xml() {
        let stanza = parse_stanza(
            "<message from='a&amp;b' xml:lang='en'><body>1 &lt; 2</body>\
             <x xmlns='muc#user'><item role='none'/></x></message>",
        )
        .unwrap();
        let expected = "\
<message xmlns='jabber:client' from='a&amp;b' xml:lang='en'>
  <body>1 &lt; 2</body>
  <x xmlns='muc#user'>
    <item role='none'/>
  </x>
</message>";
        assert_eq!(describe(&stanza), expected);
    }
}
