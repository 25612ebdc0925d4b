//! The `muc#user` `<x>` carried by occupant presences, in the child order Prosody emits and its
//! test scripts expect: status codes, then the item, then status 110 (XEP-0045 leaves the order
//! free; xmpp-parsers' `MucUser` writes every status before the item).

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::muc::user::{Item, MucUser, Status};
use xmpp_parsers::ns;

/// `statuses` may include `Status::SelfPresence` (110); it is placed after the items.
pub fn x(items: Vec<Item>, statuses: &[Status]) -> Element {
    let (own, others): (Vec<Status>, Vec<Status>) = statuses
        .iter()
        .cloned()
        .partition(|status| *status == Status::SelfPresence);
    let x: Element = MucUser::new().with_statuses(others).into();
    let mut children: Vec<Element> = x.children().cloned().collect();
    children.extend(items.into_iter().map(item_element));
    children.extend(own.into_iter().map(Element::from));
    Element::builder("x", ns::MUC_USER)
        .append_all(children)
        .build()
}

/// xmpp-parsers omits `affiliation='none'` and `role='none'`, which XEP-0045 wants written.
fn item_element(item: Item) -> Element {
    let mut element: Element = item.into();
    if element.attr("affiliation").is_none() {
        element.set_attr(Namespace::NONE, xml_ncname!("affiliation").into(), "none");
    }
    if element.attr("role").is_none() {
        element.set_attr(Namespace::NONE, xml_ncname!("role").into(), "none");
    }
    element
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::muc::user::{Affiliation, Role};

    #[test]
    fn creation_statuses_surround_the_item_as_prosody_orders_them() {
        let item = Item::new(Affiliation::Owner, Role::Moderator);
        let x = x(
            vec![item],
            &[Status::RoomHasBeenCreated, Status::SelfPresence],
        );
        let names: Vec<String> = x
            .children()
            .map(|c| format!("{}{}", c.name(), c.attr("code").unwrap_or("")))
            .collect();
        assert_eq!(names, ["status201", "item", "status110"]);
    }

    #[test]
    fn none_affiliation_and_role_are_written() {
        let x = x(vec![Item::new(Affiliation::None, Role::None)], &[]);
        let item = x.get_child("item", ns::MUC_USER).unwrap();
        assert_eq!(item.attr("affiliation"), Some("none"));
        assert_eq!(item.attr("role"), Some("none"));
    }
}
