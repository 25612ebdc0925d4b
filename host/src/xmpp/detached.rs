//! A resumable session whose connection dropped (XEP-0198 §5): it stays bound, so its rooms see
//! nothing, and what the core delivers meanwhile is kept with the unacknowledged stanzas. A
//! stream that resumes it in time takes it over; when the time runs out (or more is kept than a
//! connected session may have waiting), the session ends: what the client never acknowledged is
//! bounced (RFC 6120 §10.4.3) and the core unbinds it, which is when its rooms see it leave.

use std::sync::Arc;

use minidom::Element;
use tokio::sync::mpsc;

use super::c2s::{C2s, MAX_QUEUED_STANZAS};
use super::delivery::{Outgoing, Parked};
use super::resumption::Claim;
use crate::core_event::CoreEvent;
use crate::stanza_error::{error_reply, DefinedCondition, ErrorType};

/// Waits for a stream to resume `parked` until the resumption time runs out.
pub async fn wait(c2s: Arc<C2s>, mut parked: Parked, mut claims: mpsc::UnboundedReceiver<Claim>) {
    let expiry = tokio::time::sleep(c2s.resumption.timeout());
    tokio::pin!(expiry);
    let reason = loop {
        tokio::select! {
            _ = &mut expiry => break "not resumed in time".to_string(),
            item = parked.queued.recv() => match item {
                Some(Outgoing::Stanza(stanza)) => {
                    parked.backlog.written(1);
                    let mut counters = parked.managed.counters.lock().expect("counters lock");
                    counters.sent(stanza);
                    if counters.unacked_len() > MAX_QUEUED_STANZAS {
                        break format!("more than {MAX_QUEUED_STANZAS} stanzas kept for it");
                    }
                }
                // The server ends it: another session bound its resource, or the service stops.
                Some(Outgoing::Error(error)) => break format!("ended by the server: {error}"),
                // Answers for the connection that is gone.
                Some(_) => {}
                None => break "its queue closed".to_string(),
            },
            claim = claims.recv() => {
                let Some(Claim { h, answer }) = claim else {
                    break "no longer resumable".to_string();
                };
                let acknowledged = parked.managed.counters.lock().expect("counters lock").acknowledge(h);
                match acknowledged {
                    Err(too_high) => {
                        let _ = answer.send(Err(too_high));
                    }
                    Ok(()) => match answer.send(Ok(parked)) {
                        Ok(()) => return,
                        // The claiming stream is gone already: keep waiting.
                        Err(Ok(back)) => parked = back,
                        Err(Err(_)) => unreachable!("sent Ok"),
                    },
                }
            }
        }
    };
    end(&c2s, parked, &reason).await;
}

/// Ends a parked session for good.
async fn end(c2s: &C2s, parked: Parked, reason: &str) {
    if let Some(id) = &parked.managed.id {
        c2s.resumption.remove(id);
    }
    let unacked = parked
        .managed
        .counters
        .lock()
        .expect("counters lock")
        .take_unacked();
    let ours: Vec<&str> = std::iter::once(c2s.domain.as_str())
        .chain(c2s.guest_domain.as_deref())
        .collect();
    for stanza in unacked {
        if let Some(bounce) = bounce(&stanza.element(), &ours) {
            let _ = parked
                .core
                .send(CoreEvent::FromClient {
                    from: parked.jid.clone(),
                    session: parked.session,
                    stanza: bounce,
                })
                .await;
        }
    }
    let _ = parked
        .core
        .send(CoreEvent::Unbind {
            jid: parked.jid.clone(),
            session: parked.session,
        })
        .await;
    tracing::info!(jid = %parked.jid, reason, "detached session ended");
}

/// The answer to a stanza the client never acknowledged, sent back to its sender as if the
/// client had answered: messages and requests from the server's users (at one of `ours`) get
/// `recipient-unavailable`. Errors, results and presences get none; nor does what came from
/// rooms: a room hears its occupant leave instead (an error would make it a kick).
fn bounce(stanza: &Element, ours: &[&str]) -> Option<Element> {
    let from_ours = stanza
        .attr("from")
        .and_then(|from| jid::Jid::new(from).ok())
        .is_some_and(|from| ours.contains(&from.domain().as_str()));
    if !from_ours {
        return None;
    }
    let type_ = stanza.attr("type");
    let answered = match stanza.name() {
        "message" => !matches!(type_, Some("error" | "groupchat")),
        "iq" => matches!(type_, Some("get" | "set")),
        _ => false,
    };
    answered.then(|| {
        error_reply(
            stanza,
            ErrorType::Wait,
            DefinedCondition::RecipientUnavailable,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_bounced() {
        let stanza = |xml: &str| -> Element { xml.parse().unwrap() };
        let ours = ["localhost", "guest.localhost"];
        let bounced = bounce(
            &stanza(
                "<message xmlns='jabber:client' type='chat' id='1' from='juliet@localhost/x' to='romeo@localhost/r'><body>hi</body></message>",
            ),
            &ours,
        )
        .expect("a chat message is bounced");
        assert_eq!(bounced.attr("to"), Some("juliet@localhost/x"));
        assert_eq!(bounced.attr("type"), Some("error"));
        assert!(String::from(&bounced).contains("recipient-unavailable"));
        let request = "<iq xmlns='jabber:client' type='get' id='2' from='abc@guest.localhost/x'/>";
        assert!(bounce(&stanza(request), &ours).is_some());
        for not_bounced in [
            "<message xmlns='jabber:client' type='chat' from='room@muc.localhost/nick'/>",
            "<message xmlns='jabber:client' type='groupchat' from='room@muc.localhost/nick'/>",
            "<message xmlns='jabber:client' type='error' from='a@localhost'/>",
            "<iq xmlns='jabber:client' type='result' id='3' from='a@localhost'/>",
            "<iq xmlns='jabber:client' type='error' id='3' from='a@localhost'/>",
            "<presence xmlns='jabber:client' from='a@localhost/x'/>",
        ] {
            assert!(
                bounce(&stanza(not_bounced), &ours).is_none(),
                "{not_bounced}"
            );
        }
    }
}
