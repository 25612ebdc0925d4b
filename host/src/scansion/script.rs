//! Parsing of `.scs` scripts: a `# title`, `[Client]` blocks, a `-----` line, then steps.
//!
//! Stanzas are kept as raw text because their `${Name's full JID}` placeholders can only be
//! filled in at run time, once each client's bound JID is known ([`substitute`]).

use std::collections::HashMap;
use std::iter::Peekable;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use minidom::{Element, Node};

/// A parsed script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub title: String,
    pub clients: Vec<ClientDecl>,
    pub steps: Vec<Step>,
}

/// One `[Client] Name` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDecl {
    pub name: String,
    pub jid: String,
    pub password: String,
}

/// One step of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the step's first line in the file.
    pub line: usize,
    pub client: String,
    pub action: Action,
}

/// What a step's client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Connects,
    Disconnects,
    /// One stanza's raw XML text.
    Sends(String),
    /// Each string is one stanza's raw XML text; they may arrive in any order.
    Receives(Vec<String>),
    ReceivesNothing,
    /// `NAME waits N seconds` (our addition: time passes, timers fire).
    Waits(std::time::Duration),
}

/// Reads and parses the script at `path`; errors name the file and the line.
pub fn load(path: &Path) -> Result<Script> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).map_err(|error| anyhow!("{}: {error:#}", path.display()))
}

/// Parses a script's text; errors name the line.
pub fn parse(text: &str) -> Result<Script> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .peekable();
    let title = parse_title(&mut lines)?;
    let clients = parse_header(&mut lines)?;
    let steps = parse_steps(&mut lines, &clients)?;
    Ok(Script {
        title,
        clients,
        steps,
    })
}

fn parse_title<'a>(lines: &mut impl Iterator<Item = (usize, &'a str)>) -> Result<String> {
    match lines.next() {
        Some((_, line)) if line.starts_with('#') => Ok(line.trim_start_matches('#').trim().into()),
        _ => bail!("line 1: a script starts with a `# title` line"),
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let line = line.trim_end();
    line.is_empty() || line.starts_with('#')
}

fn is_indented(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end();
    line.len() >= 3 && line.chars().all(|c| c == '-')
}

/// A `[Client]` block while its keys are being read.
struct ClientDraft {
    line: usize,
    name: String,
    jid: Option<String>,
    password: Option<String>,
}

impl ClientDraft {
    fn set(&mut self, key: &str, value: &str) {
        match key {
            "jid" => self.jid = Some(value.into()),
            "password" => self.password = Some(value.into()),
            _ => {} // Other scansion keys configure the client, which the harness does itself.
        }
    }

    fn finish(self) -> Result<ClientDecl> {
        let jid = self
            .jid
            .ok_or_else(|| anyhow!("line {}: client {} has no `jid:`", self.line, self.name))?;
        // Any password is accepted (the scripts run with insecure authentication).
        let password = self.password.unwrap_or_default();
        Ok(ClientDecl {
            name: self.name,
            jid,
            password,
        })
    }
}

/// Reads `[Client]` blocks up to and including the `-----` line.
fn parse_header<'a>(lines: &mut impl Iterator<Item = (usize, &'a str)>) -> Result<Vec<ClientDecl>> {
    let mut drafts: Vec<ClientDraft> = Vec::new();
    for (number, line) in lines {
        if is_separator(line) {
            return drafts.into_iter().map(ClientDraft::finish).collect();
        }
        if is_blank_or_comment(line) {
            continue;
        }
        if let Some(name) = line.strip_prefix("[Client]") {
            let name = name.trim().to_owned();
            ensure!(!name.is_empty(), "line {number}: `[Client]` needs a name");
            ensure!(
                !drafts.iter().any(|earlier| earlier.name == name),
                "line {number}: client {name} is declared twice"
            );
            drafts.push(ClientDraft {
                line: number,
                name,
                jid: None,
                password: None,
            });
        } else if let (true, Some(draft)) = (is_indented(line), drafts.last_mut()) {
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| anyhow!("line {number}: expected `key: value`"))?;
            draft.set(key.trim(), value.trim());
        } else {
            bail!("line {number}: expected a `[Client]` block or the `-----` line");
        }
    }
    bail!("the header has no `-----` line ending it")
}

/// What a step line says a client does; `sends:` and `receives:` are followed by XML.
#[derive(Clone, Copy)]
enum Verb {
    Connects,
    Disconnects,
    Sends,
    Receives,
    ReceivesNothing,
}

