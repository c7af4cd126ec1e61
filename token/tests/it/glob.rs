//! Property tests of the resource glob: `glob_match` agrees with a plain
//! dynamic-programming matcher over characters, and stays within its work
//! bound, on globs and texts drawn from small alphabets (biased towards `a`,
//! `b`, `/`, `*`, `?` and `é`, with a 3- and a 4-byte character) so that
//! matches and near misses are common. Texts are often made from the glob
//! itself (stars and `?` filled in, then perhaps one character changed).

use proptest::prelude::*;
use proptest::sample::Index;
use tally_token::{glob_match, glob_match_steps};

/// The reference: row[j] says whether the glob so far matches the first j
/// characters of the text. O(pattern × text), obviously right.
fn reference(pattern: &str, text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for p in pattern.chars() {
        let mut next = vec![false; t.len() + 1];
        next[0] = p == '*' && row[0];
        for j in 1..=t.len() {
            next[j] = match p {
                '*' => next[j - 1] || row[j],
                '?' => row[j - 1],
                c => row[j - 1] && t[j - 1] == c,
            };
        }
        row = next;
    }
    row[t.len()]
}

/// The bound of the module documentation with its constants: 20 steps per
/// byte of the glob, 2 per byte of the text and word of Shift-And state (W:
/// the words of the longest segment with a `?` inside).
fn step_bound(pattern: &str, text: &str) -> u64 {
    let cores = pattern.split('*').map(|s| s.trim_matches('?')).filter(|s| s.contains('?'));
    let words = cores.map(|s| s.chars().count().div_ceil(64)).max().unwrap_or(1);
    (20 * pattern.len() + 2 * text.len() * words + 64) as u64
}

const GLOB_CHARS: &[(u32, char)] =
    &[(8, 'a'), (4, 'b'), (2, '/'), (3, '*'), (3, '?'), (2, 'é'), (1, '€'), (1, '🦀'), (1, 'x')];
const TEXT_CHARS: &[(u32, char)] =
    &[(8, 'a'), (4, 'b'), (2, '/'), (2, 'é'), (1, '€'), (1, '🦀'), (1, '*'), (1, '?'), (1, 'x')];

fn weighted(chars: &'static [(u32, char)]) -> impl Strategy<Value = char> {
    let total: u32 = chars.iter().map(|(w, _)| w).sum();
    (0..total).prop_map(move |mut n| {
        for &(w, c) in chars {
            if n < w {
                return c;
            }
            n -= w;
        }
        unreachable!("n < total")
    })
}

fn string(chars: &'static [(u32, char)], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(weighted(chars), len).prop_map(|v| v.into_iter().collect())
}

/// A text the glob matches: each `*` becomes 0 to 3 characters, each `?` one.
fn fill(pattern: &str, fillers: &[char]) -> String {
    let mut fillers = fillers.iter().cycle();
    let mut text = String::new();
    for c in pattern.chars() {
        match c {
            '*' => {
                let n = u32::from(*fillers.next().unwrap_or(&'a')) % 4;
                text.extend(fillers.by_ref().take(n as usize));
            }
            '?' => text.push(*fillers.next().unwrap_or(&'a')),
            c => text.push(c),
        }
    }
    text
}

/// A glob and a text: random, or made from the glob and perhaps mutated.
fn case(glob_len: std::ops::Range<usize>, text_len: std::ops::Range<usize>) -> impl Strategy<Value = (String, String)> {
    let fillers = prop::collection::vec(weighted(TEXT_CHARS), 1..8);
    (string(GLOB_CHARS, glob_len), string(TEXT_CHARS, text_len), fillers, any::<Index>(), weighted(TEXT_CHARS), 0..4u8)
        .prop_map(|(glob, random, fillers, at, c, how)| {
            let text = match how {
                0 => random,
                _ => {
                    let mut chars: Vec<char> = fill(&glob, &fillers).chars().collect();
                    match how {
                        1 => {}
                        2 if !chars.is_empty() => {
                            let i = at.index(chars.len());
                            chars[i] = c;
                        }
                        _ => chars.insert(at.index(chars.len() + 1), c),
                    }
                    chars.into_iter().collect()
                }
            };
            (glob, text)
        })
}

/// Globs with long runs of `a`, `b` and `?` between few stars, so segments
/// with `?` inside span more than one 64-bit word.
fn long_case() -> impl Strategy<Value = (String, String)> {
    const LONG: &[(u32, char)] = &[(12, 'a'), (3, 'b'), (8, '?'), (1, '*'), (1, 'é')];
    let fillers = prop::collection::vec(prop::sample::select(vec!['a', 'b', 'é']), 1..4);
    (string(LONG, 60..200), string(&[(6, 'a'), (2, 'b'), (1, 'é')], 0..300), fillers, any::<Index>(), 0..3u8).prop_map(
        |(glob, random, fillers, at, how)| {
            if how == 0 {
                return (glob, random);
            }
            let mut chars: Vec<char> = fill(&glob, &fillers).chars().collect();
            if how == 2 && !chars.is_empty() {
                let i = at.index(chars.len());
                chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
            }
            (glob, chars.into_iter().collect())
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Short globs and texts over the small alphabets.
    #[test]
    fn agrees_with_the_reference((glob, text) in case(0..12, 0..16)) {
        let expected = reference(&glob, &text);
        prop_assert_eq!(glob_match(&glob, &text), expected, "glob {:?} text {:?}", glob, text);
        let (matched, steps) = glob_match_steps(&glob, &text);
        prop_assert_eq!(matched, expected);
        prop_assert!(steps <= step_bound(&glob, &text), "{} steps for glob {:?} text {:?}", steps, glob, text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Long `?` segments (several words of Shift-And state) and longer texts.
    #[test]
    fn agrees_with_the_reference_on_long_segments((glob, text) in long_case()) {
        let expected = reference(&glob, &text);
        let (matched, steps) = glob_match_steps(&glob, &text);
        prop_assert_eq!(matched, expected, "glob {:?} text {:?}", glob, text);
        prop_assert_eq!(glob_match(&glob, &text), expected);
        prop_assert!(steps <= step_bound(&glob, &text), "{} steps for glob {:?} text {:?}", steps, glob, text);
    }
}

/// The generators are not vacuous: a good share of cases match, and a good
/// share of those made from the glob do not.
#[test]
fn generators_match_often() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    for (name, strategy) in [("short", case(0..12, 0..16).boxed()), ("long", long_case().boxed())] {
        let (mut matched, n) = (0, 2000);
        for _ in 0..n {
            let (glob, text) = strategy.new_tree(&mut runner).unwrap().current();
            matched += usize::from(reference(&glob, &text));
        }
        assert!(matched > n / 5 && matched < n * 4 / 5, "{name}: {matched} of {n} match");
    }
}
