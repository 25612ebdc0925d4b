//! The MUC service: entry points the binding layer calls, and dispatch of inbound stanzas.

use jid::Jid;
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::errors;
use crate::host::{Envelope, Fault, Host, StanzaKind};
use crate::join;

pub const NAME: &str = "muc";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The version of `wit/muc-plugin.wit` this plugin is built against.
pub const CONTRACT: &str = "1.0.0";

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The MUC service's domain.
    pub service: String,
    /// Service administrators' bare JIDs: owners of every room.
    pub admins: Vec<String>,
}

/// One instance's view of the service. Holds no room state: that lives in the host's store.
pub struct Muc {
    pub settings: Settings,
}

/// An inbound stanza, parsed once.
pub struct Inbound<'a> {
    pub envelope: &'a Envelope,
    pub element: Element,
    /// The sender, parsed and normalised.
    pub from: Jid,
    /// The addressee, parsed and normalised.
    pub to: Jid,
}

impl Muc {
    pub fn new(settings: Settings) -> Muc {
        Muc { settings }
    }

    pub fn handle_stanza(
        &self,
        host: &mut dyn Host,
        envelope: &Envelope,
        xml: &str,
    ) -> Result<(), Fault> {
        let element: Element = xml.parse()?;
        let (Ok(from), Ok(to)) = (Jid::new(&envelope.from), Jid::new(&envelope.to)) else {
            return errors::reply(
                host,
                envelope,
                kind_name(envelope.kind),
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                None,
            );
        };
        let inbound = Inbound {
            envelope,
            element,
            from,
            to,
        };
        match (envelope.kind, inbound.to.resource().is_some()) {
            (StanzaKind::Presence, true) => join::handle_presence(self, host, &inbound),
            _ => errors::reply(
                host,
                envelope,
                kind_name(envelope.kind),
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                None,
            ),
        }
    }

    pub fn on_timer(&self, host: &mut dyn Host, key: &str) -> Result<(), Fault> {
        host.log(crate::host::Level::Warn, &format!("unknown timer {key}"));
        Ok(())
    }

    /// Layout 1 is the first: there is nothing older to migrate from.
    pub fn upgrade(&self, _host: &mut dyn Host, _from_version: &str) -> Result<(), Fault> {
        Ok(())
    }

    pub fn on_shutdown(&self, _host: &mut dyn Host) -> Result<(), Fault> {
        Ok(())
    }

    pub fn is_service_admin(&self, bare_jid: &str) -> bool {
        self.settings.admins.iter().any(|admin| admin == bare_jid)
    }
}

pub fn kind_name(kind: StanzaKind) -> &'static str {
    match kind {
        StanzaKind::Message => "message",
        StanzaKind::Presence => "presence",
        StanzaKind::Iq => "iq",
    }
}
