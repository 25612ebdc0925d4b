//! The operator's catalog: which extensions are installed, what each declared, and which rooms
//! may use it. Kept in the extensions tier (`catalog/NAME` and the component under
//! `component/NAME`), so it is on disk with the rest of the data and survives restarts.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::limits::AskedLimits;
use super::sandbox::{DeclaredSetting, Manifest, SettingKind};
use super::text::unfit_for_xml;
use crate::storage::extension_tier;

pub const MAX_NAME_BYTES: usize = 32;
/// Bounds on what a manifest declares: it is shown in every room's configuration form.
const MAX_TEXT_BYTES: usize = 200;
const MAX_SETTINGS: usize = 16;
const MAX_OPTIONS: usize = 32;
/// Field names every extension gets in the configuration form beside its own settings.
pub const RESERVED_SETTINGS: &[&str] = &["nick", "fail-closed"];
/// What a manifest may ask for in `capabilities`.
const READ_OCCUPANTS: &str = "read-occupants";
const CAPABILITIES: &[&str] = &[READ_OCCUPANTS];

/// One installed extension.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub version: String,
    pub description: String,
    /// SHA-256 of the component, hex.
    pub hash: String,
    pub nick: Option<String>,
    pub command: Option<String>,
    pub settings: Vec<Setting>,
    pub tick_seconds: Option<u32>,
    /// Whether it reads the room's occupants (`room.occupants`).
    #[serde(default)]
    pub reads_occupants: bool,
    /// Rooms (bare JIDs) whose owners may switch it on; `None`: every room.
    pub rooms: Option<Vec<String>>,
    /// Switched on in rooms whose owners did not decide (for `muc-host check --extension`).
    pub on_by_default: bool,
    /// What the operator granted it at install (`ext add --memory-mib ...`); absent from
    /// entries written before these existed, which get the operator's defaults.
    #[serde(default)]
    pub limits: AskedLimits,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub label: String,
    pub kind: Kind,
    pub default: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Boolean,
    TextSingle,
    TextMulti,
    ListSingle,
    /// A whole number, shown as a text field.
    Integer,
}

impl Entry {
    /// The catalog entry for a manifest, or why the manifest is unacceptable.
    pub fn from_manifest(manifest: Manifest, hash: String) -> Result<Entry, String> {
        if !is_name(&manifest.name) || manifest.name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "the extension's name '{}' is not 1-{MAX_NAME_BYTES} characters of [a-z0-9-]",
                manifest.name.escape_debug()
            ));
        }
        if manifest.version.trim().is_empty()
            || manifest.version.len() > MAX_NAME_BYTES
            || !one_line(&manifest.version)
        {
            return Err("the extension declares no version, or one too long".into());
        }
        if !one_line(&manifest.description) {
            return Err(format!(
                "the description must be one line of at most {MAX_TEXT_BYTES} bytes"
            ));
        }
        if manifest.settings.len() > MAX_SETTINGS {
            return Err(format!("more than {MAX_SETTINGS} settings"));
        }
        if let Some(nick) = &manifest.nick {
            if !valid_nick(nick) {
                return Err(format!(
                    "the nick '{}' is not a valid nickname",
                    nick.escape_debug()
                ));
            }
        }
        if let Some(command) = &manifest.command {
            if command.is_empty()
                || command.len() > MAX_NAME_BYTES
                || command.contains(char::is_whitespace)
            {
                return Err(format!(
                    "the command '{}' is not one word",
                    command.escape_debug()
                ));
            }
        }
        if let Some(unknown) = manifest
            .capabilities
            .iter()
            .find(|asked| !CAPABILITIES.contains(&asked.as_str()))
        {
            return Err(format!(
                "it asks for the capability '{}', which this host does not offer (it offers: {})",
                unknown.escape_debug(),
                CAPABILITIES.join(", ")
            ));
        }
        let mut settings: Vec<Setting> = Vec::new();
        for declared in manifest.settings {
            if !is_name(&declared.name) || RESERVED_SETTINGS.contains(&declared.name.as_str()) {
                return Err(format!(
                    "the setting name '{}' is not allowed",
                    declared.name.escape_debug()
                ));
            }
            if settings.iter().any(|s| s.name == declared.name) {
                return Err(format!("the setting '{}' is declared twice", declared.name));
            }
            let well_formed = one_line(&declared.label)
                && declared.options.len() <= MAX_OPTIONS
                && declared.options.iter().all(|o| one_line(o))
                && declared.default.len() <= MAX_OPTIONS
                && declared
                    .default
                    .iter()
                    .all(|d| d.len() <= MAX_TEXT_BYTES && unfit_for_xml(d).is_none())
                && match declared.kind {
                    SettingKind::Boolean => {
                        matches!(declared.default.as_slice(), [v] if v == "0" || v == "1")
                    }
                    SettingKind::ListSingle => {
                        matches!(declared.default.as_slice(), [v] if declared.options.contains(v))
                    }
                    SettingKind::TextSingle => declared.default.len() <= 1,
                    SettingKind::TextMulti => true,
                    SettingKind::Integer => {
                        matches!(declared.default.as_slice(), [v] if v.parse::<i64>().is_ok())
                    }
                };
            if !well_formed {
                return Err(format!(
                    "the setting '{}' is malformed (label, options or default)",
                    declared.name
                ));
            }
            settings.push(Setting::from(declared));
        }
        Ok(Entry {
            name: manifest.name,
            version: manifest.version,
            description: manifest.description,
            hash,
            nick: manifest.nick,
            command: manifest.command,
            settings,
            // A tick of zero would be a busy loop: one second is the floor.
            tick_seconds: manifest.tick_seconds.map(|seconds| seconds.max(1)),
            reads_occupants: manifest.capabilities.iter().any(|c| c == READ_OCCUPANTS),
            rooms: None,
            on_by_default: false,
            limits: AskedLimits::default(),
        })
    }

    /// Where owners may switch it on, for people.
    pub fn allowed_rooms(&self) -> String {
        match &self.rooms {
            None => "every room".into(),
            Some(rooms) => rooms.join(", "),
        }
    }

    pub fn allowed_in(&self, room: &str) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|allowed| allowed == room))
    }
}

