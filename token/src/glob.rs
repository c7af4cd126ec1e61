//! Resource globs: `*` matches any run of characters (`/` included), `?`
//! exactly one character (a Unicode scalar value); every other character is
//! literal, and a glob must match the whole text.
//!
//! Both the glob and the text come from a token's holder, so the matcher is
//! built for the worst case: it never backtracks. The glob is cut at its
//! stars into segments. The first is matched at the start of the text, the
//! last at its end, and each one between is found leftmost, in order, after
//! the one before: for segments separated by stars the leftmost choice is
//! always a right one, since a segment has a fixed length in characters and
//! ending it earlier leaves more text for the rest. `?`s at the ends of a
//! segment are skips; what remains (its core) is found with `memchr` when it
//! is one byte, with `memchr::memmem` (Two-Way, linear) when it is a literal
//! longer than 64 bytes, and otherwise with the bit-parallel Shift-And of
//! [`shift_and`], whose tables cost less to build than a memmem searcher.
//!
//! **Bound.** With `k` the length in characters of the longest core holding a
//! `?` (at most 64 for any other core Shift-And takes) and `W = ceil(k / 64)`,
//! a match takes O(|glob| + |text| × W) steps; a glob within a caveat's
//! 2 KiB has W ≤ 32. Each search starts where the previous match ended and
//! stops where its own ends, so the searches read each character of the text
//! at most once between them (plus up to four positions each tries directly
//! first, and the overlap of memchr's doubling windows); a Shift-And step
//! costs W word operations. The glob is read a constant number of times, and
//! a Shift-And table has at most min(bytes of the core + 2, 371) rows of W
//! words. In practice: 20 steps per byte of the glob and 2 per byte of the
//! text and word at most, which [`glob_match_steps`] counts and the tests
//! below and the `glob_match` fuzz target check, without timing anything.
//! There is no recursion, and allocation only for a Shift-And table of more
//! than 32 rows (a core naming some thirty distinct characters, or longer
//! than 512 characters).

mod shift_and;

use memchr::memmem;

/// True when `text` matches `pattern`, in O(|pattern| + |text| × W) steps
/// (see the module documentation for W, at most 32 for a caveat's glob).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    matches(pattern, text, &mut NoCount)
}

/// What matching `pattern` costs, in units of one pass over a text at the
/// resource bound. A glob with at most one `*` searches nothing: its first
/// segment is compared at the start of the text and its last at the end, in
/// steps bounded by the glob's own length, so it weighs 0 (`apps/web/*`,
/// `*.pdf`, a literal). A glob with segments between two stars searches the
/// text for them: W = ⌈k / 64⌉ for the longest core of k characters that
/// holds a `?` (a Shift-And of W words), and 1 for one without (its
/// literals are searched with memchr, reading the text about once); plus
/// one for every 16 segments past the first (`SEGMENTS_PER_PASS`), as each
/// segment sets up a search of its own (measured: about 60 ns each, 16 of
/// them about one memchr pass over 1 KiB). Computed from the glob alone, in
/// one pass over it.
pub fn glob_weight(pattern: &str) -> u32 {
    let p = pattern.as_bytes();
    // Most globs are a few bytes with at most one star: found without a count.
    if find_byte(b'*', p).and_then(|first| find_byte(b'*', &p[first + 1..])).is_none() {
        return 0;
    }
    let segments = p.iter().filter(|&&b| b == b'*').count() + 1;
    let mut widest = 1;
    for segment in p.split(|&b| b == b'*') {
        let lead = leading_run(segment, b'?');
        let core = &segment[lead..segment.len() - trailing_run(&segment[lead..], b'?')];
        if memchr::memchr(b'?', core).is_some() {
            let chars = core.iter().filter(|&&b| starts_char(b)).count();
            widest = widest.max(chars.div_ceil(64));
        }
    }
    let setups = (segments - 1) / SEGMENTS_PER_PASS;
    u32::try_from(widest + setups).unwrap_or(u32::MAX)
}

