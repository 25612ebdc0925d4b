//! Plays a [`Script`] against a [`Harness`], step by step, stopping at the first failure.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use minidom::Element;

use super::matcher::{capture, describe, drop_prosody_only, pair_up};
use super::script::{parse_stanza, substitute_with, Action, Script, Step};
use super::Harness;

/// Why a script failed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The failing step's line in the script.
    pub line: usize,
    pub message: String,
    /// The expected stanzas still unmatched, serialized.
    pub expected: Vec<String>,
    /// The stanzas the client got while the step looked that matched nothing, serialized.
    pub received: Vec<String>,
}

impl Failure {
    fn new(line: usize, message: impl Into<String>) -> Self {
        Failure {
            line,
            message: message.into(),
            expected: Vec::new(),
            received: Vec::new(),
        }
    }
}

/// Turns an error at the step on `line` into a [`Failure`].
fn at_line(line: usize) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure::new(line, format!("{error:#}"))
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)?;
        if self.expected.is_empty() && self.received.is_empty() {
            return Ok(());
        }
        write_stanzas(f, "expected", &self.expected)?;
        write_stanzas(f, "received", &self.received)
    }
}

fn write_stanzas(f: &mut fmt::Formatter<'_>, heading: &str, stanzas: &[String]) -> fmt::Result {
    if stanzas.is_empty() {
        return write!(f, "\n{heading}: nothing");
    }
    write!(f, "\n{heading}:")?;
    for line in stanzas.iter().flat_map(|stanza| stanza.lines()) {
        write!(f, "\n    {line}")?;
    }
    Ok(())
}

impl std::error::Error for Failure {}

/// How a script is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a receives step waits for each stanza: 0 in-process, a few seconds over a network.
    pub wait: Duration,
}

/// Runs `script` against `harness`; the first failing step ends the run.
pub fn run(script: &Script, harness: &mut dyn Harness, options: &Options) -> Result<(), Failure> {
    let mut runner = Runner {
        script,
        harness,
        wait: options.wait,
        sessions: HashMap::new(),
        // Scripts name a client's JID before it connects (to make it a member, say): until it
        // binds, its JID is the one its `[Client]` block declares.
        bound_jids: script
            .clients
            .iter()
            .map(|client| (client.name.clone(), client.jid.clone()))
            .collect(),
        captured: HashMap::new(),
    };
    script.steps.iter().try_for_each(|step| runner.play(step))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    Connected,
    Disconnected,
}

struct Runner<'a> {
    script: &'a Script,
    harness: &'a mut dyn Harness,
    wait: Duration,
    sessions: HashMap<String, Session>,
    /// Client name -> bound full JID (the declared JID until it connects), kept after a
    /// disconnect for later placeholders.
    bound_jids: HashMap<String, String>,
    /// Values taken with `{scansion:capture:NAME}`, for `${NAME}` in later steps.
    captured: HashMap<String, String>,
}

