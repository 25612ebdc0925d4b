//! Word filter: masks or rejects groupchat messages that contain a filtered word, and refuses
//! nicks that contain one.
//!
//! A message matches when one of its words (the runs of letters and digits between other
//! characters) equals a filtered word, ignoring case. A nick matches when it contains a filtered
//! word anywhere, ignoring case.
//!
//! Settings:
//! - `words` (text-multi, default `badword`): the filtered words, one per line.
//! - `action` (list-single, `mask` or `reject`, default `mask`): `mask` replaces each matched
//!   word with as many `*` as it has characters; `reject` refuses the whole message.

#[cfg(target_arch = "wasm32")]
mod bindings;

pub const REJECTION: &str = "Your message contains a filtered word";
pub const NICK_REFUSAL: &str = "That nickname contains a filtered word";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Mask,
    Reject,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Pass,
    Rewrite(String),
    Reject,
}

/// The filtered words, lowercased, from the `words` setting: each value may hold several lines.
pub fn parse_words(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|value| value.lines())
        .map(str::trim)
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The `action` setting; anything but `reject` masks.
pub fn parse_action(values: &[String]) -> Action {
    match values.first().map(String::as_str) {
        Some("reject") => Action::Reject,
        _ => Action::Mask,
    }
}

pub fn check_message(body: &str, words: &[String], action: Action) -> Verdict {
    // Only words count, not the punctuation and spaces between them.
    let is_filtered =
        |run: &str| run.starts_with(char::is_alphanumeric) && words.contains(&run.to_lowercase());
    if !runs(body).any(is_filtered) {
        return Verdict::Pass;
    }
    match action {
        Action::Reject => Verdict::Reject,
        Action::Mask => Verdict::Rewrite(
            runs(body)
                .map(|run| {
                    if is_filtered(run) {
                        "*".repeat(run.chars().count())
                    } else {
                        run.to_string()
                    }
                })
                .collect(),
        ),
    }
}

pub fn nick_is_filtered(nick: &str, words: &[String]) -> bool {
    let nick = nick.to_lowercase();
    words.iter().any(|word| nick.contains(word.as_str()))
}

/// `text` cut, in order, into alternating runs of alphanumeric and of other characters.
fn runs(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let alphanumeric = rest.chars().next()?.is_alphanumeric();
        let end = rest
            .find(|c: char| c.is_alphanumeric() != alphanumeric)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        parse_words(&list.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn words_come_from_every_line_of_every_value() {
        assert_eq!(
            words(&["Foo\n bar \n\n", "baz"]),
            ["foo", "bar", "baz"].map(String::from)
        );
    }

    #[test]
    fn action_defaults_to_mask() {
        assert_eq!(parse_action(&["reject".into()]), Action::Reject);
        assert_eq!(parse_action(&["mask".into()]), Action::Mask);
        assert_eq!(parse_action(&["other".into()]), Action::Mask);
        assert_eq!(parse_action(&[]), Action::Mask);
    }

    #[test]
    fn masks_whole_words_ignoring_case() {
        assert_eq!(
            check_message(
                "A BadWord, badword! badwords",
                &words(&["badword"]),
                Action::Mask
            ),
            Verdict::Rewrite("A *******, *******! badwords".into())
        );
    }

    #[test]
    fn mask_keeps_the_character_count() {
        assert_eq!(
            check_message("été!", &words(&["ÉTÉ"]), Action::Mask),
            Verdict::Rewrite("***!".into())
        );
    }

    #[test]
    fn rejects_when_asked_to() {
        assert_eq!(
            check_message("so badword", &words(&["badword"]), Action::Reject),
            Verdict::Reject
        );
    }

    #[test]
    fn passes_a_clean_message() {
        let list = words(&["badword", "??"]);
        assert_eq!(
            check_message("badwords ?? ok", &list, Action::Mask),
            Verdict::Pass
        );
        assert_eq!(check_message("", &list, Action::Reject), Verdict::Pass);
    }

    #[test]
    fn nick_matches_a_substring_ignoring_case() {
        let list = words(&["badword"]);
        assert!(nick_is_filtered("xXBadWordXx", &list));
        assert!(!nick_is_filtered("alice", &list));
    }
}