/// How many bytes at the start of `bytes` are `b` (16 compared at once
/// while they all are: a glob's runs of `?` can be 2 KiB long).
#[inline]
fn leading_run(bytes: &[u8], b: u8) -> usize {
    let all = u128::from_ne_bytes([b; 16]);
    let mut n = 0;
    for chunk in bytes.chunks_exact(16) {
        if u128::from_ne_bytes(chunk.try_into().expect("16 bytes")) != all {
            break;
        }
        n += 16;
    }
    n + bytes[n..].iter().position(|&c| c != b).unwrap_or(bytes.len() - n)
}

/// How many bytes at the end of `bytes` are `b`.
#[inline]
fn trailing_run(bytes: &[u8], b: u8) -> usize {
    let all = u128::from_ne_bytes([b; 16]);
    let mut n = 0;
    for chunk in bytes.rchunks_exact(16) {
        if u128::from_ne_bytes(chunk.try_into().expect("16 bytes")) != all {
            break;
        }
        n += 16;
    }
    let rest = &bytes[..bytes.len() - n];
    n + rest.iter().rev().position(|&c| c != b).unwrap_or(rest.len())
}

/// Segments of a glob that cost about one pass over the text to set up.
const SEGMENTS_PER_PASS: usize = 16;

/// [`glob_match`] and the number of steps it took (bytes of the glob and of
/// the text examined, Shift-And table words and word operations), for the
/// tests and the fuzz target that check the work bound.
#[doc(hidden)]
pub fn glob_match_steps(pattern: &str, text: &str) -> (bool, u64) {
    let mut count = Count(0);
    let matched = matches(pattern, text, &mut count);
    (matched, count.0)
}

/// Where the matcher reports its work: nowhere in production, to a counter
/// for [`glob_match_steps`]. Monomorphised, so counting costs nothing when off.
trait Steps {
    fn add(&mut self, n: usize);
}

struct NoCount;

impl Steps for NoCount {
    #[inline(always)]
    fn add(&mut self, _: usize) {}
}

struct Count(u64);

impl Steps for Count {
    fn add(&mut self, n: usize) {
        self.0 += n as u64;
    }
}

fn matches(pattern: &str, text: &str, steps: &mut impl Steps) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let Some(first) = find_byte(b'*', p) else {
        return match_start(p, t, steps) == Some(t.len());
    };
    // Most globs are short: their last star is in their last few bytes.
    let tail = p.len().saturating_sub(16).max(first);
    let last = match p[tail..].iter().rposition(|&b| b == b'*') {
        Some(i) => tail + i,
        None => memchr::memrchr(b'*', &p[first..tail]).map_or(first, |i| first + i),
    };
    steps.add(p.len());
    let Some(start) = match_start(&p[..first], t, steps) else { return false };
    // The last segment must fit after the first one, never overlap it.
    let Some(tail) = match_end(&p[last + 1..], &t[start..], steps) else { return false };
    let hay = &t[..start + tail];
    let (mut i, mut at) = (first + 1, start);
    // The segments between the first and the last star.
    while i < last {
        let end = i + find_byte(b'*', &p[i..last]).unwrap_or(last - i);
        let segment = &pattern[i..end];
        steps.add(segment.len() + 1);
        // Right where the previous segment ended first: runs of short
        // segments mostly match so, and then need no search set up.
        at = match match_start(segment.as_bytes(), &hay[at..], steps) {
            Some(len) => at + len,
            None => match find(segment, hay, at, steps) {
                Some(end) => end,
                None => return false,
            },
        };
        i = end + 1;
    }
    true
}

