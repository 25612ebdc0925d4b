//! The routing core, independent of sockets: client sessions, delivery to full and bare JIDs,
//! and the directed presence each session sent to MUC rooms (so a session that ends without a
//! word leaves every room it joined). The test host and the network listeners share it.
//! Guests' sessions (at the guest domain) are local sessions like accounts'; a guest's JID
//! lives exactly as long as its session.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use xmpp_parsers::stream_error::DefinedCondition;

use crate::outbound::Outbound;

/// Where a session's stanzas go: a socket writer, or a queue in the test host.
pub trait SessionSink: Send {
    fn deliver(&self, stanza: Outbound);
    /// The server ends the session with a stream error (`conflict` when another session took
    /// its resource, `system-shutdown` when stopping).
    fn close(&self, _condition: DefinedCondition) {}
}

/// A sink that queues stanzas in memory: the test host reads them from the other side.
#[derive(Clone, Default)]
pub struct QueueSink(Arc<Mutex<VecDeque<Outbound>>>);

impl SessionSink for QueueSink {
    fn deliver(&self, stanza: Outbound) {
        self.0.lock().expect("queue lock").push_back(stanza);
    }
}

impl QueueSink {
    pub fn pop(&self) -> Option<Element> {
        self.pop_outbound().map(|stanza| stanza.element())
    }

    /// The next stanza as the service handed it over (a broadcast's copies still shared).
    pub fn pop_outbound(&self) -> Option<Outbound> {
        self.0.lock().expect("queue lock").pop_front()
    }
}

struct Session {
    /// Tells this session from a later one bound to the same full JID.
    id: u64,
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
    /// A local user's bare or full JID (an account's or a guest's).
    User(Jid),
    /// Anything else: no route.
    Unroutable,
}

pub struct Router {
    domain: String,
    muc_domain: String,
    /// Where guests' sessions are, if the service has guests.
    guest_domain: Option<String>,
    sessions: BTreeMap<FullJid, Session>,
    /// Full JIDs bound per bare JID, for delivery to a bare JID.
    resources: HashMap<BareJid, BTreeSet<FullJid>>,
    /// In component mode, the server the link leads to: it takes every stanza not for a local
    /// session.
    upstream: Option<Box<dyn SessionSink>>,
}

impl Router {
    pub fn new(domain: &str, muc_domain: &str) -> Router {
        Router {
            domain: domain.to_string(),
            muc_domain: muc_domain.to_string(),
            guest_domain: None,
            sessions: BTreeMap::new(),
            resources: HashMap::new(),
            upstream: None,
        }
    }

    /// Serves guests' sessions at `guest_domain` too.
    pub fn with_guest_domain(mut self, guest_domain: Option<String>) -> Router {
        self.guest_domain = guest_domain;
        self
    }

    /// A router for component mode: no local users; everything leaves through `upstream`.
    pub fn component(muc_domain: &str, upstream: Box<dyn SessionSink>) -> Router {
        let mut router = Router::new("", muc_domain);
        router.upstream = Some(upstream);
        router
    }

