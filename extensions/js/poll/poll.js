/**
 * poll: one poll at a time in a room, run by a bot (nick `poll`).
 *
 *   !poll open QUESTION | A | B | C   opens a poll with 2 to `max-options` options (default 5),
 *                                     if none is open
 *   !poll vote N                      votes for option N; one vote per person (occupant id:
 *                                     renaming does not vote twice), a later vote replaces
 *                                     the earlier one
 *   !poll close                       closes it (whoever opened it, or a moderator): the bot
 *                                     says the results
 *   !poll                             says the open poll and its counts, or the usage
 *
 * A valid vote is counted silently: a line per vote would crowd the room and soon run into the
 * host's cap on the messages an extension says per minute (past it, `say` is refused).
 * Mistakes are answered, naming the sender. The opener and the voters are known by occupant id
 * (the opener's nick is kept to name them).
 *
 * The open poll is one JSON value in the store under `poll` ({question, options, opener,
 * openerId, votes: [[occupant id, option], ...]}), read and written by every command, so a
 * fresh instance of the extension carries on where the last one stopped.
 *
 * An ES module for the `room-extension` world of wit/extension, built by
 * scripts/build-js-extensions with componentize-js: it exports `hooks`, an object with the
 * seven hooks, and imports the world's interfaces as `muc:extension/NAME@1.0.0`. An import
 * the host refuses (`put`, `say`) throws an error whose `payload` says why.
 */

import { say, setting } from 'muc:extension/room@1.0.0';
import { get, put, delete as remove } from 'muc:extension/store@1.0.0';

const DEFAULT_MAX_OPTIONS = 5;
const MOST_OPTIONS = 10;
const MAX_QUESTION = 200;
const MAX_OPTION = 50;
const KEY = 'poll';
const USAGE =
  'usage: !poll open QUESTION | A | B ... (up to MAX options), !poll vote N, !poll close; ' +
  '!poll alone shows the open poll';

function loadPoll() {
  const bytes = get(KEY);
  return bytes === undefined ? undefined : JSON.parse(new TextDecoder().decode(bytes));
}

/** A write the host refused (the storage quota is full): the command is answered with it. */
class NotSaved extends Error {}

function savePoll(poll) {
  try {
    put(KEY, new TextEncoder().encode(JSON.stringify(poll)));
  } catch (refused) {
    throw new NotSaved(`poll: not saved (${refused.payload ?? refused})`);
  }
}

/** `max-options` (an integer the host checked), held to 2 to 10. */
function maxOptions() {
  const value = Number.parseInt(setting('max-options')[0] ?? '', 10);
  const known = Number.isNaN(value) ? DEFAULT_MAX_OPTIONS : value;
  return Math.min(Math.max(known, 2), MOST_OPTIONS);
}

function usage() {
  return USAGE.replace('MAX', String(maxOptions()));
}

/** Each option with its number and count, and the total: `1) pizza: 2, 2) sushi: 0 (2 votes)`. */
function counts(poll) {
  const tally = poll.options.map(() => 0);
  for (const [, option] of poll.votes) tally[option] += 1;
  const list = poll.options.map((text, i) => `${i + 1}) ${text}: ${tally[i]}`).join(', ');
  const total = poll.votes.length;
  return { tally, text: `${list} (${total} ${total === 1 ? 'vote' : 'votes'})` };
}

function open(sender, text) {
  const current = loadPoll();
  if (current !== undefined) {
    return `${sender.nick}: a poll is already open (${current.question}); it must be closed first`;
  }
  const [question, ...options] = text.split('|').map((part) => part.trim());
  const max = maxOptions();
  if (!question || options.length < 2 || options.length > max || options.some((o) => !o)) {
    return `${sender.nick}: ${usage()}`;
  }
  if (question.length > MAX_QUESTION || options.some((o) => o.length > MAX_OPTION)) {
    return `${sender.nick}: a question may have ${MAX_QUESTION} characters, an option ${MAX_OPTION}`;
  }
  savePoll({ question, options, opener: sender.nick, openerId: sender.id, votes: [] });
  const list = options.map((o, i) => `${i + 1}) ${o}`).join(', ');
  return `${sender.nick} opened a poll: ${question} ${list}. Vote with !poll vote N`;
}

function vote(sender, choice) {
  const poll = loadPoll();
  if (poll === undefined) return `${sender.nick}: no poll is open`;
  const number = /^[0-9]{1,3}$/.test(choice) ? Number(choice) : 0;
  if (number < 1 || number > poll.options.length) {
    return `${sender.nick}: there is no option '${choice}': vote with a number from 1 to ${poll.options.length}`;
  }
  const votes = new Map(poll.votes);
  votes.set(sender.id, number - 1);
  savePoll({ ...poll, votes: [...votes] });
  return undefined;
}

function close(sender) {
  const poll = loadPoll();
  if (poll === undefined) return `${sender.nick}: no poll is open`;
  if (sender.id !== poll.openerId && sender.role !== 'moderator') {
    return `${sender.nick}: only ${poll.opener}, who opened the poll, or a moderator may close it`;
  }
  remove(KEY);
  const { tally, text } = counts(poll);
  const best = Math.max(...tally);
  const winners = poll.options.filter((_, i) => tally[i] === best);
  const outcome =
    best === 0 ? 'no votes' : winners.length === 1 ? `${winners[0]} wins` : `a tie: ${winners.join(', ')}`;
  return `${sender.nick} closed the poll: ${poll.question} ${text}: ${outcome}`;
}

function status(sender) {
  const poll = loadPoll();
  if (poll === undefined) return `${sender.nick}: ${usage()}`;
  return `Poll by ${poll.opener}: ${poll.question} ${counts(poll).text}. Vote with !poll vote N`;
}

/** The answer to `!poll ARGUMENTS`, or undefined when there is nothing to say. */
function answer(sender, args) {
  const [word, ...rest] = args.split(/\s+/);
  switch (word) {
    case '':
      return status(sender);
    case 'open':
      return open(sender, args.slice(word.length));
    case 'vote':
      return rest.length === 1 ? vote(sender, rest[0]) : `${sender.nick}: ${usage()}`;
    case 'close':
      return rest.length === 0 ? close(sender) : `${sender.nick}: ${usage()}`;
    default:
      return `${sender.nick}: ${usage()}`;
  }
}

export const hooks = {
  describe() {
    return {
      name: 'poll',
      version: '1.0.0',
      description: 'Runs one poll at a time: !poll open QUESTION | A | B, !poll vote N, !poll close',
      nick: 'poll',
      command: '!poll',
      settings: [
        {
          name: 'max-options',
          label: `Options a poll may have (2 to ${MOST_OPTIONS})`,
          kind: 'integer',
          default: [String(DEFAULT_MAX_OPTIONS)],
          options: [],
        },
      ],
      tickSeconds: undefined,
      capabilities: [],
    };
  },

  onCommand(sender, args) {
    let text;
    try {
      text = answer(sender, args);
    } catch (error) {
      if (!(error instanceof NotSaved)) throw error;
      text = error.message;
    }
    if (text === undefined) return;
    try {
      say(text);
    } catch {
      // Past the cap on messages per minute: the answer goes unsaid, as the cap intends.
    }
  },

  onMessage(sender, body) {
    return { tag: 'pass' };
  },
  onJoin(joiner) {
    return { tag: 'allow' };
  },
  onJoined(occupant) {},
  onLeft(occupant) {},
  onTick() {},
};
