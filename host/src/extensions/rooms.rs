//! What each room's owners chose: which extensions are on, under which nick, with which settings,
//! fail-open or fail-closed, and how many faults each has had. Kept in the extensions tier under
//! `room/ROOM`, written inside the MUC call that changed it. Also the configuration form's fields
//! and the parsing of a submitted form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::{self, Entry, Kind};
use crate::storage::extension_tier;
use crate::wasm::plugin_world::muc::plugin::extensions as wit;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomRecord {
    /// The room's owners as of the last hook (they are told of faults and removals).
    pub owners: Vec<String>,
    pub extensions: BTreeMap<String, Choice>,
    /// When each ticking extension is next due its tick (ms since the Unix epoch).
    pub ticks: BTreeMap<String, u64>,
    /// The tick the plugin's timer was last asked for, so that an unchanged one costs no write.
    /// In the record, so that it rolls back with a MUC call that fails.
    pub tick_asked: Option<u64>,
}

/// An owner's choice for one extension in one room.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Choice {
    pub enabled: bool,
    pub nick: Option<String>,
    pub fail_closed: bool,
    pub settings: BTreeMap<String, Vec<String>>,
    /// Faults since it was last switched on.
    pub faults: u32,
    /// It reached the fault limit: it no longer runs (see `takes_part`).
    pub failed: bool,
}

impl Choice {
    /// Whether the extension has a say in the room's events: switched on and not failed, or
    /// failed but fail-closed (then the room refuses what it would have checked).
    pub fn takes_part(&self) -> bool {
        self.enabled && (!self.failed || self.fail_closed)
    }

    /// What a room that never decided has: the catalog's default, the extension's own nick.
    pub fn default_for(entry: &Entry) -> Choice {
        Choice {
            enabled: entry.on_by_default,
            nick: entry.nick.clone(),
            ..Choice::default()
        }
    }

    /// The nick it says things under in this room, if it may speak (it declared a nick).
    pub fn speaks_as(&self, entry: &Entry) -> Option<String> {
        self.nick.clone().filter(|_| entry.nick.is_some())
    }

    /// The owner's value of a setting, or its declared default.
    pub fn setting(&self, entry: &Entry, name: &str) -> Vec<String> {
        self.settings.get(name).cloned().unwrap_or_else(|| {
            entry
                .settings
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.default.clone())
                .unwrap_or_default()
        })
    }

    pub fn all_settings(&self, entry: &Entry) -> BTreeMap<String, Vec<String>> {
        entry
            .settings
            .iter()
            .map(|s| (s.name.clone(), self.setting(entry, &s.name)))
            .collect()
    }
}

impl RoomRecord {
    pub fn key(room: &str) -> String {
        extension_tier::record_key(room)
    }

    pub fn choice(&self, entry: &Entry) -> Choice {
        self.extensions
            .get(&entry.name)
            .cloned()
            .unwrap_or_else(|| Choice::default_for(entry))
    }

    /// `choice(entry).takes_part()`, without copying the choice.
    pub fn takes_part(&self, entry: &Entry) -> bool {
        self.extensions
            .get(&entry.name)
            .map_or(entry.on_by_default, Choice::takes_part)
    }

    /// `choice(entry).speaks_as(entry)`, without copying the choice.
    pub fn speaks_as(&self, entry: &Entry) -> Option<String> {
        match self.extensions.get(&entry.name) {
            Some(choice) => choice.speaks_as(entry),
            None => entry.nick.clone(),
        }
    }
}

fn var(entry: &Entry, field: &str) -> String {
    format!("extension#{}#{field}", entry.name)
}

fn enable_var(entry: &Entry) -> String {
    format!("extension#{}", entry.name)
}

fn field(var: String, kind: wit::FieldKind, label: String, values: Vec<String>) -> wit::FormField {
    wit::FormField {
        var,
        kind,
        label,
        values,
        options: Vec::new(),
    }
}

fn flag(on: bool) -> Vec<String> {
    vec![if on { "1" } else { "0" }.to_string()]
}

