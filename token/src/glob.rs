//! Resource globs: `*` matches any run of characters (`/` included), `?`
//! exactly one character; every other character is literal.

/// True when `text` matches `pattern`.
///
/// Greedy with single-star backtracking: linear for most patterns, at worst
/// O(len(pattern) × len(text)), with no recursion and no allocation.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (pat, txt) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Position of the last `*` in the pattern and where in the text it started matching.
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += utf8_len(txt[t]);
                    continue;
                }
                c if c == txt[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                // Let the star swallow one more character and retry after it.
                let next = st + utf8_len(txt[st]);
                star = Some((sp, next));
                p = sp + 1;
                t = next;
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Length of the UTF-8 sequence that starts with `first` (text is valid UTF-8,
/// and positions handed here are always character boundaries).
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

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
}
