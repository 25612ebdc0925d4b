//! Text an extension hands over: what goes into a stanza (a rewritten or said body, a refusal,
//! its manifest's labels) must be characters XML 1.0 can carry, and what goes into a log line is
//! kept on one line. Checked here, where the host receives it, so that the MUC logic is never
//! given text it cannot serialise (it would trap) and a bad text is the extension's fault.

use minidom::rxml::strings::validate_cdata;
use minidom::rxml::Error;

/// Why `text` cannot go into a stanza, naming the first character outside XML 1.0's `Char`
/// production (C0 controls but tab, newline and carriage return; U+FFFE, U+FFFF); `None` when
/// it can. Markup-looking text is fine: it is escaped when written.
pub fn unfit_for_xml(text: &str) -> Option<String> {
    match validate_cdata(text) {
        Ok(()) => None,
        Err(Error::UnexpectedChar(_, c, _)) => Some(format!(
            "a character XML cannot carry (U+{:04X})",
            u32::from(c)
        )),
        Err(other) => Some(format!("text XML cannot carry ({other})")),
    }
}

/// A log line as written: control characters (line breaks included, which could forge other
/// lines) escaped, everything else as it came.
pub fn log_line(message: &str) -> String {
    if !message.contains(char::is_control) {
        return message.to_string();
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_outside_xml_s_char_production_are_named() {
        for (text, named) in [
            ("a\u{1}b", "U+0001"),
            ("\u{0}", "U+0000"),
            ("\u{1F}", "U+001F"),
            ("ok \u{FFFE}", "U+FFFE"),
            ("\u{FFFF}", "U+FFFF"),
        ] {
            let why = unfit_for_xml(text).unwrap_or_default();
            assert!(why.contains(named), "{text:?}: {why}");
        }
    }

    #[test]
    fn markup_tabs_line_breaks_and_any_other_character_are_fit() {
        for text in [
            "",
            "</body></message><x xmlns='urn:evil'>&amp;",
            "tab\tnewline\ncarriage\r",
            "\u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{10FFFF}",
            "non-ASCII: é 漢字 🎲",
        ] {
            assert_eq!(unfit_for_xml(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_log_line_stays_one_line_with_its_control_characters_escaped() {
        assert_eq!(log_line("plain é"), "plain é");
        assert_eq!(
            log_line("one\nERROR forged\r\u{1}\u{1b}[31m"),
            "one\\nERROR forged\\r\\u{1}\\u{1b}[31m"
        );
    }
}