/// Step-line endings, longest first where one ends another.
const VERBS: [(&str, Verb); 5] = [
    (" receives: nothing", Verb::ReceivesNothing),
    (" receives:", Verb::Receives),
    (" sends:", Verb::Sends),
    (" disconnects", Verb::Disconnects),
    (" connects", Verb::Connects),
];

fn parse_steps<'a, I: Iterator<Item = (usize, &'a str)>>(
    lines: &mut Peekable<I>,
    clients: &[ClientDecl],
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    while let Some((number, line)) = lines.next() {
        if is_blank_or_comment(line) {
            continue;
        }
        ensure!(
            !is_indented(line),
            "line {number}: indented line outside a sends:/receives: block"
        );
        if let Some((client, waited)) = parse_wait(line.trim_end()) {
            ensure!(
                clients.iter().any(|declared| declared.name == client),
                "line {number}: no [Client] block for {client}"
            );
            steps.push(Step {
                line: number,
                client: client.into(),
                action: Action::Waits(waited),
            });
            continue;
        }
        let (client, verb) = parse_step_line(line.trim_end())
            .ok_or_else(|| anyhow!("line {number}: not a step: {line}"))?;
        ensure!(
            clients.iter().any(|declared| declared.name == client),
            "line {number}: no [Client] block for {client}"
        );
        let action = parse_action(verb, &take_block(lines))
            .map_err(|error| anyhow!("line {number}: {error:#}"))?;
        steps.push(Step {
            line: number,
            client: client.into(),
            action,
        });
    }
    Ok(steps)
}

/// `NAME waits N seconds` (or `second`).
fn parse_wait(line: &str) -> Option<(&str, std::time::Duration)> {
    let rest = line
        .strip_suffix(" seconds")
        .or_else(|| line.strip_suffix(" second"))?;
    let (client, seconds) = rest.rsplit_once(" waits ")?;
    let seconds: u64 = seconds.trim().parse().ok()?;
    let client = client.trim();
    (!client.is_empty()).then_some((client, std::time::Duration::from_secs(seconds)))
}

fn parse_step_line(line: &str) -> Option<(&str, Verb)> {
    VERBS.iter().find_map(|(ending, verb)| {
        let client = line.strip_suffix(ending)?.trim();
        (!client.is_empty()).then_some((client, *verb))
    })
}

/// The indented lines after a step line (blank lines between them included).
fn take_block<'a, I: Iterator<Item = (usize, &'a str)>>(lines: &mut Peekable<I>) -> String {
    let mut block = String::new();
    while let Some((_, line)) = lines.next_if(|(_, line)| is_indented(line) || line.is_empty()) {
        block.push_str(line);
        block.push('\n');
    }
    block
}

fn parse_action(verb: Verb, block: &str) -> Result<Action> {
    let needs_xml = matches!(verb, Verb::Sends | Verb::Receives);
    ensure!(
        needs_xml || block.trim().is_empty(),
        "this step takes no XML"
    );
    let action = match verb {
        Verb::Connects => Action::Connects,
        Verb::Disconnects => Action::Disconnects,
        Verb::ReceivesNothing => Action::ReceivesNothing,
        Verb::Sends => match <[String; 1]>::try_from(split_stanzas(block)?) {
            Ok([stanza]) => Action::Sends(stanza),
            Err(stanzas) => bail!("sends: needs exactly one stanza, found {}", stanzas.len()),
        },
        Verb::Receives => {
            let stanzas = split_stanzas(block)?;
            ensure!(
                !stanzas.is_empty(),
                "receives: needs a stanza (or `receives: nothing`)"
            );
            Action::Receives(stanzas)
        }
    };
    Ok(action)
}