impl Runner<'_> {
    fn play(&mut self, step: &Step) -> Result<(), Failure> {
        let (line, client) = (step.line, step.client.as_str());
        match &step.action {
            Action::Connects => self.connect(line, client),
            Action::Disconnects => self.disconnect(line, client),
            Action::Sends(xml) => self.send(line, client, xml),
            Action::Receives(xmls) => self.receive(line, client, xmls),
            Action::ReceivesNothing => self.receive_nothing(line, client),
            Action::Waits(duration) => self
                .harness
                .wait(*duration)
                .map_err(|error| Failure::new(line, format!("waiting: {error:#}"))),
        }
    }

    fn require_connected(&self, line: usize, client: &str) -> Result<(), Failure> {
        match self.sessions.get(client) {
            Some(Session::Connected) => Ok(()),
            Some(Session::Disconnected) => {
                Err(Failure::new(line, format!("{client} has disconnected")))
            }
            None => Err(Failure::new(line, format!("{client} has not connected"))),
        }
    }

    fn connect(&mut self, line: usize, client: &str) -> Result<(), Failure> {
        let clients = &self.script.clients;
        let declared = clients
            .iter()
            .find(|declared| declared.name == client)
            .ok_or_else(|| Failure::new(line, format!("no [Client] block for {client}")))?;
        if self.sessions.get(client) == Some(&Session::Connected) {
            return Err(Failure::new(line, format!("{client} is already connected")));
        }
        let bound = self
            .harness
            .connect(client, &declared.jid, &declared.password)
            .map_err(at_line(line))?;
        self.bound_jids.insert(client.to_owned(), bound);
        self.sessions.insert(client.to_owned(), Session::Connected);
        Ok(())
    }

    fn disconnect(&mut self, line: usize, client: &str) -> Result<(), Failure> {
        self.require_connected(line, client)?;
        self.harness.disconnect(client).map_err(at_line(line))?;
        self.sessions
            .insert(client.to_owned(), Session::Disconnected);
        Ok(())
    }

    fn send(&mut self, line: usize, client: &str, xml: &str) -> Result<(), Failure> {
        if self.sessions.get(client) == Some(&Session::Disconnected) {
            // muc_outcast_reason.scs ends with a send after its disconnect, which Prosody
            // passes: a closed session has nothing to send with, so the step does nothing.
            tracing::debug!(line, client, "skipping sends: the client has disconnected");
            return Ok(());
        }
        self.require_connected(line, client)?;
        let stanza = self.stanza(xml).map_err(at_line(line))?;
        self.harness.send(client, stanza).map_err(at_line(line))
    }

    /// Pulls stanzas until every expected one is matched; stanzas matching none are skipped.
    fn receive(&mut self, line: usize, client: &str, xmls: &[String]) -> Result<(), Failure> {
        self.require_connected(line, client)?;
        let expected = xmls
            .iter()
            .map(|xml| self.expected_stanza(xml))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(at_line(line))?;
        let mut matched: Vec<Element> = Vec::new();
        let mut skipped: Vec<Element> = Vec::new();
        while matched.len() < expected.len() {
            let Some(stanza) = self.harness.next_stanza(client, self.wait) else {
                return Err(Failure {
                    line,
                    message: format!("{client} did not receive what the script expects"),
                    expected: unmatched(&expected, &matched).map(describe).collect(),
                    received: skipped.iter().map(describe).collect(),
                });
            };
            if pairs_with_one_more(&expected, &matched, &stanza) {
                matched.push(stanza);
            } else {
                tracing::debug!(line, client, stanza = %describe(&stanza), "skipping stanza");
                skipped.push(stanza);
            }
        }
        let pairs = pair_up(&refs(&expected), &refs(&matched));
        for (wanted, got) in expected.iter().zip(pairs) {
            if let Some(got) = got {
                capture(wanted, &matched[got], &mut self.captured);
            }
        }
        Ok(())
    }

    fn receive_nothing(&mut self, line: usize, client: &str) -> Result<(), Failure> {
        self.require_connected(line, client)?;
        match self.harness.next_stanza(client, self.wait) {
            None => Ok(()),
            Some(stanza) => Err(Failure {
                received: vec![describe(&stanza)],
                ..Failure::new(
                    line,
                    format!("{client} received a stanza, expected nothing"),
                )
            }),
        }
    }

    fn stanza(&self, xml: &str) -> anyhow::Result<Element> {
        parse_stanza(&substitute_with(xml, &self.bound_jids, &self.captured)?)
    }

    fn expected_stanza(&self, xml: &str) -> anyhow::Result<Element> {
        let mut stanza = self.stanza(xml)?;
        drop_prosody_only(&mut stanza);
        Ok(stanza)
    }
}

/// Whether `stanza` takes an expected stanza that `matched` leaves free (re-pairing `matched`
/// if needed).
fn pairs_with_one_more(expected: &[Element], matched: &[Element], stanza: &Element) -> bool {
    let mut candidates = refs(matched);
    candidates.push(stanza);
    let pairs = pair_up(&refs(expected), &candidates);
    pairs.iter().flatten().count() == candidates.len()
}

/// The expected stanzas left without a partner among `received`.
fn unmatched<'e>(
    expected: &'e [Element],
    received: &[Element],
) -> impl Iterator<Item = &'e Element> {
    let pairs = pair_up(&refs(expected), &refs(received));
    expected
        .iter()
        .zip(pairs)
        .filter(|(_, partner)| partner.is_none())
        .map(|(stanza, _)| stanza)
}

