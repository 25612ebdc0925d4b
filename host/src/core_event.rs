//! What the core thread is asked to do: the events every source (client connections, the
//! component link, the control socket, the HTTP server's pages and metrics) sends it, and the replies it
//! gives. A leaf: those sources and the core both look down to it.

use jid::FullJid;
use minidom::Element;

use crate::extensions::{Change, Entry};
use crate::router::SessionSink;
use crate::runtime::{CompiledPlugin, Prepared, Status, SwapReport};
use crate::storage::lease::LeaseCounts;

pub enum CoreEvent {
    /// A client bound `jid`; stanzas for it go to `sink`.
    Bind {
        jid: FullJid,
        /// Unique per connection: a later session may take over the same full JID.
        session: u64,
        sink: Box<dyn SessionSink>,
    },
    FromClient {
        from: FullJid,
        /// The connection it came on: a stanza still in flight from a session that another
        /// took over is not the newer session's.
        session: u64,
        stanza: Element,
    },
    /// The session ended, cleanly or not.
    Unbind { jid: FullJid, session: u64 },
    /// A stanza from the server at the other end of the component link.
    FromComponent(Element),
    /// A stanza the host sends itself (the answer to its ad-hoc command).
    FromHost(Element),
    /// Hot swap: hand the service to a prepared plugin between two stanzas (see
    /// [`crate::swap`]); the answer goes back once the swap's writes are durable.
    Swap {
        prepared: Box<Prepared>,
        reply: Reply<Result<SwapReport, String>>,
    },
    /// An operator's change to the room extensions' catalog; the answer goes back once its
    /// writes are durable.
    Extensions {
        change: Box<Change>,
        reply: Reply<Result<String, String>>,
    },
    /// `ext list`: the installed extensions, each with why it did not load, if it did not.
    ExtensionList {
        reply: Reply<Vec<(Entry, Option<String>)>>,
    },
    /// What `ctl status` shows.
    Status { reply: Reply<Status> },
    /// The plugin the current one replaced, for a rollback.
    Previous {
        reply: Reply<Option<CompiledPlugin>>,
    },
    /// The gauges a metrics scrape shows, read by the core from what it holds.
    Gauges { reply: Reply<Gauges> },
    /// An iq the host itself asks the MUC (a web page's disco#info of a room): the MUC's
    /// answer comes back here instead of going to anyone; none while the service cannot ask.
    AskMuc {
        iq: Element,
        reply: Reply<Option<Element>>,
    },
    /// Stop: the plugin says goodbye (status 332), the last batch is synced and delivered, every
    /// stream is closed.
    Shutdown,
}

pub type Reply<T> = tokio::sync::oneshot::Sender<T>;

/// What the service holds right now, as a metrics scrape shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Rooms in memory.
    pub rooms: u64,
    /// Occupants of the rooms in memory.
    pub occupants: u64,
    /// This instance's room leases, when it shares its store with others.
    pub leases: Option<LeaseCounts>,
}
