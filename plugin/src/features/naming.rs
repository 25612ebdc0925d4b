//! Name, description and language (XEP-0045 §10.1.3): shown in disco and `muc#roominfo`.

use xmpp_parsers::data_forms::{Field, FieldType};

use crate::config::{FieldSpec, Kind};
use crate::event::RoomFeature;
use crate::room::Room;

pub use crate::room::naming::{display_name, NAME};

pub const DESCRIPTION: FieldSpec = FieldSpec {
    var: "muc#roomconfig_roomdesc",
    label: "Description",
    kind: Kind::Text {
        default: "",
        max_chars: 2000,
    },
};
/// A language tag (BCP 47): 35 characters hold any tag a registry will assign (RFC 5646 §4.4.1).
pub const LANGUAGE: FieldSpec = FieldSpec {
    var: "muc#roomconfig_lang",
    label: "Language of discussion",
    kind: Kind::Text {
        default: "",
        max_chars: 35,
    },
};

pub struct Naming;

impl RoomFeature for Naming {
    fn fields(&self) -> &'static [FieldSpec] {
        &[NAME, DESCRIPTION, LANGUAGE]
    }

    fn room_info(&self, room: &Room) -> Vec<Field> {
        vec![
            info_field("muc#roominfo_description", DESCRIPTION.text(&room.config)),
            info_field("muc#roominfo_lang", LANGUAGE.text(&room.config)),
        ]
    }
}

fn info_field(var: &str, value: &str) -> Field {
    Field::new(var, FieldType::TextSingle).with_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nameless_room_is_shown_by_its_localpart() {
        let mut room = Room::new_locked("garden@muc.example");
        assert_eq!(display_name(&room), "garden");
        room.config.insert(NAME.var.into(), "The Garden".into());
        assert_eq!(display_name(&room), "The Garden");
    }
}