/// The form fields for one extension: on/off, its nick, fail-closed, then its own settings.
pub fn form_fields(entry: &Entry, choice: &Choice) -> Vec<wit::FormField> {
    let mut fields = vec![field(
        enable_var(entry),
        wit::FieldKind::Boolean,
        format!(
            "Extension {} {}: {}",
            entry.name, entry.version, entry.description
        ),
        flag(choice.enabled && !choice.failed),
    )];
    if entry.nick.is_some() {
        fields.push(field(
            var(entry, "nick"),
            wit::FieldKind::TextSingle,
            format!("Nickname {} speaks under", entry.name),
            choice.nick.iter().cloned().collect(),
        ));
    }
    fields.push(field(
        var(entry, "fail-closed"),
        wit::FieldKind::Boolean,
        format!(
            "If {} fails, refuse what it checks (instead of letting it through)",
            entry.name
        ),
        flag(choice.fail_closed),
    ));
    for setting in &entry.settings {
        let mut shown = field(
            var(entry, &setting.name),
            match setting.kind {
                Kind::Boolean => wit::FieldKind::Boolean,
                Kind::TextSingle | Kind::Integer => wit::FieldKind::TextSingle,
                Kind::TextMulti => wit::FieldKind::TextMulti,
                Kind::ListSingle => wit::FieldKind::ListSingle,
            },
            format!("{}: {}", entry.name, setting.label),
            choice.setting(entry, &setting.name),
        );
        shown.options = setting.options.clone();
        fields.push(shown);
    }
    fields
}

/// What an owner may submit for one text setting.
const MAX_VALUE_BYTES: usize = 1024;
const MAX_VALUES: usize = 100;

/// `choice` changed by the submitted fields that belong to `entry` (others are ignored), or why
/// a value is unacceptable. `occupant_nicks` are the nicks an extension may not take.
pub fn apply_form(
    entry: &Entry,
    mut choice: Choice,
    submitted: &[wit::SubmittedField],
    occupant_nicks: &[&str],
) -> Result<Choice, String> {
    let value = |var: &str| submitted.iter().find(|f| f.var == var).map(|f| &f.values);
    let boolean = |var: &str, values: &Vec<String>| match values.first().map(|v| v.trim()) {
        Some("1" | "true") => Ok(true),
        Some("0" | "false") | None => Ok(false),
        _ => Err(format!("{var} must be a boolean")),
    };
    if let Some(values) = value(&enable_var(entry)) {
        let enabled = boolean(&enable_var(entry), values)?;
        // Switching on (again, after failing) starts the fault count over.
        if enabled && (!choice.enabled || choice.failed) {
            choice.faults = 0;
            choice.failed = false;
        }
        choice.enabled = enabled;
    }
    if let Some(values) = value(&var(entry, "fail-closed")) {
        choice.fail_closed = boolean(&var(entry, "fail-closed"), values)?;
    }
    if entry.nick.is_some() {
        if let Some(values) = value(&var(entry, "nick")) {
            let nick = values.first().map(|v| v.trim()).unwrap_or_default();
            if !catalog::valid_nick(nick) {
                return Err(format!(
                    "{} must be a nickname of 1 to 64 bytes",
                    var(entry, "nick")
                ));
            }
            choice.nick = Some(nick.to_string());
        }
        let nick = choice.nick.as_deref().unwrap_or_default();
        if choice.enabled && occupant_nicks.contains(&nick) {
            return Err(format!(
                "the nickname '{nick}' belongs to an occupant: {} cannot speak under it",
                entry.name
            ));
        }
    }
    for setting in &entry.settings {
        let var = var(entry, &setting.name);
        let Some(values) = value(&var) else { continue };
        if values.len() > MAX_VALUES || values.iter().any(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(format!(
                "{var} takes at most {MAX_VALUES} values of {MAX_VALUE_BYTES} bytes"
            ));
        }
        let values = match setting.kind {
            Kind::Boolean => flag(boolean(&var, values)?),
            Kind::TextSingle => vec![values.first().cloned().unwrap_or_default()],
            Kind::TextMulti => values.clone(),
            Kind::Integer => {
                let number = values.first().map(|v| v.trim()).unwrap_or_default();
                if number.parse::<i64>().is_err() {
                    return Err(format!("{var} must be a whole number"));
                }
                vec![number.to_string()]
            }
            Kind::ListSingle => {
                let chosen = values.first().map(|v| v.trim()).unwrap_or_default();
                if !setting.options.iter().any(|option| option == chosen) {
                    return Err(format!("{var} must be one of its options"));
                }
                vec![chosen.to_string()]
            }
        };
        choice.settings.insert(setting.name.clone(), values);
    }
    Ok(choice)
}
