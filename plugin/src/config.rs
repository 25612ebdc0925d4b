//! Room configuration: a map from `muc#roomconfig` field names to values. Each field is declared,
//! with its type and default, by the one feature module that owns it (see `features`); this module
//! only renders declarations into the owner's form and checks submitted values against them.

use std::collections::BTreeMap;

use serde_json::Value;
use xmpp_parsers::data_forms::{Field, FieldType, Option_};

/// The stored configuration: only fields set away from their defaults need be present.
pub type Config = BTreeMap<String, Value>;

pub enum Kind {
    Boolean(bool),
    /// Free text of at most `max_chars` characters (Unicode scalar values).
    Text {
        default: &'static str,
        max_chars: usize,
    },
    /// A secret of at most `max_chars` characters: shown to owners as text-private.
    Private {
        max_chars: usize,
    },
    /// One of the options `(value, label)`; the default is the first.
    Choice(&'static [(&'static str, &'static str)]),
    /// Any of the options `(value, label)` (rendered list-multi), with the default selection.
    Choices {
        options: &'static [(&'static str, &'static str)],
        default: &'static [&'static str],
    },
    /// A whole number within bounds.
    Number {
        default: u64,
        max: u64,
    },
}

/// One configuration field, as its feature declares it.
pub struct FieldSpec {
    pub var: &'static str,
    pub label: &'static str,
    pub kind: Kind,
}

/// Why a submitted value was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

impl FieldSpec {
    pub fn flag(&self, config: &Config) -> bool {
        match (&self.kind, config.get(self.var)) {
            (_, Some(Value::Bool(value))) => *value,
            (Kind::Boolean(default), _) => *default,
            _ => false,
        }
    }

    /// The text value. A stored text longer than its field's maximum (stored before the
    /// maximum existed) is cut there, so that it renders as any other (a disco identity's name
    /// over the XML parser's 8 KiB token limit would lose the room its identity).
    pub fn text<'a>(&self, config: &'a Config) -> &'a str {
        match (&self.kind, config.get(self.var)) {
            (Kind::Text { max_chars, .. }, Some(Value::String(value))) => {
                cut_to_chars(value, *max_chars)
            }
            (_, Some(Value::String(value))) => value,
            (Kind::Text { default, .. }, _) => default,
            (Kind::Choice(options), _) => options[0].0,
            _ => "",
        }
    }

    pub fn number(&self, config: &Config) -> u64 {
        match (&self.kind, config.get(self.var)) {
            (_, Some(Value::Number(value))) => value.as_u64().unwrap_or_default(),
            (Kind::Number { default, .. }, _) => *default,
            _ => 0,
        }
    }

    /// The selected options of a multiple-choice field.
    pub fn choices(&self, config: &Config) -> Vec<String> {
        match (&self.kind, config.get(self.var)) {
            (_, Some(Value::Array(values))) => values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            (Kind::Choices { default, .. }, _) => default.iter().map(|v| v.to_string()).collect(),
            _ => Vec::new(),
        }
    }

    /// The form field showing the current value.
    pub fn render(&self, config: &Config) -> Field {
        let (type_, values, options) = match &self.kind {
            Kind::Boolean(_) => (
                FieldType::Boolean,
                vec![if self.flag(config) { "1" } else { "0" }.to_string()],
                vec![],
            ),
            Kind::Text { .. } => (
                FieldType::TextSingle,
                vec![self.text(config).to_string()],
                vec![],
            ),
            Kind::Private { .. } => (
                FieldType::TextPrivate,
                vec![self.text(config).to_string()],
                vec![],
            ),
            Kind::Choice(choices) => (
                FieldType::ListSingle,
                vec![self.text(config).to_string()],
                choices
                    .iter()
                    .map(|(value, label)| Option_ {
                        label: Some(label.to_string()),
                        value: value.to_string(),
                    })
                    .collect(),
            ),
            Kind::Choices { options, .. } => (
                FieldType::ListMulti,
                self.choices(config),
                options
                    .iter()
                    .map(|(value, label)| Option_ {
                        label: Some(label.to_string()),
                        value: value.to_string(),
                    })
                    .collect(),
            ),
            Kind::Number { .. } => (
                FieldType::TextSingle,
                vec![self.number(config).to_string()],
                vec![],
            ),
        };
        let mut field = Field::new(self.var, type_);
        field.label = Some(self.label.to_string());
        field.values = values;
        field.options = options;
        field
    }

    /// The stored value for submitted `values`, or why they do not fit this field.
    pub fn parse(&self, values: &[String]) -> Result<Value, Invalid> {
        let single = values
            .first()
            .map(String::as_str)
            .unwrap_or_default()
            .trim();
        let invalid = |what: &str| Invalid(format!("{} must be {what}", self.var));
        match &self.kind {
            Kind::Boolean(_) => match single {
                "1" | "true" => Ok(Value::Bool(true)),
                "0" | "false" => Ok(Value::Bool(false)),
                _ => Err(invalid("a boolean")),
            },
            Kind::Text { max_chars, .. } | Kind::Private { max_chars }
                if single.chars().count() > *max_chars =>
            {
                Err(invalid(&format!("at most {max_chars} characters long")))
            }
            Kind::Text { .. } | Kind::Private { .. } => Ok(Value::String(single.to_string())),
            Kind::Choice(choices) => choices
                .iter()
                .find(|(value, _)| *value == single)
                .map(|(value, _)| Value::String(value.to_string()))
                .ok_or_else(|| invalid("one of its options")),
            Kind::Choices { options, .. } => {
                let is_option = |value: &String| options.iter().any(|(o, _)| *o == value.trim());
                if !values.iter().all(is_option) {
                    return Err(invalid("a selection of its options"));
                }
                // Each option once, in the options' order, however often it was submitted.
                let chosen = options
                    .iter()
                    .filter(|(option, _)| values.iter().any(|value| value.trim() == *option))
                    .map(|(option, _)| Value::String(option.to_string()));
                Ok(Value::Array(chosen.collect()))
            }
            Kind::Number { max, .. } => match single.parse::<u64>() {
                Ok(number) if number <= *max => Ok(Value::from(number)),
                _ => Err(invalid(&format!("a whole number from 0 to {max}"))),
            },
        }
    }
}

