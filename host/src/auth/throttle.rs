//! The failed-authentication throttle: after a few wrong passwords for one account, or from one
//! address, further attempts are refused (`temporary-auth-failure`) for a time that doubles with
//! each further failure, up to a cap. A success clears the account's record.
//!
//! Memory is bounded whatever an attacker rotates (accounts or addresses): each table holds at
//! most [`MAX_RECORDS`] records, forgets one with no failure for [`FORGET_AFTER`], and when full
//! drops the one whose last failure is oldest. IPv6 addresses count by their /64 prefix, since
//! one subscriber usually holds a whole /64.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jid::BareJid;

/// Wrong passwords for one account before its first lockout.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failures from one address (any accounts) before its first lockout: higher than an account's,
/// since several people may share an address.
pub const ADDRESS_FREE_FAILURES: u32 = 10;
/// The first lockout; each further failure doubles it.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(5);
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// A record with no failure for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Records kept per table (accounts, addresses): about 100 bytes each (up to about 1 KB for the
/// longest account names).
pub const MAX_RECORDS: usize = 10_000;

/// Shared by every client connection.
pub struct AuthThrottle {
    tables: Mutex<Tables>,
}

struct Tables {
    accounts: Failures<BareJid>,
    addresses: Failures<IpAddr>,
}

impl Default for AuthThrottle {
    fn default() -> AuthThrottle {
        AuthThrottle::new(MAX_RECORDS)
    }
}

impl AuthThrottle {
    pub fn new(max_records: usize) -> AuthThrottle {
        AuthThrottle {
            tables: Mutex::new(Tables {
                accounts: Failures::new(ACCOUNT_FREE_FAILURES, max_records),
                addresses: Failures::new(ADDRESS_FREE_FAILURES, max_records),
            }),
        }
    }

    /// How long an attempt from `address` (for `account`, once the client has named one) must
    /// wait; None when it may go ahead.
    pub fn wait(
        &self,
        address: IpAddr,
        account: Option<&BareJid>,
        now: Instant,
    ) -> Option<Duration> {
        let tables = self.tables.lock().expect("throttle lock");
        let by_address = tables.addresses.wait(&per_subscriber(address), now);
        let by_account = account.and_then(|account| tables.accounts.wait(account, now));
        by_address.max(by_account)
    }

    /// A wrong password (or unknown account: counted alike, so that the throttle does not tell
    /// which accounts exist).
    pub fn failed(&self, address: IpAddr, account: Option<&BareJid>, now: Instant) {
        let mut tables = self.tables.lock().expect("throttle lock");
        tables.addresses.failed(per_subscriber(address), now);
        if let Some(account) = account {
            tables.accounts.failed(account.clone(), now);
        }
    }

    /// The account's record is cleared. Its address's is not: an attacker's own account must
    /// not wash the address it guesses other accounts' passwords from.
    pub fn succeeded(&self, account: &BareJid) {
        self.tables
            .lock()
            .expect("throttle lock")
            .accounts
            .forget(account);
    }

    #[cfg(test)]
    fn records(&self) -> (usize, usize) {
        let tables = self.tables.lock().unwrap();
        (
            tables.accounts.records.len(),
            tables.addresses.records.len(),
        )
    }
}

/// IPv4 as it is, IPv6 by its /64 (an IPv4-mapped one as the IPv4 address).
fn per_subscriber(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// One table: failures by key.
struct Failures<K> {
    free: u32,
    max_records: usize,
    records: HashMap<K, Record>,
}

struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Instant,
}

