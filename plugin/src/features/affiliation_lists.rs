//! The owner and admin lists in the configuration form (XEP-0045 §10.1.3 `roomowners`,
//! `roomadmins`). They are not configuration: they show the room's affiliations and submitting
//! them changes affiliations, as owners may (§10.3-10.7), announced like any affiliation change.

use xmpp_parsers::data_forms::{DataForm, Field, FieldType};
use xmpp_parsers::muc::user::Affiliation;

use crate::affiliation;
use crate::config::Invalid;
use crate::event::{ConfigSubmit, Core, RoomFeature};
use crate::host::{Fault, Host};
use crate::occupant::Occupant;
use crate::room::Room;

const LISTS: [(&str, &str, Affiliation); 2] = [
    (
        "muc#roomconfig_roomowners",
        "Full list of room owners",
        Affiliation::Owner,
    ),
    (
        "muc#roomconfig_roomadmins",
        "Full list of room admins",
        Affiliation::Admin,
    ),
];

/// JIDs a submitted list may hold: far more owners or admins than a room has, few enough that
/// comparing a list with the stored one stays cheap.
pub const MAX_LISTED: usize = 1000;

/// The two jid-multi fields with the current lists.
pub fn fields(host: &mut dyn Host, room: &Room) -> Result<Vec<Field>, Fault> {
    let mut fields = Vec::new();
    for (var, label, affiliation) in LISTS {
        let mut field = Field::new(var, FieldType::JidMulti);
        field.label = Some(label.into());
        field.values = affiliation::list(host, &room.jid, &affiliation)?
            .into_iter()
            .map(|(jid, _)| jid)
            .collect();
        fields.push(field);
    }
    Ok(fields)
}

/// The affiliation changes a submitted form asks for: the listed users get the list's
/// affiliation; users dropped from a list lose theirs. Refused whole if a JID is malformed or no
/// owner would be left.
pub fn changes(
    host: &mut dyn Host,
    room: &Room,
    form: &DataForm,
) -> Result<Result<Vec<(String, Affiliation)>, Invalid>, Fault> {
    let mut changes = Vec::new();
    let mut owners_left = affiliation::list(host, &room.jid, &Affiliation::Owner)?.len();
    for (var, _, affiliation) in LISTS {
        let Some(field) = form.fields.iter().find(|f| f.var.as_deref() == Some(var)) else {
            continue;
        };
        if field.values.len() > MAX_LISTED {
            let why = format!("{var} must list at most {MAX_LISTED} JIDs");
            return Ok(Err(Invalid(why)));
        }
        let mut wanted = Vec::new();
        for value in field.values.iter().filter(|v| !v.trim().is_empty()) {
            match jid::BareJid::new(value.trim()) {
                Ok(jid) => wanted.push(jid.to_string()),
                Err(_) => return Ok(Err(Invalid(format!("{var} must list bare JIDs")))),
            }
        }
        let current: Vec<String> = affiliation::list(host, &room.jid, &affiliation)?
            .into_iter()
            .map(|(jid, _)| jid)
            .collect();
        for jid in current.iter().filter(|jid| !wanted.contains(jid)) {
            changes.push((jid.clone(), Affiliation::None));
            if affiliation == Affiliation::Owner {
                owners_left -= 1;
            }
        }
        for jid in wanted.into_iter().filter(|jid| !current.contains(jid)) {
            if affiliation == Affiliation::Owner {
                owners_left += 1;
            }
            changes.push((jid, affiliation.clone()));
        }
    }
    if owners_left == 0 {
        return Ok(Err(Invalid("a room keeps at least one owner".into())));
    }
    Ok(Ok(changes))
}

/// Applies and announces the changes `changes` computed.
pub fn apply(
    host: &mut dyn Host,
    core: &dyn Core,
    room: &Room,
    changes: Vec<(String, Affiliation)>,
) -> Result<(), Fault> {
    for (jid, affiliation) in changes {
        affiliation::set(host, &room.jid, &jid, affiliation.clone(), None)?;
        let present: Vec<Occupant> = Occupant::all(host, &room.jid)?
            .into_iter()
            .filter(|o| o.bare_jid == jid)
            .collect();
        core.announce_affiliation(host, room, &jid, present, affiliation, None, None)?;
    }
    Ok(())
}

pub struct AffiliationLists;

impl RoomFeature for AffiliationLists {
    fn form_fields(&self, host: &mut dyn Host, room: &Room) -> Result<Vec<Field>, Fault> {
        fields(host, room)
    }

    fn validate_config(
        &self,
        host: &mut dyn Host,
        submit: &ConfigSubmit,
    ) -> Result<Result<(), Invalid>, Fault> {
        Ok(changes(host, submit.room, submit.form)?.map(|_| ()))
    }

    /// The changes are read again from the same form and lists: nothing changed them since
    /// they were validated, in this same call.
    fn configured(&self, host: &mut dyn Host, submit: &ConfigSubmit) -> Result<(), Fault> {
        match changes(host, submit.room, submit.form)? {
            Ok(changes) => apply(host, submit.core, submit.room, changes),
            Err(Invalid(why)) => Err(Fault(format!("validated lists became invalid: {why}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;
    use xmpp_parsers::data_forms::DataFormType;

    fn form(owners: &[&str]) -> DataForm {
        let mut field = Field::new("muc#roomconfig_roomowners", FieldType::JidMulti);
        field.values = owners.iter().map(|o| o.to_string()).collect();
        DataForm::new(
            DataFormType::Submit,
            "http://jabber.org/protocol/muc#roomconfig",
            vec![field],
        )
    }

    #[test]
    fn the_lists_become_affiliations_and_an_owner_always_remains() {
        let mut host = MemoryHost::default();
        let room = Room::new_locked("r@muc.example");
        affiliation::set(
            &mut host,
            &room.jid,
            "a@example.org",
            Affiliation::Owner,
            None,
        )
        .unwrap();
        let changes = changes(&mut host, &room, &form(&["b@example.org"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            changes,
            [
                ("a@example.org".to_string(), Affiliation::None),
                ("b@example.org".to_string(), Affiliation::Owner)
            ]
        );
        assert!(
            super::changes(&mut host, &room, &form(&[]))
                .unwrap()
                .is_err(),
            "no owner left"
        );
        assert!(super::changes(&mut host, &room, &form(&["not a jid@@"]))
            .unwrap()
            .is_err());
        let shown = fields(&mut host, &room).unwrap();
        assert_eq!(shown[0].values, ["a@example.org"]);
    }

    #[test]
    fn a_list_over_its_maximum_is_refused_naming_the_field() {
        let mut host = MemoryHost::default();
        let room = Room::new_locked("r@muc.example");
        let jids: Vec<String> = (0..=MAX_LISTED)
            .map(|n| format!("u{n}@example.org"))
            .collect();
        let jids: Vec<&str> = jids.iter().map(String::as_str).collect();
        let Err(Invalid(why)) = changes(&mut host, &room, &form(&jids)).unwrap() else {
            panic!("{} owners accepted", jids.len());
        };
        assert_eq!(why, "muc#roomconfig_roomowners must list at most 1000 JIDs");
        assert!(changes(&mut host, &room, &form(&jids[..MAX_LISTED]))
            .unwrap()
            .is_ok());
    }
}