/// A lexical piece of raw XML, enough to track element depth.
enum Token<'a> {
    Open(&'a str),
    Close(&'a str),
    SelfClosing(&'a str),
    /// Character data, CDATA sections included.
    Text(&'a str),
    Comment,
}

/// Splits raw XML into its top-level elements, dropping comments (minidom rejects them).
fn split_stanzas(xml: &str) -> Result<Vec<String>> {
    let mut stanzas = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut rest = xml;
    while !rest.is_empty() {
        let (token, after) = next_token(rest)?;
        rest = after;
        let piece = match token {
            Token::Comment => continue,
            Token::Text(text) if depth == 0 => {
                ensure!(
                    text.trim().is_empty(),
                    "text outside any stanza: {}",
                    text.trim()
                );
                continue;
            }
            Token::Text(text) => text,
            Token::Open(tag) => {
                depth += 1;
                tag
            }
            Token::Close(tag) => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| anyhow!("unexpected {tag}"))?;
                tag
            }
            Token::SelfClosing(tag) => tag,
        };
        current.push_str(piece);
        if depth == 0 {
            stanzas.push(std::mem::take(&mut current));
        }
    }
    ensure!(depth == 0, "unclosed element in: {}", current.trim());
    Ok(stanzas)
}

/// The token at the start of `xml`, and the text after it.
fn next_token(xml: &str) -> Result<(Token<'_>, &str)> {
    if let Some(comment) = xml.strip_prefix("<!--") {
        let end = comment.find("-->").context("unterminated comment")?;
        return Ok((Token::Comment, &comment[end + "-->".len()..]));
    }
    if xml.starts_with("<![CDATA[") {
        let end = xml.find("]]>").context("unterminated CDATA section")? + "]]>".len();
        return Ok((Token::Text(&xml[..end]), &xml[end..]));
    }
    if xml.starts_with('<') {
        let (tag, after) = xml.split_at(tag_length(xml)?);
        let token = if tag.starts_with("</") {
            Token::Close(tag)
        } else if tag.starts_with("<?") || tag.starts_with("<!") {
            bail!("unsupported markup: {tag}")
        } else if tag.ends_with("/>") {
            Token::SelfClosing(tag)
        } else {
            Token::Open(tag)
        };
        return Ok((token, after));
    }
    let end = xml.find('<').unwrap_or(xml.len());
    Ok((Token::Text(&xml[..end]), &xml[end..]))
}

/// Length of the tag at the start of `xml`, up to its `>`; a `>` inside a quoted attribute
/// value does not end it.
fn tag_length(xml: &str) -> Result<usize> {
    let mut quote = None;
    for (index, c) in xml.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '>') => return Ok(index + 1),
            _ => {}
        }
    }
    bail!(
        "unterminated tag: {}",
        xml.lines().next().unwrap_or_default()
    )
}

/// Replaces `${Name's full JID}` with the client's bound full JID and `${Name's JID}` with its
/// bare JID; `jids` maps client names to bound full JIDs.
pub fn substitute(xml: &str, jids: &HashMap<String, String>) -> Result<String> {
    substitute_with(xml, jids, &HashMap::new())
}

/// [`substitute`], where `${NAME}` is also a value captured earlier with
/// `{scansion:capture:NAME}` (see [`super::matcher`]).
pub fn substitute_with(
    xml: &str,
    jids: &HashMap<String, String>,
    captured: &HashMap<String, String>,
) -> Result<String> {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let placeholder = &rest[start + "${".len()..];
        let end = placeholder
            .find('}')
            .ok_or_else(|| anyhow!("unterminated placeholder: {}", &rest[start..]))?;
        let name = &placeholder[..end];
        let value = match captured.get(name) {
            Some(value) => value.as_str(),
            None => resolve(name, jids)?,
        };
        out.push_str(&escape_xml(value));
        rest = &placeholder[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve<'j>(placeholder: &str, jids: &'j HashMap<String, String>) -> Result<&'j str> {
    let bound_jid = |name: &str| {
        jids.get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("${{{placeholder}}}: client {name} has no bound JID"))
    };
    if let Some(name) = placeholder.strip_suffix("'s full JID") {
        return bound_jid(name);
    }
    if let Some(name) = placeholder.strip_suffix("'s JID") {
        let full = bound_jid(name)?;
        return Ok(full.split_once('/').map_or(full, |(bare, _resource)| bare));
    }
    bail!("unknown placeholder ${{{placeholder}}}")
}

