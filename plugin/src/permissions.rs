//! Who may change whose affiliation or role (XEP-0045 §8, §9, §10), as one table, in the spirit
//! of ejabberd's `can_change_ra`, and who may do what else by role or affiliation (retract
//! others' messages, XEP-0425; the room's vCard; hats). Pure: the caller supplies everything it
//! depends on.

use xmpp_parsers::muc::user::{Affiliation, Role};

/// A requested change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Affiliation(Affiliation),
    Role(Role),
}

/// The one asking.
#[derive(Clone, Debug, PartialEq)]
pub struct Actor {
    pub affiliation: Affiliation,
    /// `Role::None` when not in the room.
    pub role: Role,
}

/// The one changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub affiliation: Affiliation,
    /// `Role::None` when not in the room.
    pub role: Role,
    /// The target is the room's only owner.
    pub last_owner: bool,
}

/// Why a change is refused: the stanza error condition to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The actor may not make this change (`not-allowed`).
    NotAllowed,
    /// The room would be left without an owner (`conflict`).
    LastOwner,
    /// A role change for someone not in the room (`item-not-found`).
    NotInRoom,
}

fn is_admin_or_owner(affiliation: &Affiliation) -> bool {
    matches!(affiliation, Affiliation::Owner | Affiliation::Admin)
}

/// Affiliations below admin: the ones admins manage.
fn is_low(affiliation: &Affiliation) -> bool {
    matches!(
        affiliation,
        Affiliation::None | Affiliation::Member | Affiliation::Outcast
    )
}

pub fn check(actor: &Actor, target: &Target, change: &Change) -> Result<(), Refusal> {
    use Affiliation as A;
    use Role as R;
    match change {
        Change::Affiliation(new) => {
            let allowed = match actor.affiliation {
                // Owners change anyone's affiliation, other owners' included (§10.3-10.7).
                A::Owner => true,
                // Admins manage members and outcasts, never admins or owners (§9.1-9.4).
                A::Admin => is_low(&target.affiliation) && is_low(new),
                _ => false,
            };
            if !allowed {
                return Err(Refusal::NotAllowed);
            }
            if target.last_owner && *new != A::Owner {
                return Err(Refusal::LastOwner);
            }
            Ok(())
        }
        Change::Role(new) => {
            if target.role == R::None {
                return Err(Refusal::NotInRoom);
            }
            let allowed = match (new, &target.role) {
                // Kicking (§8.2) and voice (§8.3-8.4): by a moderator, of someone below admin;
                // a moderator by role (not affiliation) only by an admin or owner.
                (R::None | R::Participant | R::Visitor, R::Participant | R::Visitor) => {
                    actor.role == R::Moderator && !is_admin_or_owner(&target.affiliation)
                }
                (R::None | R::Participant | R::Visitor, R::Moderator) => {
                    is_admin_or_owner(&actor.affiliation) && !is_admin_or_owner(&target.affiliation)
                }
                // Granting moderator (§9.6): admins and owners.
                (R::Moderator, _) => is_admin_or_owner(&actor.affiliation),
                (_, R::None) => false,
            };
            if allowed {
                Ok(())
            } else {
                Err(Refusal::NotAllowed)
            }
        }
    }
}

/// Who may retract someone else's message (XEP-0425): a moderator in the room, whatever their
/// affiliation. An owner or admin who is not in the room has no role, so may not: a moderation
/// is announced from the moderator's occupant JID.
pub fn may_moderate_messages(actor: &Actor) -> Result<(), Refusal> {
    if actor.role == Role::Moderator {
        Ok(())
    } else {
        Err(Refusal::NotAllowed)
    }
}

/// Who may set the room's vCard, its avatar (XEP-0486 §6: owners, as Prosody and ejabberd).
pub fn may_set_room_vcard(affiliation: &Affiliation) -> bool {
    *affiliation == Affiliation::Owner
}

/// Who may read the room's vCard: anyone, or in a members-only room those who may enter it.
pub fn may_read_room_vcard(members_only: bool, affiliation: &Affiliation) -> bool {
    !members_only
        || matches!(
            affiliation,
            Affiliation::Owner | Affiliation::Admin | Affiliation::Member
        )
}

/// Who may give and take hats (XEP-0317): owners and admins.
pub fn may_manage_hats(affiliation: &Affiliation) -> bool {
    is_admin_or_owner(affiliation)
}