/// Matches `segment` (no `*`) at the start of `t`; returns where it ends.
/// A literal character matches exactly its UTF-8 bytes, so a run of
/// literals is one slice comparison; a run of `?`s skips that many
/// characters ([`skip_chars`]).
#[inline]
fn match_start(segment: &[u8], t: &[u8], steps: &mut impl Steps) -> Option<usize> {
    steps.add(segment.len() + 1);
    let (mut at, mut i) = (0, 0);
    while i < segment.len() {
        let rest = &segment[i..];
        if rest[0] == b'?' {
            let run = leading_run(rest, b'?');
            at = skip_chars(t, at, run, steps)?;
            i += run;
        } else {
            let literal = &rest[..find_byte(b'?', rest).unwrap_or(rest.len())];
            let text = t.get(at..at + literal.len())?;
            // Short literals (most of them) in line; long ones with memcmp.
            let same =
                if literal.len() <= 16 { literal.iter().zip(text).all(|(a, b)| a == b) } else { text == literal };
            if !same {
                return None;
            }
            at += literal.len();
            i += literal.len();
        }
    }
    Some(at)
}

/// Matches `segment` (no `*`) at the end of `t`; returns where it starts.
fn match_end(segment: &[u8], t: &[u8], steps: &mut impl Steps) -> Option<usize> {
    steps.add(segment.len() + 1);
    let (mut at, mut j) = (t.len(), segment.len());
    while j > 0 {
        let rest = &segment[..j];
        if rest[j - 1] == b'?' {
            let run = trailing_run(rest, b'?');
            at = skip_chars_back(t, at, run)?;
            j -= run;
        } else {
            let start = memchr::memrchr(b'?', rest).map_or(0, |k| k + 1);
            let literal = &rest[start..];
            at = at.checked_sub(literal.len())?;
            if &t[at..at + literal.len()] != literal {
                return None;
            }
            j = start;
        }
    }
    Some(at)
}

/// The first `byte` in `hay`. Segments are often a few bytes long, and for
/// those a plain loop beats setting up memchr's vector search.
#[inline(always)]
fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    let near = hay.len().min(16);
    match hay[..near].iter().position(|&b| b == byte) {
        Some(i) => Some(i),
        None => memchr::memchr(byte, &hay[near..]).map(|i| near + i),
    }
}

/// Bytes whose characters [`skip_chars`] and [`skip_chars_back`] count at
/// once (a vectorised count of the bytes that start a character), when at
/// least this many characters are to be skipped: a run of 500 `?`s over
/// 2-byte characters then costs some 16 counts, not 500 steps.
const CHUNK: usize = 64;

/// Whether `b` starts a character (is not a UTF-8 continuation byte).
#[inline(always)]
fn starts_char(b: u8) -> bool {
    (b as i8) >= -0x40
}

/// How many characters start in `window` (at most [`CHUNK`] bytes), counted
/// in a byte so the count vectorises.
#[inline(always)]
fn chars_in(window: &[u8]) -> usize {
    window.iter().fold(0u8, |n, &b| n.wrapping_add(u8::from(starts_char(b)))) as usize
}

/// `n` characters on from `at`, if the text has them.
fn skip_chars(t: &[u8], mut at: usize, mut n: usize, steps: &mut impl Steps) -> Option<usize> {
    steps.add(n);
    // A window of CHUNK bytes starts at most CHUNK ≤ n characters.
    while n >= CHUNK && at + CHUNK <= t.len() {
        n -= chars_in(&t[at..at + CHUNK]);
        at += CHUNK;
        // The rest of a character the window ended in: counted already.
        while at < t.len() && !starts_char(t[at]) {
            at += 1;
        }
    }
    for _ in 0..n {
        at += utf8_len(*t.get(at)?);
    }
    Some(at)
}

/// `n` characters back from `at` (a character boundary), if the text has them.
fn skip_chars_back(t: &[u8], mut at: usize, mut n: usize) -> Option<usize> {
    while n >= CHUNK && at >= CHUNK {
        n -= chars_in(&t[at - CHUNK..at]);
        at -= CHUNK;
        // Inside a character that starts before the window: back to its
        // start, one character more (the window then started at most
        // CHUNK - 1 ≤ n - 1 of them).
        if !starts_char(t[at]) {
            while !starts_char(t[at]) {
                at -= 1;
            }
            n -= 1;
        }
    }
    for _ in 0..n {
        at = at.checked_sub(1)?;
        // Back over the continuation bytes to the character's first byte.
        while !starts_char(t[at]) {
            at -= 1;
        }
    }
    Some(at)
}

