//! The routing core, independent of sockets: client sessions, delivery to full and bare JIDs,
//! and the directed presence each session sent to MUC rooms (so a session that ends without a
//! word leaves every room it joined). The test host and the network listeners share it.

use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;

/// Where a session's stanzas go: a socket writer, or a queue in the test host.
pub trait SessionSink: Send {
    fn deliver(&self, stanza: Element);
}

/// A sink that queues stanzas in memory: the test host reads them from the other side.
#[derive(Clone, Default)]
pub struct QueueSink(pub Arc<Mutex<VecDeque<Element>>>);

impl SessionSink for QueueSink {
    fn deliver(&self, stanza: Element) {
        self.0.lock().expect("queue lock").push_back(stanza);
    }
}

impl QueueSink {
    pub fn pop(&self) -> Option<Element> {
        self.0.lock().expect("queue lock").pop_front()
    }
}

struct Session {
    sink: Box<dyn SessionSink>,
    /// Occupant JIDs (`room@service/nick`) this session sent available presence to.
    joined: BTreeSet<String>,
}

/// Where a stanza's `to` points.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    /// The MUC service or one of its rooms: the plugin.
    Muc,
    /// The server itself (its domain, or no `to`).
    Server,
    /// A local user's bare or full JID.
    User(Jid),
    /// Anything else: no route.
    Unroutable,
}

pub struct Router {
    domain: String,
    muc_domain: String,
    sessions: BTreeMap<FullJid, Session>,
}

