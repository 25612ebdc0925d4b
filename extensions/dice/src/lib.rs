//! Dice: `!roll NdM` rolls N dice of M sides (`!roll` alone rolls 1d6) and says the result in the
//! room, e.g. `alice rolled 2d6: 3 + 5 = 8`. Up to 20 dice of up to 1000 sides. No settings.
//!
//! The dice are seeded from the clock and a roll counter kept in the store (key `seed`), so two
//! rolls in the same millisecond differ.

#[cfg(target_arch = "wasm32")]
mod bindings;

const MAX_DICE: u32 = 20;
const MAX_SIDES: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roll {
    pub dice: u32,
    pub sides: u32,
}

/// The command's arguments, `NdM` or nothing (1d6); None when invalid or out of bounds.
pub fn parse_roll(arguments: &str) -> Option<Roll> {
    if arguments.is_empty() {
        return Some(Roll { dice: 1, sides: 6 });
    }
    let (dice, sides) = arguments.split_once(['d', 'D'])?;
    let roll = Roll {
        dice: parse_number(dice)?,
        sides: parse_number(sides)?,
    };
    let in_bounds = (1..=MAX_DICE).contains(&roll.dice) && (1..=MAX_SIDES).contains(&roll.sides);
    in_bounds.then_some(roll)
}

/// Digits only: `str::parse` would also take a leading `+`.
fn parse_number(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Rolls the dice, seeded from the time and a counter that changes on every roll.
pub fn roll_dice(roll: Roll, now_ms: u64, counter: u64) -> Vec<u32> {
    // The clock is hashed before the counter goes in: with a plain `now ^ counter`, a roll one
    // millisecond and one count later could get the same seed (1000 ^ 4 == 1001 ^ 5).
    let mut state = scramble(now_ms) ^ counter;
    // For at most 1000 sides, the modulo's bias is below 1e-16.
    (0..roll.dice)
        .map(|_| (splitmix64(&mut state) % u64::from(roll.sides)) as u32 + 1)
        .collect()
}

/// SplitMix64: a tiny generator, plenty for dice.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    scramble(*state)
}

/// SplitMix64's output function: every input bit affects every output bit.
fn scramble(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn announce(nick: &str, roll: Roll, faces: &[u32]) -> String {
    let Roll { dice, sides } = roll;
    let result = match faces {
        [single] => single.to_string(),
        _ => {
            let terms: Vec<String> = faces.iter().map(u32::to_string).collect();
            format!("{} = {}", terms.join(" + "), faces.iter().sum::<u32>())
        }
    };
    format!("{nick} rolled {dice}d{sides}: {result}")
}

pub fn usage(nick: &str) -> String {
    format!(
        "{nick}: usage: !roll NdM, e.g. !roll 2d6 (up to {MAX_DICE} dice of up to {MAX_SIDES} sides)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roll(dice: u32, sides: u32) -> Option<Roll> {
        Some(Roll { dice, sides })
    }

    #[test]
    fn parses_dice_notation() {
        assert_eq!(parse_roll(""), roll(1, 6));
        assert_eq!(parse_roll("2d6"), roll(2, 6));
        assert_eq!(parse_roll("3D10"), roll(3, 10));
        assert_eq!(parse_roll("20d1000"), roll(20, 1000));
    }

    #[test]
    fn refuses_anything_else() {
        for invalid in [
            "d6",
            "2d",
            "2x6",
            "0d6",
            "21d6",
            "2d0",
            "2d1001",
            "+2d6",
            "2d6 extra",
            "2d6d6",
            "roll",
        ] {
            assert_eq!(parse_roll(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn dice_stay_within_their_sides() {
        for counter in 0..200 {
            let faces = roll_dice(Roll { dice: 20, sides: 6 }, 1_700_000_000_000, counter);
            assert_eq!(faces.len(), 20);
            assert!(faces.iter().all(|face| (1..=6).contains(face)));
        }
    }

    #[test]
    fn one_sided_dice_are_deterministic() {
        let faces = roll_dice(Roll { dice: 3, sides: 1 }, 42, 7);
        assert_eq!(
            announce("alice", Roll { dice: 3, sides: 1 }, &faces),
            "alice rolled 3d1: 1 + 1 + 1 = 3"
        );
    }

    #[test]
    fn rolls_in_the_same_millisecond_differ() {
        let big = Roll {
            dice: 20,
            sides: 1000,
        };
        assert_ne!(roll_dice(big, 1000, 1), roll_dice(big, 1000, 2));
    }

    #[test]
    fn announces_one_die_without_a_sum() {
        assert_eq!(
            announce("bob", Roll { dice: 1, sides: 6 }, &[4]),
            "bob rolled 1d6: 4"
        );
        assert_eq!(
            announce("bob", Roll { dice: 2, sides: 6 }, &[3, 5]),
            "bob rolled 2d6: 3 + 5 = 8"
        );
    }

    #[test]
    fn usage_names_the_sender() {
        assert_eq!(
            usage("carol"),
            "carol: usage: !roll NdM, e.g. !roll 2d6 (up to 20 dice of up to 1000 sides)"
        );
    }
}