impl From<DeclaredSetting> for Setting {
    fn from(declared: DeclaredSetting) -> Setting {
        Setting {
            name: declared.name,
            label: declared.label,
            kind: match declared.kind {
                SettingKind::Boolean => Kind::Boolean,
                SettingKind::TextSingle => Kind::TextSingle,
                SettingKind::TextMulti => Kind::TextMulti,
                SettingKind::ListSingle => Kind::ListSingle,
                SettingKind::Integer => Kind::Integer,
            },
            default: declared.default,
            options: declared.options,
        }
    }
}

pub fn catalog_key(name: &str) -> String {
    format!("{}{name}", extension_tier::CATALOG_PREFIX)
}

pub fn component_key(name: &str) -> String {
    format!("component/{name}")
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A nick an extension may speak under: a resource part as it stands (so `room/nick` is a JID),
/// within 64 bytes.
pub fn valid_nick(nick: &str) -> bool {
    nick.len() <= 64
        && jid::ResourcePart::new(nick).is_ok_and(|part| part.as_str() == nick)
        && nick.trim() == nick
}

/// A short line a configuration form can show (it goes into XML).
fn one_line(text: &str) -> bool {
    text.len() <= MAX_TEXT_BYTES && !text.contains(['\n', '\r']) && unfit_for_xml(text).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "shout".into(),
            version: "0.1.0".into(),
            description: "Says things loudly".into(),
            nick: Some("shout".into()),
            command: Some("!shout".into()),
            settings: vec![DeclaredSetting {
                name: "style".into(),
                label: "How loud".into(),
                kind: SettingKind::ListSingle,
                default: vec!["loud".into()],
                options: vec!["loud".into(), "louder".into()],
            }],
            tick_seconds: None,
            capabilities: vec![],
        }
    }

    #[test]
    fn a_capability_the_host_does_not_offer_is_refused_by_name() {
        let mut reading = manifest();
        reading.capabilities = vec!["read-occupants".into()];
        assert!(
            Entry::from_manifest(reading, String::new())
                .unwrap()
                .reads_occupants
        );
        let mut greedy = manifest();
        greedy.capabilities = vec!["read-occupants".into(), "kick".into()];
        let refused = Entry::from_manifest(greedy, String::new()).unwrap_err();
        assert!(refused.contains("'kick'"), "{refused}");
    }

    /// Everything of a manifest that a configuration form shows goes into XML: a character XML
    /// cannot carry is refused at installation, never handed to the MUC logic.
    #[test]
    fn a_manifest_whose_form_text_xml_cannot_carry_is_refused() {
        assert!(Entry::from_manifest(manifest(), String::new()).is_ok());
        let spoilers: [fn(&mut Manifest); 8] = [
            |m| m.version = "0.1\u{1}".into(),
            |m| m.description = "Says \u{FFFE} things".into(),
            |m| m.nick = Some("sh\u{1}out".into()),
            |m| m.nick = Some("shout\u{FFFF}".into()),
            |m| m.settings[0].label = "How \u{1b} loud".into(),
            |m| m.settings[0].options[1] = "lou\u{0}der".into(),
            |m| {
                m.settings[0].kind = SettingKind::TextSingle;
                m.settings[0].options.clear();
                m.settings[0].default = vec!["\u{7}".into()];
            },
            // Not XML's problem, but the form's: an integer setting's default must be one.
            |m| {
                m.settings[0].kind = SettingKind::Integer;
                m.settings[0].options.clear();
                m.settings[0].default = vec!["many".into()];
            },
        ];
        for spoil in spoilers {
            let mut spoilt = manifest();
            spoil(&mut spoilt);
            assert!(
                Entry::from_manifest(spoilt.clone(), String::new()).is_err(),
                "{spoilt:?}"
            );
        }
    }

    /// An entry stored before extensions had limits of their own loads, with the operator's
    /// defaults; one with limits keeps them.
    #[test]
    fn a_catalog_entry_without_limits_loads_with_the_operator_s_defaults() {
        let old = r#"{"name":"shout","version":"0.1.0","description":"Says things loudly",
            "hash":"ab","nick":null,"command":null,"settings":[],"tick_seconds":null,
            "rooms":null,"on_by_default":false}"#;
        let entry: Entry = serde_json::from_str(old).unwrap();
        assert_eq!(entry.limits, AskedLimits::default());
        let asked = Entry {
            limits: AskedLimits {
                memory_mib: Some(32),
                call_ms: None,
                instances: Some(8),
            },
            ..entry
        };
        let stored = serde_json::to_string(&asked).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&stored).unwrap(), asked);
    }

    #[test]
    fn a_refused_manifest_s_names_are_quoted_escaped() {
        let mut spoilt = manifest();
        spoilt.nick = Some("a\nb".into());
        let why = Entry::from_manifest(spoilt, String::new()).unwrap_err();
        assert!(why.contains("'a\\nb'"), "{why}");
    }
}