    /// Ends every session (the service is stopping).
    pub fn close_all(&mut self, condition: DefinedCondition) {
        for session in self.sessions.values() {
            session.sink.close(condition.clone());
        }
        if let Some(upstream) = &self.upstream {
            upstream.close(condition);
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether a stanza to `to` (a local user) has anywhere to go: a bare JID is reachable when
    /// any of its resources is bound.
    pub fn is_reachable(&self, to: &Jid) -> bool {
        match to.clone().try_into_full() {
            Ok(full) => self.sessions.contains_key(&full),
            Err(bare) => self.resources.get(&bare).is_some_and(|set| !set.is_empty()),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn muc_domain(&self) -> &str {
        &self.muc_domain
    }

    /// Whether `domain` is this server's: its accounts' or its guests'.
    pub fn is_local(&self, domain: &str) -> bool {
        (!self.domain.is_empty() && domain == self.domain)
            || self.guest_domain.as_deref() == Some(domain)
    }

    /// Whether `jid` is a guest's: it has no account, so no roster or other account data.
    pub fn is_guest(&self, jid: &FullJid) -> bool {
        self.guest_domain.as_deref() == Some(jid.domain().as_str())
    }

    /// Starts a session; a session already bound to the same full JID is replaced (RFC 6120
    /// §7.7.2.2 lets the server end the older one), and its rooms are returned for leaving.
    pub fn bind(&mut self, jid: FullJid, sink: Box<dyn SessionSink>) -> Vec<Element> {
        self.bind_session(jid, 0, sink)
    }

    /// As [`Router::bind`], naming the session so that its end can be told from the end of an
    /// older session it replaced.
    pub fn bind_session(
        &mut self,
        jid: FullJid,
        id: u64,
        sink: Box<dyn SessionSink>,
    ) -> Vec<Element> {
        let left = match self.sessions.get(&jid) {
            Some(older) => {
                older.sink.close(DefinedCondition::Conflict);
                self.unbind(&jid)
            }
            None => Vec::new(),
        };
        self.resources
            .entry(jid.to_bare())
            .or_default()
            .insert(jid.clone());
        self.sessions.insert(
            jid,
            Session {
                id,
                sink,
                joined: BTreeSet::new(),
            },
        );
        left
    }

    /// Ends a session: returns an unavailable presence from it to every room it was in, for the
    /// MUC service to handle as if the client had sent them.
    /// Ends session `id` of `jid`, if that is still the one bound (a newer session may have
    /// taken over the JID).
    pub fn unbind_session(&mut self, jid: &FullJid, id: u64) -> Vec<Element> {
        match self.sessions.get(jid) {
            Some(session) if session.id == id => self.unbind(jid),
            _ => Vec::new(),
        }
    }

    pub fn unbind(&mut self, jid: &FullJid) -> Vec<Element> {
        let Some(session) = self.sessions.remove(jid) else {
            return Vec::new();
        };
        let bare = jid.to_bare();
        if let Some(set) = self.resources.get_mut(&bare) {
            set.remove(jid);
            if set.is_empty() {
                self.resources.remove(&bare);
            }
        }
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

    /// Whether `jid` is bound to session `id` (not to a newer session that replaced it).
    pub fn is_session(&self, jid: &FullJid, id: u64) -> bool {
        self.sessions
            .get(jid)
            .is_some_and(|session| session.id == id)
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
        } else if !self.is_local(domain) {
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

    /// Delivers to a full JID's session, or to every session of a bare JID; anything for
    /// another domain goes upstream when there is one. Returns false when nothing took it.
    pub fn deliver(&self, stanza: Outbound) -> bool {
        let Some(to) = stanza.to() else {
            return false;
        };
        if !self.is_local(to.domain().as_str()) {
            return match &self.upstream {
                Some(upstream) => {
                    upstream.deliver(stanza);
                    true
                }
                None => false,
            };
        }
        match to.try_as_full() {
            Ok(full) => match self.sessions.get(full) {
                Some(session) => {
                    session.sink.deliver(stanza);
                    true
                }
                None => false,
            },
            Err(bare) => {
                let Some(resources) = self.resources.get(bare) else {
                    return false;
                };
                for full in resources {
                    self.sessions[full].sink.deliver(stanza.clone());
                }
                true
            }
        }
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
    fn the_end_of_a_replaced_session_leaves_its_successor_bound() {
        let mut router = Router::new("localhost", "conference.localhost");
        let jid: FullJid = "romeo@localhost/phone".parse().unwrap();
        router.bind_session(jid.clone(), 1, Box::new(QueueSink::default()));
        router.bind_session(jid.clone(), 2, Box::new(QueueSink::default()));
        router.unbind_session(&jid, 1);
        assert!(router.is_bound(&jid));
        router.unbind_session(&jid, 2);
        assert!(!router.is_bound(&jid));
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
        assert!(router.deliver(message("romeo@localhost/phone").into()));
        assert!(phone.pop().is_some() && laptop.pop().is_none());
        assert!(router.deliver(message("romeo@localhost").into()));
        assert!(phone.pop().is_some() && laptop.pop().is_some());
        assert!(other.pop().is_none());
        assert!(!router.deliver(message("romeo@localhost/gone").into()));
    }

    #[test]
    fn guests_are_local_while_their_session_lasts() {
        let mut router = Router::new("localhost", "conference.localhost")
            .with_guest_domain(Some("guest.localhost".into()));
        let guest: FullJid = "0123abcd@guest.localhost/web".parse().unwrap();
        let to = |jid: &str| router.destination(Some(&jid.parse().unwrap()));
        assert!(matches!(
            to("0123abcd@guest.localhost/web"),
            Destination::User(_)
        ));
        assert_eq!(to("guest.localhost"), Destination::Server);
        let sink = session(&mut router, guest.as_str());
        assert!(router.is_guest(&guest));
        assert!(!router.is_guest(&"romeo@localhost/phone".parse().unwrap()));
        let message = |to: &str| -> Outbound {
            format!("<message xmlns='jabber:client' to='{to}'/>")
                .parse::<Element>()
                .unwrap()
                .into()
        };
        assert!(router.deliver(message(guest.as_str())));
        assert!(router.deliver(message("0123abcd@guest.localhost")));
        assert_eq!((sink.pop().is_some(), sink.pop().is_some()), (true, true));
        router.unbind(&guest);
        assert!(!router.is_reachable(&Jid::from(guest.clone())));
        assert!(!router.deliver(message(guest.as_str())));
        // Without guests the domain is someone else's.
        let router = Router::new("localhost", "conference.localhost");
        assert_eq!(
            router.destination(Some(&"x@guest.localhost".parse().unwrap())),
            Destination::Unroutable
        );
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