impl Record {
    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_failure) >= FORGET_AFTER
    }
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(free: u32, max_records: usize) -> Failures<K> {
        Failures {
            free,
            max_records,
            records: HashMap::new(),
        }
    }

    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let record = self.records.get(key).filter(|record| !record.stale(now))?;
        Some(record.locked_until.saturating_duration_since(now)).filter(|wait| !wait.is_zero())
    }

    fn failed(&mut self, key: K, now: Instant) {
        if !self.records.contains_key(&key) && self.records.len() >= self.max_records {
            self.make_room(now);
        }
        let record = self.records.entry(key).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: now,
        });
        if record.stale(now) {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_failure = now;
        if let Some(beyond) = record.failures.checked_sub(self.free) {
            let doubled = FIRST_LOCKOUT.saturating_mul(1 << beyond.min(20));
            record.locked_until = now + doubled.min(MAX_LOCKOUT);
        }
    }

    fn forget(&mut self, key: &K) {
        self.records.remove(key);
    }

    /// Forgets the stale records, or when there are none the one whose last failure is oldest.
    /// A scan of the table, only when it is full, on a failure (which cost a password check).
    fn make_room(&mut self, now: Instant) {
        self.records.retain(|_, record| !record.stale(now));
        if self.records.len() < self.max_records {
            return;
        }
        let oldest = self
            .records
            .iter()
            .min_by_key(|(_, record)| record.last_failure)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            self.records.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(name: &str) -> BareJid {
        BareJid::new(&format!("{name}@localhost")).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_account_is_locked_after_its_free_failures_for_a_doubling_time_up_to_the_cap() {
        let throttle = AuthThrottle::default();
        let start = Instant::now();
        let victim = jid("victim");
        // Each failure from a different address: only the account's count locks.
        let address = |n: u32| ip(&format!("192.0.2.{n}"));
        for n in 0..ACCOUNT_FREE_FAILURES {
            assert_eq!(throttle.wait(address(n), Some(&victim), start), None);
            throttle.failed(address(n), Some(&victim), start);
        }
        assert_eq!(
            throttle.wait(address(99), Some(&victim), start),
            Some(FIRST_LOCKOUT)
        );
        assert_eq!(throttle.wait(address(99), Some(&jid("other")), start), None);
        // Each further failure (once the lockout has passed) doubles it, up to the cap.
        let mut now = start;
        let mut lockouts = Vec::new();
        for n in 0..8 {
            now += throttle.wait(address(n), Some(&victim), now).unwrap();
            assert_eq!(throttle.wait(address(n), Some(&victim), now), None);
            throttle.failed(address(n), Some(&victim), now);
            lockouts.push(throttle.wait(address(n), Some(&victim), now).unwrap());
        }
        let secs: Vec<u64> = lockouts.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn an_address_is_locked_after_its_free_failures_whatever_the_accounts() {
        let throttle = AuthThrottle::default();
        let now = Instant::now();
        let attacker = ip("198.51.100.7");
        for n in 0..ADDRESS_FREE_FAILURES {
            throttle.failed(attacker, Some(&jid(&format!("guess{n}"))), now);
        }
        assert_eq!(throttle.wait(attacker, None, now), Some(FIRST_LOCKOUT));
        assert_eq!(
            throttle.wait(attacker, Some(&jid("fresh")), now),
            Some(FIRST_LOCKOUT)
        );
        assert_eq!(
            throttle.wait(ip("198.51.100.8"), Some(&jid("fresh")), now),
            None
        );
        // Unnamed accounts (a malformed username) count against the address too.
        let other = ip("203.0.113.1");
        for _ in 0..ADDRESS_FREE_FAILURES {
            throttle.failed(other, None, now);
        }
        assert!(throttle.wait(other, None, now).is_some());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let throttle = AuthThrottle::default();
        let now = Instant::now();
        for n in 0..ADDRESS_FREE_FAILURES {
            throttle.failed(ip(&format!("2001:db8:1:2::{n:x}")), None, now);
        }
        assert!(throttle
            .wait(ip("2001:db8:1:2:ffff::1"), None, now)
            .is_some());
        assert_eq!(throttle.wait(ip("2001:db8:1:3::1"), None, now), None);
        // An IPv4 address seen through an IPv6 socket is the same address.
        for _ in 0..ADDRESS_FREE_FAILURES {
            throttle.failed(ip("::ffff:192.0.2.1"), None, now);
        }
        assert!(throttle.wait(ip("192.0.2.1"), None, now).is_some());
    }

    #[test]
    fn success_clears_the_account_and_the_lockout_ends_by_itself() {
        let throttle = AuthThrottle::default();
        let now = Instant::now();
        let (user, home) = (jid("user"), ip("192.0.2.1"));
        for _ in 0..ACCOUNT_FREE_FAILURES - 1 {
            throttle.failed(home, Some(&user), now);
        }
        throttle.succeeded(&user);
        throttle.failed(home, Some(&user), now);
        assert_eq!(
            throttle.wait(home, Some(&user), now),
            None,
            "counting restarted"
        );
        for _ in 0..ACCOUNT_FREE_FAILURES {
            throttle.failed(home, Some(&user), now);
        }
        let wait = throttle.wait(ip("192.0.2.2"), Some(&user), now).unwrap();
        assert_eq!(
            throttle.wait(ip("192.0.2.2"), Some(&user), now + wait),
            None
        );
        // Quiet long enough, the record is forgotten: the next failure is a first one again.
        let later = now + FORGET_AFTER;
        throttle.failed(ip("192.0.2.2"), Some(&user), later);
        assert_eq!(throttle.wait(ip("192.0.2.2"), Some(&user), later), None);
    }

    #[test]
    fn rotating_accounts_and_addresses_does_not_grow_memory_past_the_bound() {
        let throttle = AuthThrottle::new(100);
        let now = Instant::now();
        let victim = jid("victim");
        for _ in 0..ACCOUNT_FREE_FAILURES {
            throttle.failed(ip("192.0.2.1"), Some(&victim), now);
        }
        for n in 0..1000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let later = now + Duration::from_millis(u64::from(n) + 1);
            throttle.failed(address, Some(&jid(&format!("guess{n}"))), later);
            let (accounts, addresses) = throttle.records();
            assert!(
                accounts <= 100 && addresses <= 100,
                "{accounts} {addresses}"
            );
        }
        // The oldest records made room: the victim's among them (the cost of the bound, which
        // an attacker pays with as many failures from as many addresses).
        assert_eq!(throttle.records(), (100, 100));
        // Stale records go first, before any fresh one.
        let much_later = now + FORGET_AFTER + Duration::from_secs(2);
        throttle.failed(ip("192.0.2.9"), Some(&jid("new")), much_later);
        assert_eq!(throttle.records(), (1, 1));
    }
}
