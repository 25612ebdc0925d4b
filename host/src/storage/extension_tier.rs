//! Where the extension tier keeps what: the operator's catalog (`catalog/NAME`, the component
//! under `component/NAME`), and per room the owners' choices (`room/ROOM`) and the extensions'
//! own storage (`store/ROOM/NAME/KEY`). In a shared store a room's keys follow the room's lease
//! (read again when this instance takes the room), and the catalog is watched for changes the
//! other instances make (see [`super::catalog_watch`]).

/// The catalog's entries: one per installed extension.
pub const CATALOG_PREFIX: &str = "catalog/";

/// The owners' choices for the room `jid`.
pub fn record_key(jid: &str) -> String {
    format!("room/{jid}")
}

/// Every extension's storage in the room `jid`.
pub fn store_prefix(jid: &str) -> String {
    format!("store/{jid}/")
}

/// The room (its JID) an extension-tier key belongs to, if it belongs to one.
pub fn room_of(key: &str) -> Option<&str> {
    if let Some(jid) = key.strip_prefix("room/") {
        return (!jid.is_empty() && !jid.contains('/')).then_some(jid);
    }
    let rest = key.strip_prefix("store/")?;
    rest.find('/').map(|end| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_s_record_and_storage_belong_to_it_and_the_catalog_to_no_room() {
        assert_eq!(room_of(&record_key("a@c")), Some("a@c"));
        assert_eq!(room_of("store/a@c/dice/k/1"), Some("a@c"));
        assert_eq!(room_of(&store_prefix("a@c")), Some("a@c"));
        assert_eq!(room_of("room/"), None);
        assert_eq!(room_of("room/a@c/x"), None);
        assert_eq!(room_of("catalog/dice"), None);
        assert_eq!(room_of("component/dice"), None);
    }
}