impl Router {
    pub fn new(domain: &str, muc_domain: &str) -> Router {
        Router {
            domain: domain.to_string(),
            muc_domain: muc_domain.to_string(),
            sessions: BTreeMap::new(),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn muc_domain(&self) -> &str {
        &self.muc_domain
    }

    /// Starts a session; a session already bound to the same full JID is replaced (RFC 6120
    /// §7.7.2.2 lets the server end the older one), and its rooms are returned for leaving.
    pub fn bind(&mut self, jid: FullJid, sink: Box<dyn SessionSink>) -> Vec<Element> {
        let left = self.unbind(&jid);
        self.sessions.insert(
            jid,
            Session {
                sink,
                joined: BTreeSet::new(),
            },
        );
        left
    }

    /// Ends a session: returns an unavailable presence from it to every room it was in, for the
    /// MUC service to handle as if the client had sent them.
    pub fn unbind(&mut self, jid: &FullJid) -> Vec<Element> {
        let Some(session) = self.sessions.remove(jid) else {
            return Vec::new();
        };
        session
            .joined
            .into_iter()
            .map(|occupant| {
                Element::builder("presence", "jabber:client")
                    .attr(minidom::rxml::xml_ncname!("type").into(), "unavailable")
                    .attr(minidom::rxml::xml_ncname!("from").into(), jid.to_string())
                    .attr(minidom::rxml::xml_ncname!("to").into(), occupant)
                    .build()
            })
            .collect()
    }

    pub fn is_bound(&self, jid: &FullJid) -> bool {
        self.sessions.contains_key(jid)
    }

    pub fn destination(&self, to: Option<&Jid>) -> Destination {
        let Some(to) = to else {
            return Destination::Server;
        };
        let domain = to.domain().as_str();
        if domain == self.muc_domain {
            Destination::Muc
        } else if domain != self.domain {
            Destination::Unroutable
        } else if to.node().is_none() {
            Destination::Server
        } else {
            Destination::User(to.clone())
        }
    }

    /// Tracks directed presence from `from` to a MUC occupant JID (RFC 6121 §4.6).
    pub fn note_directed_presence(&mut self, from: &FullJid, to: &Jid, presence: &Element) {
        let Some(session) = self.sessions.get_mut(from) else {
            return;
        };
        match presence.attr("type") {
            None => {
                session.joined.insert(to.to_string());
            }
            Some("unavailable") => {
                session.joined.remove(&to.to_string());
            }
            Some(_) => {}
        }
    }

    /// Delivers to a full JID's session, or to every session of a bare JID. Returns false when
    /// no session took it.
    pub fn deliver(&self, stanza: Element) -> bool {
        let Some(to) = stanza.attr("to").and_then(|to| Jid::new(to).ok()) else {
            return false;
        };
        match to.try_into_full() {
            Ok(full) => match self.sessions.get(&full) {
                Some(session) => {
                    session.sink.deliver(stanza);
                    true
                }
                None => false,
            },
            Err(bare) => {
                let sessions: Vec<&Session> = self.sessions_of(&bare).collect();
                for session in &sessions {
                    session.sink.deliver(stanza.clone());
                }
                !sessions.is_empty()
            }
        }
    }

    fn sessions_of<'a>(&'a self, bare: &'a BareJid) -> impl Iterator<Item = &'a Session> + 'a {
        self.sessions
            .iter()
            .filter(move |(jid, _)| jid.to_bare() == *bare)
            .map(|(_, session)| session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(router: &mut Router, jid: &str) -> QueueSink {
        let sink = QueueSink::default();
        router.bind(jid.parse().unwrap(), Box::new(sink.clone()));
        sink
    }

    fn presence(to: &str, type_: Option<&str>) -> Element {
        let type_ = type_.map(|t| format!(" type='{t}'")).unwrap_or_default();
        format!("<presence xmlns='jabber:client' to='{to}'{type_}/>")
            .parse()
            .unwrap()
    }

    fn note(router: &mut Router, from: &str, to: &str, type_: Option<&str>) {
        let to: Jid = to.parse().unwrap();
        router.note_directed_presence(
            &from.parse().unwrap(),
            &to,
            &presence(&to.to_string(), type_),
        );
    }

    #[test]
    fn a_session_that_ends_leaves_the_rooms_it_is_still_in() {
        let mut router = Router::new("localhost", "conference.localhost");
        session(&mut router, "juliet@localhost/balcony");
        note(
            &mut router,
            "juliet@localhost/balcony",
            "garden@conference.localhost/juliet",
            None,
        );
        note(
            &mut router,
            "juliet@localhost/balcony",
            "tomb@conference.localhost/juliet",
            None,
        );
        note(
            &mut router,
            "juliet@localhost/balcony",
            "tomb@conference.localhost/juliet",
            Some("unavailable"),
        );
        let left = router.unbind(&"juliet@localhost/balcony".parse().unwrap());
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0].attr("to"),
            Some("garden@conference.localhost/juliet")
        );
        assert_eq!(left[0].attr("from"), Some("juliet@localhost/balcony"));
        assert_eq!(left[0].attr("type"), Some("unavailable"));
        assert!(router
            .unbind(&"juliet@localhost/balcony".parse().unwrap())
            .is_empty());
    }

    #[test]
    fn rebinding_a_full_jid_ends_the_older_session() {
        let mut router = Router::new("localhost", "conference.localhost");
        session(&mut router, "romeo@localhost/phone");
        note(
            &mut router,
            "romeo@localhost/phone",
            "garden@conference.localhost/romeo",
            None,
        );
        let left = router.bind(
            "romeo@localhost/phone".parse().unwrap(),
            Box::new(QueueSink::default()),
        );
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn delivery_to_a_full_jid_reaches_that_session_and_to_a_bare_jid_every_session() {
        let mut router = Router::new("localhost", "conference.localhost");
        let phone = session(&mut router, "romeo@localhost/phone");
        let laptop = session(&mut router, "romeo@localhost/laptop");
        let other = session(&mut router, "mercutio@localhost/x");
        let message = |to: &str| -> Element {
            format!("<message xmlns='jabber:client' to='{to}'/>")
                .parse()
                .unwrap()
        };
        assert!(router.deliver(message("romeo@localhost/phone")));
        assert!(phone.pop().is_some() && laptop.pop().is_none());
        assert!(router.deliver(message("romeo@localhost")));
        assert!(phone.pop().is_some() && laptop.pop().is_some());
        assert!(other.pop().is_none());
        assert!(!router.deliver(message("romeo@localhost/gone")));
    }

    #[test]
    fn destinations() {
        let router = Router::new("localhost", "conference.localhost");
        let to = |jid: &str| router.destination(Some(&jid.parse().unwrap()));
        assert_eq!(router.destination(None), Destination::Server);
        assert_eq!(to("localhost"), Destination::Server);
        assert_eq!(to("room@conference.localhost/nick"), Destination::Muc);
        assert_eq!(to("conference.localhost"), Destination::Muc);
        assert!(matches!(to("juliet@localhost"), Destination::User(_)));
        assert_eq!(to("someone@elsewhere.example"), Destination::Unroutable);
    }
}