fn refs(elements: &[Element]) -> Vec<&Element> {
    elements.iter().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use minidom::rxml::Namespace;

    use super::super::script::parse;
    use super::*;

    /// Reflects each sent stanza back to its sender, `from` and `to` swapped; tests can also
    /// queue stanzas of their own.
    #[derive(Default)]
    struct EchoHarness {
        bound: HashMap<String, String>,
        queues: HashMap<String, VecDeque<Element>>,
        log: Vec<String>,
    }

    impl EchoHarness {
        fn deliver(&mut self, client: &str, xml: &str) {
            let stanza = parse_stanza(xml).unwrap();
            self.queues
                .entry(client.into())
                .or_default()
                .push_back(stanza);
        }
    }

    impl Harness for EchoHarness {
        fn connect(&mut self, client: &str, jid: &str, _password: &str) -> anyhow::Result<String> {
            anyhow::ensure!(!jid.starts_with("banned"), "authentication failed");
            let full = if jid.contains('/') {
                jid.to_owned()
            } else {
                format!("{jid}/echo")
            };
            self.bound.insert(client.into(), full.clone());
            self.log.push(format!("connect {client}"));
            Ok(full)
        }

        fn send(&mut self, client: &str, mut stanza: Element) -> anyhow::Result<()> {
            let to = stanza.attr("to").unwrap_or_default().to_owned();
            let from = self.bound[client].clone();
            stanza.attrs_mut().clear();
            stanza.set_attr(Namespace::NONE, "from".try_into()?, to);
            stanza.set_attr(Namespace::NONE, "to".try_into()?, from);
            self.log.push(format!("send {client}"));
            self.queues
                .entry(client.into())
                .or_default()
                .push_back(stanza);
            Ok(())
        }

        fn next_stanza(&mut self, client: &str, _wait: Duration) -> Option<Element> {
            self.queues.get_mut(client)?.pop_front()
        }

        fn disconnect(&mut self, client: &str) -> anyhow::Result<()> {
            self.log.push(format!("disconnect {client}"));
            Ok(())
        }
    }

    const HEADER: &str = "# test\n[Client] Romeo\n\tjid: romeo@localhost\n-----\n";

    fn run_steps(harness: &mut EchoHarness, steps: &str) -> Result<(), Failure> {
        let script = parse(&format!("{HEADER}{steps}")).unwrap();
        run(
            &script,
            harness,
            &Options {
                wait: Duration::ZERO,
            },
        )
    }

    const ECHO: &str = "\
Romeo connects
Romeo sends:
\t<message to='room@muc' id='m1'><body>Hi</body></message>
Romeo receives:
";

    #[test]
    fn passes_when_the_echo_matches() {
        let mut harness = EchoHarness::default();
        let steps = format!(
            "{ECHO}\t<message from='room@muc' to=\"${{Romeo's full JID}}\"><body>Hi</body></message>\n\
             Romeo receives: nothing\nRomeo disconnects\n"
        );
        assert_eq!(run_steps(&mut harness, &steps), Ok(()));
        assert_eq!(
            harness.log,
            ["connect Romeo", "send Romeo", "disconnect Romeo"]
        );
    }

    #[test]
    fn a_captured_value_is_used_by_later_steps() {
        let mut harness = EchoHarness::default();
        let steps = "Romeo connects\n\
             Romeo sends:\n\t<message to='room@muc' id='m1'><body>Hi</body><x id='made-up'/></message>\n\
             Romeo receives:\n\t<message from='{scansion:capture:Room}'><body>{scansion:capture:Said}</body>\
             <x xmlns='jabber:client' id='{scansion:capture:X}'/></message>\n\
             Romeo sends:\n\t<message to='${Room}'><body>${Said} again, ${X}</body></message>\n\
             Romeo receives:\n\t<message from='room@muc'><body>Hi again, made-up</body></message>\n";
        assert_eq!(run_steps(&mut harness, steps), Ok(()));
        let steps = "Romeo sends:\n\t<message to='room@muc' id='${Unknown}'/>\n";
        assert!(run_steps(&mut harness, steps).is_err());
    }

    #[test]
    fn a_mismatch_names_its_line_and_what_came() {
        let mut harness = EchoHarness::default();
        let steps = format!("{ECHO}\t<message from='elsewhere@muc'/>\n");
        let failure = run_steps(&mut harness, &steps).unwrap_err();
        assert_eq!(failure.line, 8);
        assert_eq!(
            failure.expected,
            ["<message xmlns='jabber:client' from='elsewhere@muc'/>"]
        );
        assert_eq!(failure.received.len(), 1);
        assert!(failure.received[0].contains("<body>Hi</body>"));
    }

    #[test]
    fn skips_stanzas_that_match_nothing() {
        let mut harness = EchoHarness::default();
        harness.deliver("Romeo", "<presence from='room@muc/juliet'/>");
        let steps = format!("{ECHO}\t<message from='room@muc'/>\nRomeo receives: nothing\n");
        assert_eq!(run_steps(&mut harness, &steps), Ok(()));
    }

    #[test]
    fn several_expected_stanzas_arrive_in_any_order() {
        let mut harness = EchoHarness::default();
        let steps = "\
Romeo connects
Romeo sends:
\t<message to='a@muc'/>
Romeo sends:
\t<message to='b@muc'/>
Romeo receives:
\t<message from='b@muc'/>
\t<message from='a@muc'/>
";
        assert_eq!(run_steps(&mut harness, steps), Ok(()));
    }

    #[test]
    fn receives_nothing_fails_on_any_stanza() {
        let mut harness = EchoHarness::default();
        let steps =
            "Romeo connects\nRomeo sends:\n\t<presence to='room@muc'/>\nRomeo receives: nothing\n";
        let failure = run_steps(&mut harness, steps).unwrap_err();
        assert_eq!(failure.line, 8);
        assert_eq!(failure.expected, Vec::<String>::new());
        assert!(failure.received[0].starts_with("<presence xmlns='jabber:client' from='room@muc'"));
    }

    #[test]
    fn steps_need_a_connected_client() {
        let mut harness = EchoHarness::default();
        let failure = run_steps(&mut harness, "Romeo receives: nothing\n").unwrap_err();
        assert_eq!(
            (failure.line, failure.message.as_str()),
            (5, "Romeo has not connected")
        );
        let failure = run_steps(
            &mut harness,
            "Romeo connects\nRomeo disconnects\nRomeo disconnects\n",
        )
        .unwrap_err();
        assert_eq!(
            (failure.line, failure.message.as_str()),
            (7, "Romeo has disconnected")
        );
    }

    #[test]
    fn a_send_after_disconnecting_does_nothing() {
        let mut harness = EchoHarness::default();
        let steps =
            "Romeo connects\nRomeo disconnects\nRomeo sends:\n\t<presence type='unavailable'/>\n";
        assert_eq!(run_steps(&mut harness, steps), Ok(()));
        assert_eq!(harness.log, ["connect Romeo", "disconnect Romeo"]);
    }

    #[test]
    fn harness_and_substitution_errors_fail_the_step() {
        let mut script = parse(&format!("{HEADER}Romeo connects\n")).unwrap();
        script.clients[0].jid = "banned@localhost".into();
        let failure = run(
            &script,
            &mut EchoHarness::default(),
            &Options {
                wait: Duration::ZERO,
            },
        )
        .unwrap_err();
        assert_eq!(
            (failure.line, failure.message.as_str()),
            (5, "authentication failed")
        );
        let steps =
            "Romeo connects\nRomeo sends:\n\t<presence to=\"${Romeo's JID}/${Tybalt's JID}\"/>\n";
        let failure = run_steps(&mut EchoHarness::default(), steps).unwrap_err();
        assert_eq!(failure.line, 6);
        assert!(failure.message.contains("Tybalt"));
    }

    #[test]
    fn displays_the_failure_with_its_stanzas() {
        let failure = Failure {
            line: 12,
            message: "Romeo did not receive the expected stanza".into(),
            expected: vec!["<a>\n  <b/>\n</a>".into()],
            received: Vec::new(),
        };
        assert_eq!(
            failure.to_string(),
            "line 12: Romeo did not receive the expected stanza\n\
             expected:\n    <a>\n      <b/>\n    </a>\n\
             received: nothing"
        );
        assert_eq!(Failure::new(3, "boom").to_string(), "line 3: boom");
    }
}