/// `text` up to its `max_chars`th character.
fn cut_to_chars(text: &str, max_chars: usize) -> &str {
    text.char_indices()
        .nth(max_chars)
        .map_or(text, |(end, _)| &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: FieldSpec = FieldSpec {
        var: "muc#roomconfig_maxusers",
        label: "Maximum occupants",
        kind: Kind::Number {
            default: 30,
            max: 1000,
        },
    };
    const WHOIS: FieldSpec = FieldSpec {
        var: "muc#roomconfig_whois",
        label: "Who may see real JIDs",
        kind: Kind::Choice(&[("moderators", "Moderators"), ("anyone", "Anyone")]),
    };

    #[test]
    fn defaults_apply_until_a_value_is_stored() {
        let mut config = Config::new();
        assert_eq!(MAX.number(&config), 30);
        assert_eq!(WHOIS.text(&config), "moderators");
        config.insert(MAX.var.into(), MAX.parse(&["50".into()]).unwrap());
        assert_eq!(MAX.number(&config), 50);
    }

    #[test]
    fn values_of_the_wrong_type_are_refused() {
        assert!(MAX.parse(&["lots".into()]).is_err());
        assert!(MAX.parse(&["1001".into()]).is_err());
        assert!(WHOIS.parse(&["everyone".into()]).is_err());
        let flag = FieldSpec {
            var: "f",
            label: "",
            kind: Kind::Boolean(false),
        };
        assert!(flag.parse(&["yes".into()]).is_err());
        assert_eq!(flag.parse(&["true".into()]), Ok(Value::Bool(true)));
    }

    const NAME: FieldSpec = FieldSpec {
        var: "muc#roomconfig_roomname",
        label: "Title",
        kind: Kind::Text {
            default: "",
            max_chars: 5,
        },
    };

    #[test]
    fn text_over_its_maximum_is_refused_naming_the_field() {
        assert_eq!(
            NAME.parse(&["héllo".into()]),
            Ok(Value::String("héllo".into())),
            "the maximum counts characters, not bytes"
        );
        let Err(Invalid(why)) = NAME.parse(&["hello!".into()]) else {
            panic!("six characters accepted");
        };
        assert_eq!(
            why,
            "muc#roomconfig_roomname must be at most 5 characters long"
        );
        let secret = FieldSpec {
            var: "muc#roomconfig_roomsecret",
            label: "",
            kind: Kind::Private { max_chars: 3 },
        };
        assert!(secret.parse(&["abcd".into()]).is_err());
    }

    #[test]
    fn text_stored_before_its_maximum_shows_cut_at_it() {
        let mut config = Config::new();
        config.insert(NAME.var.into(), Value::String("ééééééé".into()));
        assert_eq!(NAME.text(&config), "ééééé");
        assert_eq!(NAME.render(&config).values, ["ééééé"]);
    }

    #[test]
    fn a_multiple_choice_keeps_each_option_once() {
        let roles = FieldSpec {
            var: "muc#roomconfig_presencebroadcast",
            label: "",
            kind: Kind::Choices {
                options: &[("moderator", ""), ("visitor", "")],
                default: &[],
            },
        };
        let submitted = vec!["visitor".to_string(); 1000];
        assert_eq!(
            roles.parse(&[submitted, vec!["moderator".into()]].concat()),
            Ok(Value::Array(vec!["moderator".into(), "visitor".into()]))
        );
        assert!(roles.parse(&["owner".into()]).is_err());
    }

    #[test]
    fn rendering_shows_current_values_and_options() {
        let field = WHOIS.render(&Config::new());
        assert_eq!(field.values, ["moderators"]);
        assert_eq!(field.options.len(), 2);
        assert_eq!(MAX.render(&Config::new()).values, ["30"]);
    }
}
