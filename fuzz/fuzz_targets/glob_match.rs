//! Fuzzes the resource glob alone: `glob_match` against the quadratic
//! reference glob of `src/reference.rs`, and its work against the bound of
//! `token/src/glob.rs`, counted by `glob_match_steps`.
//!
//! The input is read as lossy UTF-8: the glob up to the first newline, the
//! text after it (without a newline, the text is empty). Properties:
//! - `glob_match` and `glob_match_steps` agree, and agree with the reference
//!   when glob × text is small enough for it;
//! - the steps stay within 20 per byte of the glob plus 2 per byte of the
//!   text and word of Shift-And state (W: the words of the longest segment
//!   with a `?` inside);
//! - a glob that matches still matches with a star before or after it, and
//!   any text that is a glob without stars matches itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_fuzz::reference;
use tally_token::{glob_match, glob_match_steps};

/// Largest glob × text, in characters, compared with the reference (it is
/// quadratic and allocates a row per glob character).
const GLOB_WORK: usize = 1 << 16;

/// W of the bound: words of state of the longest core with a `?` inside.
fn words(pattern: &str) -> usize {
    let cores = pattern.split('*').map(|s| s.trim_matches('?')).filter(|s| s.contains('?'));
    cores.map(|s| s.chars().count().div_ceil(64)).max().unwrap_or(1)
}

/// Checks one glob and text; returns whether they match.
fn check(pattern: &str, text: &str) -> bool {
    let matched = glob_match(pattern, text);
    let (counted, steps) = glob_match_steps(pattern, text);
    assert_eq!(counted, matched, "counting changed the answer for {pattern:?} on {text:?}");
    let bound = 20 * pattern.len() + 2 * text.len() * words(pattern) + 64;
    assert!(steps <= bound as u64, "{steps} steps > {bound} for {pattern:?} on {text:?}");
    if pattern.chars().count().saturating_mul(text.chars().count()) <= GLOB_WORK {
        assert_eq!(matched, reference::glob(pattern, text), "glob {pattern:?} on {text:?}");
    }
    matched
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (pattern, text) = input.split_once('\n').unwrap_or((&input, ""));
    if check(pattern, text) {
        assert!(check(&format!("*{pattern}"), text), "a leading star narrowed {pattern:?}");
        assert!(check(&format!("{pattern}*"), text), "a trailing star narrowed {pattern:?}");
    }
    if !text.contains(['*', '?']) {
        assert!(check(text, text), "{text:?} does not match itself");
    }
});