/// Who may wear a hat: a user the room knows, by an affiliation that lets them in or by being
/// in it now; never an outcast.
pub fn may_wear_hats(affiliation: &Affiliation, present: bool) -> bool {
    match affiliation {
        Affiliation::Owner | Affiliation::Admin | Affiliation::Member => true,
        Affiliation::None => present,
        Affiliation::Outcast => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Affiliation as A;
    use Role as R;

    const AFFILIATIONS: [A; 5] = [A::Owner, A::Admin, A::Member, A::None, A::Outcast];
    const ROLES: [R; 4] = [R::Moderator, R::Participant, R::Visitor, R::None];

    fn target(affiliation: A, role: R) -> Target {
        Target {
            affiliation,
            role,
            last_owner: false,
        }
    }

    /// Affiliation changes, every actor against every target and new affiliation: the expected
    /// verdict, written as the rule reads.
    #[test]
    fn affiliation_changes_exhaustively() {
        for actor_affiliation in AFFILIATIONS {
            for target_affiliation in AFFILIATIONS {
                for new in AFFILIATIONS {
                    let actor = Actor {
                        affiliation: actor_affiliation.clone(),
                        role: R::Moderator,
                    };
                    let got = check(
                        &actor,
                        &target(target_affiliation.clone(), R::None),
                        &Change::Affiliation(new.clone()),
                    );
                    let expected = match actor_affiliation {
                        A::Owner => true,
                        A::Admin => {
                            matches!(target_affiliation, A::Member | A::None | A::Outcast)
                                && matches!(new, A::Member | A::None | A::Outcast)
                        }
                        _ => false,
                    };
                    assert_eq!(
                        got.is_ok(),
                        expected,
                        "{actor_affiliation:?} sets {target_affiliation:?} to {new:?}"
                    );
                }
            }
        }
    }

    /// The vCard and hat rules, every affiliation (and room kind, and presence).
    #[test]
    fn vcard_and_hat_rules_exhaustively() {
        for affiliation in AFFILIATIONS {
            let high = matches!(affiliation, A::Owner | A::Admin);
            assert_eq!(
                may_set_room_vcard(&affiliation),
                affiliation == A::Owner,
                "{affiliation:?} sets the vCard"
            );
            assert!(may_read_room_vcard(false, &affiliation));
            assert_eq!(
                may_read_room_vcard(true, &affiliation),
                high || affiliation == A::Member,
                "{affiliation:?} reads a members-only room's vCard"
            );
            assert_eq!(
                may_manage_hats(&affiliation),
                high,
                "{affiliation:?} gives hats"
            );
            for present in [false, true] {
                let expected = match affiliation {
                    A::Outcast => false,
                    A::None => present,
                    _ => true,
                };
                assert_eq!(
                    may_wear_hats(&affiliation, present),
                    expected,
                    "{affiliation:?} (present: {present}) wears a hat"
                );
            }
        }
    }

    #[test]
    fn nobody_demotes_the_last_owner() {
        let owner = Actor {
            affiliation: A::Owner,
            role: R::Moderator,
        };
        let last = Target {
            affiliation: A::Owner,
            role: R::Moderator,
            last_owner: true,
        };
        for new in [A::Admin, A::Member, A::None, A::Outcast] {
            assert_eq!(
                check(&owner, &last, &Change::Affiliation(new)),
                Err(Refusal::LastOwner)
            );
        }
        assert_eq!(check(&owner, &last, &Change::Affiliation(A::Owner)), Ok(()));
    }

    /// Role changes, every actor (affiliation and role) against every target in the room.
    #[test]
    fn role_changes_exhaustively() {
        for actor_affiliation in AFFILIATIONS {
            for actor_role in ROLES {
                for target_affiliation in AFFILIATIONS {
                    for target_role in ROLES {
                        for new in ROLES {
                            let actor = Actor {
                                affiliation: actor_affiliation.clone(),
                                role: actor_role.clone(),
                            };
                            let subject = target(target_affiliation.clone(), target_role.clone());
                            let got = check(&actor, &subject, &Change::Role(new.clone()));
                            let high = |a: &A| matches!(a, A::Owner | A::Admin);
                            let expected = if target_role == R::None {
                                Err(Refusal::NotInRoom)
                            } else {
                                let allowed = match new {
                                    R::Moderator => high(&actor_affiliation),
                                    _ if target_role == R::Moderator => {
                                        high(&actor_affiliation) && !high(&target_affiliation)
                                    }
                                    _ => actor_role == R::Moderator && !high(&target_affiliation),
                                };
                                if allowed {
                                    Ok(())
                                } else {
                                    Err(Refusal::NotAllowed)
                                }
                            };
                            assert_eq!(
                                got, expected,
                                "{actor_affiliation:?}/{actor_role:?} sets {target_affiliation:?}/{target_role:?} to {new:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_moderators_moderate_messages_exhaustively() {
        for affiliation in AFFILIATIONS {
            for role in ROLES {
                let expected = if role == R::Moderator {
                    Ok(())
                } else {
                    Err(Refusal::NotAllowed)
                };
                let actor = Actor {
                    affiliation: affiliation.clone(),
                    role: role.clone(),
                };
                assert_eq!(
                    may_moderate_messages(&actor),
                    expected,
                    "{affiliation:?}/{role:?}"
                );
            }
        }
    }

    #[test]
    fn the_rules_in_words() {
        let moderator = Actor {
            affiliation: A::None,
            role: R::Moderator,
        };
        let admin = Actor {
            affiliation: A::Admin,
            role: R::Moderator,
        };
        // A moderator kicks a participant, not an admin, not another moderator.
        assert_eq!(
            check(
                &moderator,
                &target(A::None, R::Participant),
                &Change::Role(R::None)
            ),
            Ok(())
        );
        assert!(check(
            &moderator,
            &target(A::Admin, R::Moderator),
            &Change::Role(R::None)
        )
        .is_err());
        assert!(check(
            &moderator,
            &target(A::Member, R::Moderator),
            &Change::Role(R::None)
        )
        .is_err());
        // An admin revokes moderator from a member, not from another admin.
        assert_eq!(
            check(
                &admin,
                &target(A::Member, R::Moderator),
                &Change::Role(R::Participant)
            ),
            Ok(())
        );
        assert!(check(
            &admin,
            &target(A::Admin, R::Moderator),
            &Change::Role(R::Participant)
        )
        .is_err());
        // Admins do not make admins.
        assert!(check(
            &admin,
            &target(A::Member, R::None),
            &Change::Affiliation(A::Admin)
        )
        .is_err());
    }
}
