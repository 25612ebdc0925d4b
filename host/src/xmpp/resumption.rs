//! The resumable sessions (XEP-0198 §5): each id the server handed out with `<enabled
//! resume='true'/>` leads to whoever holds that session now, a live connection or a parked
//! session waiting out its resumption time. A new stream claims it by id and `h`; the holder
//! checks `h` against its counts and hands the session over. Only the account that enabled it
//! may claim it. Ids are removed when their session ends, so there are never more entries than
//! bound sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jid::BareJid;
use tokio::sync::{mpsc, oneshot};

use super::delivery::Parked;
use super::stream_management::TooHigh;

/// Longest a claim waits for the holder to let the session go (it stops its writer first).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// A new stream asking for a session, with the `h` it says it handled.
pub struct Claim {
    pub h: u32,
    pub answer: oneshot::Sender<Result<Parked, TooHigh>>,
}

/// Why a claim got no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such id for this account (never given, another account's, or its session ended):
    /// `<failed>` with `item-not-found`.
    Unknown,
    /// The `h` acknowledges more than the session sent.
    TooHigh(TooHigh),
}

pub struct Resumption {
    /// How long a dropped session waits to be resumed; zero: resumption is not offered.
    timeout: Duration,
    holders: Mutex<HashMap<String, Holder>>,
}

struct Holder {
    owner: BareJid,
    claims: mpsc::UnboundedSender<Claim>,
}

impl Resumption {
    pub fn new(timeout: Duration) -> Resumption {
        Resumption {
            timeout,
            holders: Mutex::new(HashMap::new()),
        }
    }

    pub fn offered(&self) -> bool {
        !self.timeout.is_zero()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new resumable session of `owner`: its id, and where claims on it arrive.
    pub fn register(&self, owner: BareJid) -> (String, mpsc::UnboundedReceiver<Claim>) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let claims = self.hold(&id, owner);
        (id, claims)
    }

    /// The caller holds session `id` from now on (it has just resumed it).
    pub fn hold(&self, id: &str, owner: BareJid) -> mpsc::UnboundedReceiver<Claim> {
        let (claims, received) = mpsc::unbounded_channel();
        self.holders
            .lock()
            .expect("resumption lock")
            .insert(id.to_string(), Holder { owner, claims });
        received
    }

    /// Session `id` ended for good.
    pub fn remove(&self, id: &str) {
        self.holders.lock().expect("resumption lock").remove(id);
    }

    /// Takes session `id` for a new stream of `owner` that handled `h` of its stanzas.
    pub async fn claim(&self, id: &str, owner: &BareJid, h: u32) -> Result<Parked, Refused> {
        let (answer, answered) = oneshot::channel();
        {
            let holders = self.holders.lock().expect("resumption lock");
            let holder = holders
                .get(id)
                .filter(|holder| &holder.owner == owner)
                .ok_or(Refused::Unknown)?;
            holder
                .claims
                .send(Claim { h, answer })
                .map_err(|_| Refused::Unknown)?;
        }
        match tokio::time::timeout(HANDOVER_TIMEOUT, answered).await {
            Ok(Ok(Ok(parked))) => Ok(parked),
            Ok(Ok(Err(too_high))) => Err(Refused::TooHigh(too_high)),
            // The session ended meanwhile, or its holder did not let go in time.
            Ok(Err(_)) | Err(_) => Err(Refused::Unknown),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.holders.lock().expect("resumption lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_owner_claims_a_session_and_only_while_it_is_held() {
        let resumption = Resumption::new(Duration::from_secs(300));
        let romeo: BareJid = "romeo@localhost".parse().unwrap();
        let juliet: BareJid = "juliet@localhost".parse().unwrap();
        let (id, mut claims) = resumption.register(romeo.clone());
        assert_eq!(
            resumption.claim(&id, &juliet, 0).await.err(),
            Some(Refused::Unknown)
        );
        assert_eq!(
            resumption.claim("no-such-id", &romeo, 0).await.err(),
            Some(Refused::Unknown)
        );
        // The holder refuses an h too high; the claim says so.
        let holder = tokio::spawn(async move {
            let claim = claims.recv().await.unwrap();
            let too_high = TooHigh {
                h: claim.h,
                sent: 0,
            };
            let _ = claim.answer.send(Err(too_high));
            claims
        });
        assert_eq!(
            resumption.claim(&id, &romeo, 5).await.err(),
            Some(Refused::TooHigh(TooHigh { h: 5, sent: 0 }))
        );
        drop(holder.await.unwrap());
        // A holder that is gone answers nothing.
        assert_eq!(
            resumption.claim(&id, &romeo, 0).await.err(),
            Some(Refused::Unknown)
        );
        resumption.remove(&id);
        assert_eq!(resumption.len(), 0);
    }
}