/// How many positions [`find`] tries by direct comparison before it sets up
/// a search, for cores of at most `PROBE_LEN` bytes.
const PROBES: usize = 4;
const PROBE_LEN: usize = 16;

/// The leftmost match of `segment` (non-empty, no `*`) in `hay` at or after
/// `from`; returns where it ends.
fn find(segment: &str, hay: &[u8], from: usize, steps: &mut impl Steps) -> Option<usize> {
    // `?`s at the ends need no search: the leftmost match of the rest that
    // leaves room for them is the leftmost match of the whole.
    let bytes = segment.as_bytes();
    let lead = leading_run(bytes, b'?');
    if lead == bytes.len() {
        return skip_chars(hay, from, bytes.len(), steps);
    }
    let trail = trailing_run(bytes, b'?');
    let core = &segment[lead..segment.len() - trail];
    let mut at = skip_chars(hay, from, lead, steps)?;
    // A short core at the first few positions by direct comparison: a match
    // close by then needs no search set up, which costs more than that.
    if core.len() <= PROBE_LEN {
        for _ in 0..PROBES {
            if let Some(len) = match_start(core.as_bytes(), &hay[at..], steps) {
                return skip_chars(hay, at + len, trail, steps);
            }
            at = skip_chars(hay, at, 1, steps)?;
        }
    }
    let end = match core.as_bytes() {
        [byte] => find_literal(&[*byte], hay, at, steps)?,
        // Building a memmem searcher costs about 6 ns per byte of the needle
        // (measured), more than a Shift-And table of one word: short cores
        // take Shift-And whether they hold a `?` or not.
        long if long.len() > 64 && find_byte(b'?', long).is_none() => find_literal(long, hay, at, steps)?,
        _ => shift_and::find(core, hay, at, steps)?,
    };
    skip_chars(hay, end, trail, steps)
}

/// The leftmost occurrence of `needle` in `hay` at or after `from`; returns
/// where it ends. memchr promises work linear in the haystack it is given,
/// not in the distance to the match, so the haystack grows in doubling
/// windows: the work stays proportional to that distance plus the needle.
fn find_literal(needle: &[u8], hay: &[u8], from: usize, steps: &mut impl Steps) -> Option<usize> {
    if hay.len() - from < needle.len() {
        return None;
    }
    steps.add(needle.len());
    // One byte needs no searcher built (see `find_byte`).
    let finder = (needle.len() > 1).then(|| memmem::Finder::new(needle));
    let (mut lo, mut span) = (from, 4 * needle.len().max(4));
    loop {
        let hi = hay.len().min(lo + span);
        steps.add(hi - lo);
        let window = &hay[lo..hi];
        let found = match &finder {
            Some(finder) => finder.find(window),
            None => find_byte(needle[0], window),
        };
        if let Some(at) = found {
            return Some(lo + at + needle.len());
        }
        if hi == hay.len() {
            return None;
        }
        // The next window overlaps this one by all but one byte of a match.
        lo = hi + 1 - needle.len();
        span *= 2;
    }
}