/// `value` escaped for use in XML text or a quoted attribute value (a JID may contain `&`, `'`).
pub(super) fn escape_xml(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\'' => escaped.push_str("&apos;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Parses one stanza, with `jabber:client` as the default namespace.
pub fn parse_stanza(xml: &str) -> Result<Element> {
    // The scripts use a `scansion:` prefix they never declare, which minidom rejects; the
    // attribute only instructs the matcher, so it becomes a plain `scansion-strict`.
    let xml = xml.replace("scansion:strict=", "scansion-strict=");
    let mut root: Element = format!("<stanzas xmlns='jabber:client'>{xml}</stanzas>")
        .parse()
        .with_context(|| format!("invalid XML: {}", xml.trim()))?;
    let mut stanzas = Vec::new();
    for node in root.take_nodes() {
        match node {
            Node::Element(stanza) => stanzas.push(stanza),
            Node::Text(text) => ensure!(text.trim().is_empty(), "text outside the stanza: {text}"),
        }
    }
    match <[Element; 1]>::try_from(stanzas) {
        Ok([stanza]) => Ok(stanza),
        Err(stanzas) => bail!(
            "expected one stanza, found {}: {}",
            stanzas.len(),
            xml.trim()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
# Two clients talk
# (a comment in the header)

[Client] Romeo
\tjid: romeo@localhost/balcony
\tpassword: secret
\tcolour: red

[Client] Juliet's phone
  jid: juliet@localhost

-----

Romeo connects

# a comment between steps
Romeo sends:
\t<message to='juliet@localhost' type='chat'>
\t\t<body>Hi</body>
\t</message>

Juliet's phone receives:
\t<message from=\"${Romeo's full JID}\"/>
\t<!-- a second one -->
\t<presence from='a@b/c>d'>
\t\t<status>a/b</status>

\t</presence>

Juliet's phone receives: nothing

Romeo disconnects
";

    #[test]
    fn parses_header_and_steps() {
        let script = parse(SCRIPT).unwrap();
        assert_eq!(script.title, "Two clients talk");
        let romeo = ClientDecl {
            name: "Romeo".into(),
            jid: "romeo@localhost/balcony".into(),
            password: "secret".into(),
        };
        let phone = ClientDecl {
            name: "Juliet's phone".into(),
            jid: "juliet@localhost".into(),
            password: String::new(),
        };
        assert_eq!(script.clients, [romeo, phone]);
        let steps: Vec<(usize, &str)> = script
            .steps
            .iter()
            .map(|step| (step.line, step.client.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                (14, "Romeo"),
                (17, "Romeo"),
                (22, "Juliet's phone"),
                (30, "Juliet's phone"),
                (32, "Romeo")
            ]
        );
        assert_eq!(script.steps[0].action, Action::Connects);
        assert_eq!(script.steps[3].action, Action::ReceivesNothing);
        assert_eq!(script.steps[4].action, Action::Disconnects);
    }

    #[test]
    fn keeps_raw_stanza_text() {
        let script = parse(SCRIPT).unwrap();
        let Action::Sends(sent) = &script.steps[1].action else {
            panic!("not a send")
        };
        assert!(sent.starts_with("<message to='juliet@localhost'"));
        assert!(sent.ends_with("</message>"));
        let Action::Receives(stanzas) = &script.steps[2].action else {
            panic!("not a receive")
        };
        assert_eq!(stanzas.len(), 2);
        assert_eq!(stanzas[0], "<message from=\"${Romeo's full JID}\"/>");
        assert!(stanzas[1].starts_with("<presence from='a@b/c>d'>"));
        assert!(stanzas[1].contains("<status>a/b</status>"));
    }

    #[test]
    fn splits_stanzas_and_drops_comments() {
        let xml = "<a x='/>'/><!-- <b> --><b><c/><!-- </b> --><d>t</d></b>\n<e/>";
        assert_eq!(
            split_stanzas(xml).unwrap(),
            ["<a x='/>'/>", "<b><c/><d>t</d></b>", "<e/>"]
        );
    }

    #[test]
    fn rejects_malformed_blocks() {
        assert!(split_stanzas("<a><b/>")
            .unwrap_err()
            .to_string()
            .contains("unclosed"));
        assert!(split_stanzas("</a>").is_err());
        assert!(split_stanzas("stray <a/>").is_err());
        assert!(split_stanzas("<a x='1/>").is_err());
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn errors_name_the_line() {
        let header = "# t\n[Client] Romeo\n\tjid: r@localhost\n-----\n";
        assert!(error_of(&format!("{header}Tybalt connects\n"))
            .starts_with("line 5: no [Client] block"));
        assert!(error_of(&format!("{header}\nRomeo dances\n")).starts_with("line 6: not a step"));
        assert!(
            error_of(&format!("{header}Romeo sends:\n\t<a><b/>\n")).starts_with("line 5: unclosed")
        );
        assert!(error_of(&format!("{header}Romeo sends:\n\t<a/><b/>\n")).contains("exactly one"));
        assert!(error_of(&format!("{header}Romeo receives:\n")).contains("needs a stanza"));
        assert!(error_of(&format!("{header}\tstray\n")).starts_with("line 5: indented"));
        assert!(error_of("# t\n[Client] Romeo\n\tjid: r@localhost\n").contains("-----"));
        assert!(error_of("# t\n[Client] Romeo\n-----\n").starts_with("line 2: client Romeo has no"));
        assert!(error_of("no title\n").starts_with("line 1:"));
        let twice = "# t\n[Client] Romeo\n\tjid: a@b\n[Client] Romeo\n\tjid: c@d\n-----\n";
        assert!(error_of(twice).starts_with("line 4: client Romeo is declared twice"));
    }

    #[test]
    fn load_names_the_file() {
        let path = std::env::temp_dir().join(format!("scansion-{}.scs", std::process::id()));
        std::fs::write(&path, "# t\n-----\nRomeo connects\n").unwrap();
        let error = format!("{:#}", load(&path).unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            error,
            format!("{}: line 3: no [Client] block for Romeo", path.display())
        );
    }

    fn jids() -> HashMap<String, String> {
        HashMap::from([
            ("Romeo".into(), "romeo@localhost/balcony".into()),
            ("Juliet's phone".into(), "o'juliet@localhost/phone".into()),
        ])
    }

    #[test]
    fn substitutes_full_and_bare_jids() {
        let xml = "<a x=\"${Romeo's full JID}\" y=\"${Romeo's JID}\">${Juliet's phone's JID}</a>";
        assert_eq!(
            substitute(xml, &jids()).unwrap(),
            "<a x=\"romeo@localhost/balcony\" y=\"romeo@localhost\">o&apos;juliet@localhost</a>"
        );
    }

    #[test]
    fn substitution_rejects_unknown_names_and_forms() {
        assert!(substitute("${Tybalt's JID}", &jids())
            .unwrap_err()
            .to_string()
            .contains("Tybalt"));
        assert!(substitute("${Romeo's nick}", &jids()).is_err());
        assert!(substitute("${Romeo's JID", &jids()).is_err());
    }

    #[test]
    fn parses_a_stanza_in_the_client_namespace() {
        let stanza = parse_stanza(
            "<presence><x xmlns='http://jabber.org/protocol/muc#user' scansion:strict='false'/></presence>",
        )
        .unwrap();
        assert_eq!(
            (stanza.name(), stanza.ns().as_str()),
            ("presence", "jabber:client")
        );
        let x = stanza.children().next().unwrap();
        assert_eq!(x.ns(), "http://jabber.org/protocol/muc#user");
        assert_eq!(x.attr("scansion-strict"), Some("false"));
    }

    #[test]
    fn a_stanza_must_be_one_element() {
        assert!(parse_stanza("<a/><b/>").is_err());
        assert!(parse_stanza("text <a/>").is_err());
        assert!(parse_stanza("<a>").is_err());
    }

    /// Parses every Prosody script, and every stanza in it once its placeholders are filled.
    #[test]
    fn parses_the_prosody_scripts() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/prosody-scansion"
        ));
        let Ok(entries) = std::fs::read_dir(dir) else {
            println!("skipped: no scripts at {}", dir.display());
            return;
        };
        let mut paths: Vec<_> = entries.map(|entry| entry.unwrap().path()).collect();
        paths.retain(|path| path.extension().is_some_and(|ext| ext == "scs"));
        assert_eq!(paths.len(), 18);
        for path in paths {
            let script = load(&path).unwrap();
            assert!(!script.steps.is_empty(), "{}", path.display());
            let jids = script
                .clients
                .iter()
                .map(|c| (c.name.clone(), format!("{}/r", c.jid)));
            let jids = jids.collect();
            // What a script captures, it may use later.
            let captured: HashMap<String, String> = script
                .steps
                .iter()
                .flat_map(|step| match &step.action {
                    Action::Receives(xmls) => xmls.clone(),
                    _ => Vec::new(),
                })
                .flat_map(|xml| {
                    xml.split("{scansion:capture:")
                        .skip(1)
                        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
                        .collect::<Vec<_>>()
                })
                .map(|name| (name, "captured".to_string()))
                .collect();
            for step in &script.steps {
                let stanzas = match &step.action {
                    Action::Sends(xml) => std::slice::from_ref(xml),
                    Action::Receives(xmls) => xmls.as_slice(),
                    _ => &[],
                };
                for xml in stanzas {
                    let parsed =
                        substitute_with(xml, &jids, &captured).and_then(|xml| parse_stanza(&xml));
                    assert!(
                        parsed.is_ok(),
                        "{}:{}: {:?}",
                        path.display(),
                        step.line,
                        parsed
                    );
                }
            }
        }
    }

    #[test]
    fn waits_take_whole_seconds_and_a_declared_client() {
        let header = "# t\n[Client] Romeo\n\tjid: romeo@localhost\n\tpassword: p\n-----\n";
        let script = parse(&format!(
            "{header}Romeo waits 61 seconds\nRomeo waits 1 second\n"
        ))
        .unwrap();
        assert_eq!(
            script.steps[0].action,
            Action::Waits(std::time::Duration::from_secs(61))
        );
        assert_eq!(
            script.steps[1].action,
            Action::Waits(std::time::Duration::from_secs(1))
        );
        assert!(parse(&format!("{header}Tybalt waits 2 seconds\n")).is_err());
        assert!(parse(&format!("{header}Romeo waits a while seconds\n")).is_err());
    }
}