/// Length of the UTF-8 sequence that starts with `first` (text is valid UTF-8,
/// and positions handed here are always character boundaries).
#[inline(always)]
fn utf8_len(first: u8) -> usize {
    // The first byte of a sequence of n > 1 bytes starts with n one bits.
    (first.leading_ones() as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::{glob_match, glob_match_steps};

    /// W of the module documentation: words of the longest core with a `?`.
    fn words(pattern: &str) -> usize {
        let cores = pattern.split('*').map(|s| s.trim_matches('?')).filter(|s| s.contains('?'));
        cores.map(|s| s.chars().count().div_ceil(64)).max().unwrap_or(1)
    }

    /// Runs a match, checks it against `expected`, and returns the steps
    /// after checking the bound with its constants: 20 per byte of the glob,
    /// 2 per byte of the text and word of state.
    fn checked(pattern: &str, text: &str, expected: bool) -> u64 {
        let (matched, steps) = glob_match_steps(pattern, text);
        assert_eq!(matched, expected, "{:.40}…", pattern);
        assert_eq!(glob_match(pattern, text), expected);
        let bound = 20 * pattern.len() + 2 * text.len() * words(pattern) + 64;
        assert!(steps <= bound as u64, "{steps} steps > {bound} for {:.40}…", pattern);
        steps
    }

    /// Steps per byte of glob and text, W counted as in the bound.
    fn per_byte(pattern: &str, text: &str, steps: u64) -> f64 {
        steps as f64 / (pattern.len() + text.len() * words(pattern)) as f64
    }

    #[test]
    fn design_examples() {
        assert!(glob_match("apps/web/*", "apps/web/x/y"));
        assert!(glob_match("apps/web/*", "apps/web/"));
        assert!(!glob_match("apps/web/*", "apps/webx"));
        assert!(!glob_match("apps/web/*", "apps/web"));
    }

    #[test]
    fn wildcards() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything/at/all"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("a?c", "aéc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("*.txt", "dir/file.txt"));
        assert!(glob_match("a*b*c", "a--b--b--c"));
        assert!(!glob_match("a*b*c", "a--b--b--"));
        assert!(glob_match("é*ü", "é/x/ü"));
        assert!(!glob_match("[ab]", "a"), "brackets are literal");
        assert!(glob_match("[ab]", "[ab]"));
    }

    #[test]
    fn exact() {
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("x", "x"));
        assert!(!glob_match("x", "X"));
    }

    /// The finding: 2 KiB globs of `a`s ending in `b`, against 300 KB of `a`.
    /// Backtracking took O(glob × text); each of these reads the text once.
    #[test]
    fn the_reported_globs_take_linear_work() {
        let text = "a".repeat(300_000);
        let run = "a".repeat(2030);
        for (pattern, expected) in [
            (format!("*{run}b"), false),
            (format!("*{run}b*"), false),
            (format!("*{run}*b"), false),
            (format!("{}b", "*a".repeat(1015)), false),
            (format!("a*{run}*a"), true),
        ] {
            let steps = checked(&pattern, &text, expected);
            assert!(per_byte(&pattern, &text, steps) < 1.1, "{steps} steps for {:.40}…", pattern);
        }
        let matching = format!("{text}b");
        for pattern in [format!("*{run}b"), format!("*{run}b*"), format!("*a*{run}*b")] {
            checked(&pattern, &matching, true);
        }
    }

    /// `?` inside a segment costs a word of state per 64 characters of the
    /// segment, not a pass over it per character of the text: W = 1 for 64
    /// characters, W = 32 for a caveat's whole 2 KiB.
    #[test]
    fn question_marks_cost_a_word_per_64_characters() {
        let text = "a".repeat(300_000);
        for (segment, w) in [(format!("{}ab", "a?".repeat(31)), 1), (format!("{}ab", "a?".repeat(1014)), 32)] {
            let pattern = format!("*{segment}*");
            assert_eq!(words(&pattern), w);
            let steps = checked(&pattern, &text, false);
            assert!(per_byte(&pattern, &text, steps) < 1.1);
            // Linear with a constant for any glob a caveat can hold.
            assert!(steps <= 2 * 33 * (pattern.len() + text.len()) as u64);
            checked(&pattern, &format!("{text}b"), true);
        }
        // Wider characters in the glob and the text: a step per character.
        let wide = "é".repeat(150_000);
        let pattern = format!("*{}éb*", "é?".repeat(31));
        let steps = checked(&pattern, &wide, false);
        assert!(per_byte(&pattern, &wide, steps) < 0.6, "one step per two bytes");
        checked(&pattern, &format!("{wide}b"), true);
    }

    /// Many short segments: each is tried where the previous one ended, then
    /// at a few positions after it, before a search is set up.
    #[test]
    fn short_segments_cost_their_length() {
        let a = "a".repeat(300_000);
        for (pattern, text, expected) in [
            (format!("{}*", "*a".repeat(1000)), a.clone(), true),
            (format!("{}*", "*b".repeat(1000)), "ab".repeat(150_000), true),
            (format!("{}*", "*ab".repeat(600)), "xyzab".repeat(60_000), true),
            (format!("{}*", "*a?b".repeat(500)), "xaxb".repeat(75_000), true),
            (format!("{}*", "*a?b".repeat(500)), "xxxxxxaxb".repeat(30_000), true),
            (format!("{}*", "*?".repeat(1000)), a.clone(), true),
            (format!("*{}*", "?".repeat(2000)), a.clone(), true),
            (format!("{}*", "*a?b".repeat(500)), a.clone(), false),
        ] {
            let steps = checked(&pattern, &text, expected);
            assert!(per_byte(&pattern, &text, steps) < 1.1, "{steps} steps for {:.40}…", pattern);
        }
    }

    /// Globs that cost backtracking matchers the most, on short texts: the
    /// work is bounded by the glob.
    /// The chunked character skips agree with walking one character at a
    /// time, forwards and back, over text of 1- to 4-byte characters.
    #[test]
    fn chunked_skips_agree_with_single_steps() {
        let text: String = "aé€😀b".chars().cycle().take(400).collect();
        let t = text.as_bytes();
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
        for (k, &at) in bounds.iter().enumerate().step_by(7) {
            for n in [0, 1, 15, 16, 17, 63, 64, 65, 100, 129, 250, 400] {
                let forward = bounds.get(k + n).copied();
                assert_eq!(super::skip_chars(t, at, n, &mut super::NoCount), forward, "at {at}, {n} on");
                let back = k.checked_sub(n).map(|j| bounds[j]);
                assert_eq!(super::skip_chars_back(t, at, n), back, "at {at}, {n} back");
            }
        }
    }

    /// Why a glob with at most one star weighs nothing (`glob_weight`): it
    /// is compared in place at the ends, in steps bounded by its own length,
    /// whatever the length of the text.
    #[test]
    fn one_star_reads_only_as_much_text_as_the_glob() {
        let long = format!("{}b", "é".repeat(511));
        for (pattern, expected) in [
            ("apps/web/*".to_owned(), false),
            ("*b".to_owned(), true),
            (format!("{}*", "?".repeat(511)), true),
            (format!("*{}b", "?".repeat(511)), true),
            (format!("{}*{}", "é?".repeat(200), "?é".repeat(55)), false),
            ("?".repeat(512), true),
            (long.clone(), true),
        ] {
            assert_eq!(super::glob_weight(&pattern), 0, "{:.40}…", pattern);
            let steps = checked(&pattern, &long, expected);
            assert!(steps <= 3 * pattern.len() as u64 + 4, "{steps} steps for {:.40}…", pattern);
        }
    }

    #[test]
    fn backtracking_worst_cases_are_cheap() {
        let text = "a".repeat(2000);
        for (pattern, expected) in [
            ("a*a*a*a*a*a*a*a*a*a*a*b".to_owned(), false),
            (format!("{}b", "*a".repeat(1000)), false),
            (format!("{}*", "*a".repeat(1000)), true),
            (format!("{}*", "*a".repeat(1001)), true),
            (format!("{}*", "*a".repeat(2001)), false),
            (format!("*{}*", "?".repeat(2001)), false),
        ] {
            let steps = checked(&pattern, &text, expected);
            assert!(steps <= 8 * (pattern.len() + text.len()) as u64, "{steps} steps for {:.40}…", pattern);
        }
    }
}
