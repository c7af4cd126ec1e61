//! The closed caveat language: `key op value` predicates, parsed to types.
//!
//! | caveat                   | meaning                                   |
//! |--------------------------|-------------------------------------------|
//! | `org = ID`               | the token belongs to org ID               |
//! | `expires < RFC3339`      | invalid at or after that instant          |
//! | `not-before > RFC3339`   | invalid before that instant               |
//! | `action in a,b,...`      | request action must be in the set         |
//! | `resource = GLOB`        | request resource must match the glob      |
//! | `service = NAME`         | the checking service must be NAME         |
//! | `subject = ID`           | who the token speaks for                  |
//! | `client-ip in CIDR,...`  | client address must be in one range       |
//! | `role = NAME`            | for Tally's own API                       |
//!
//! Parsing is strict: one space around the operator, no empty values or list
//! items. Anything else is an [`Error::InvalidCaveat`], which evaluation
//! treats as unsatisfied.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Error;
use crate::cidr::Cidr;

/// A parsed first-party caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    /// `org = ID`
    Org(String),
    /// `expires < T`: unix nanoseconds.
    Expires(i128),
    /// `not-before > T`: unix nanoseconds.
    NotBefore(i128),
    /// `action in a,b,...`
    ActionIn(Vec<String>),
    /// `resource = GLOB`
    Resource(String),
    /// `service = NAME`
    Service(String),
    /// `subject = ID`
    Subject(String),
    /// `client-ip in CIDR,...`
    ClientIpIn(Vec<Cidr>),
    /// `role = NAME`
    Role(String),
}

impl Predicate {
    /// Parses caveat bytes; non-UTF-8 is an error.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        std::str::from_utf8(bytes).map_err(|_| Error::InvalidCaveat("caveat is not UTF-8")).and_then(Self::parse)
    }

    /// Parses one caveat text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        PredicateRef::parse(text).map(PredicateRef::into_owned)
    }
}

/// A caveat parsed without allocating: values borrow from the caveat text,
/// lists are validated and kept as text. What evaluation uses on every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateRef<'a> {
    /// `org = ID`
    Org(&'a str),
    /// `expires < T`: unix nanoseconds.
    Expires(i128),
    /// `not-before > T`: unix nanoseconds.
    NotBefore(i128),
    /// `action in a,b,...` (the list text; see [`PredicateRef::items`]).
    ActionIn(&'a str),
    /// `resource = GLOB`
    Resource(&'a str),
    /// `service = NAME`
    Service(&'a str),
    /// `subject = ID`
    Subject(&'a str),
    /// `client-ip in CIDR,...` (the list text, every item a valid range).
    ClientIpIn(&'a str),
    /// `role = NAME`
    Role(&'a str),
}

impl<'a> PredicateRef<'a> {
    /// Parses caveat bytes; non-UTF-8 is an error.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        std::str::from_utf8(bytes).map_err(|_| Error::InvalidCaveat("caveat is not UTF-8")).and_then(Self::parse)
    }

    /// Parses one caveat text, strictly.
    pub fn parse(text: &'a str) -> Result<Self, Error> {
        // Byte scans, not `split_once`: caveats are short, and this runs for
        // every caveat of every check.
        let (key, rest) = split_at_space(text).ok_or(Error::InvalidCaveat("expected `key op value`"))?;
        let (op, value) = split_at_space(rest).ok_or(Error::InvalidCaveat("expected `key op value`"))?;
        if value.is_empty() || value.starts_with(' ') || value.ends_with(' ') {
            return Err(Error::InvalidCaveat("empty or padded value"));
        }
        let expect = |wanted: &'static str| {
            if op == wanted { Ok(()) } else { Err(Error::InvalidCaveat("wrong operator for this caveat")) }
        };
        Ok(match key {
            "org" => {
                expect("=")?;
                PredicateRef::Org(word(value)?)
            }
            "expires" => {
                expect("<")?;
                PredicateRef::Expires(instant(value)?)
            }
            "not-before" => {
                expect(">")?;
                PredicateRef::NotBefore(instant(value)?)
            }
            "action" => {
                expect("in")?;
                check_list(value, |s| word(s).map(drop))?;
                PredicateRef::ActionIn(value)
            }
            "resource" => {
                expect("=")?;
                PredicateRef::Resource(value)
            }
            "service" => {
                expect("=")?;
                PredicateRef::Service(word(value)?)
            }
            "subject" => {
                expect("=")?;
                PredicateRef::Subject(word(value)?)
            }
            "client-ip" => {
                expect("in")?;
                check_list(value, |s| s.parse::<Cidr>().map(drop).map_err(Error::InvalidCaveat))?;
                PredicateRef::ClientIpIn(value)
            }
            "role" => {
                expect("=")?;
                PredicateRef::Role(word(value)?)
            }
            _ => return Err(Error::InvalidCaveat("unknown caveat key")),
        })
    }

    /// The items of a list value (`a,b, c` → `a`, `b`, `c`).
    pub fn items(list: &'a str) -> impl Iterator<Item = &'a str> {
        let mut rest = Some(list);
        std::iter::from_fn(move || {
            let list = rest?;
            let (item, next) = match list.bytes().position(|b| b == b',') {
                Some(i) => (&list[..i], Some(&list[i + 1..])),
                None => (list, None),
            };
            rest = next;
            Some(item.trim_start_matches(' '))
        })
    }

    /// The owned form.
    pub fn into_owned(self) -> Predicate {
        match self {
            PredicateRef::Org(v) => Predicate::Org(v.to_owned()),
            PredicateRef::Expires(t) => Predicate::Expires(t),
            PredicateRef::NotBefore(t) => Predicate::NotBefore(t),
            PredicateRef::ActionIn(l) => Predicate::ActionIn(Self::items(l).map(str::to_owned).collect()),
            PredicateRef::Resource(v) => Predicate::Resource(v.to_owned()),
            PredicateRef::Service(v) => Predicate::Service(v.to_owned()),
            PredicateRef::Subject(v) => Predicate::Subject(v.to_owned()),
            PredicateRef::ClientIpIn(l) => {
                Predicate::ClientIpIn(Self::items(l).map(|c| c.parse().expect("validated by parse")).collect())
            }
            PredicateRef::Role(v) => Predicate::Role(v.to_owned()),
        }
    }
}

/// `text` split at its first space.
fn split_at_space(text: &str) -> Option<(&str, &str)> {
    let i = text.bytes().position(|b| b == b' ')?;
    Some((&text[..i], &text[i + 1..]))
}

/// ASCII bytes a word may not hold: whitespace, control characters, comma.
const NOT_IN_WORD: [bool; 128] = {
    let mut t = [false; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = c.is_ascii_whitespace() || c == 0x0b || c.is_ascii_control() || c == b',';
        b += 1;
    }
    t
};

/// A single token of text: no whitespace, no commas, no control characters.
fn word(s: &str) -> Result<&str, Error> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == ',';
    let ascii_ok = |b: u8| b < 128 && !NOT_IN_WORD[usize::from(b)];
    if s.is_empty() || (!s.bytes().all(ascii_ok) && (s.is_ascii() || s.chars().any(bad))) {
        return Err(Error::InvalidCaveat("value must be one word without spaces or commas"));
    }
    Ok(s)
}

/// Validates a comma-separated list: no empty items (spaces after commas allowed).
fn check_list(s: &str, item: impl Fn(&str) -> Result<(), Error>) -> Result<(), Error> {
    for part in PredicateRef::items(s) {
        if part.is_empty() {
            return Err(Error::InvalidCaveat("empty list item"));
        }
        item(part)?;
    }
    Ok(())
}

fn instant(s: &str) -> Result<i128, Error> {
    if let Some(secs) = fast_utc_seconds(s) {
        return Ok(i128::from(secs) * 1_000_000_000);
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp_nanos)
        .map_err(|_| Error::InvalidCaveat("invalid RFC 3339 timestamp"))
}

/// The common form `YYYY-MM-DDTHH:MM:SSZ` (what Tally writes) without the
/// general parser; anything else (fractions, offsets, leap seconds) returns
/// `None` and takes the general path, which agrees on this form.
fn fast_utc_seconds(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Formats unix nanoseconds as RFC 3339 (UTC), for caveats and output.
pub fn format_rfc3339(unix_nanos: i128) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(unix_nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_nanos.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(Predicate::parse("org = acme"), Ok(Predicate::Org("acme".into())));
        assert_eq!(Predicate::parse("expires < 1970-01-01T00:00:01Z"), Ok(Predicate::Expires(1_000_000_000)));
        assert_eq!(Predicate::parse("not-before > 1970-01-01T00:00:00.5Z"), Ok(Predicate::NotBefore(500_000_000)));
        assert_eq!(
            Predicate::parse("action in read,write, list"),
            Ok(Predicate::ActionIn(vec!["read".into(), "write".into(), "list".into()]))
        );
        assert_eq!(Predicate::parse("resource = apps/my app/*"), Ok(Predicate::Resource("apps/my app/*".into())));
        assert_eq!(Predicate::parse("service = web"), Ok(Predicate::Service("web".into())));
        assert_eq!(Predicate::parse("subject = alice@example.com"), Ok(Predicate::Subject("alice@example.com".into())));
        assert!(
            matches!(Predicate::parse("client-ip in 10.0.0.0/8,::1"), Ok(Predicate::ClientIpIn(v)) if v.len() == 2)
        );
        assert_eq!(Predicate::parse("role = operator"), Ok(Predicate::Role("operator".into())));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "org",
            "org =",
            "org = ",
            "org  = acme",
            "org = acme ",
            "org == acme",
            "org = a b",
            "org = a,b",
            "expires < tomorrow",
            "expires > 2030-01-01T00:00:00Z",
            "not-before < 2030-01-01T00:00:00Z",
            "action in ",
            "action in a,,b",
            "action in a,",
            "action = read",
            "client-ip in 10.0.0.0/33",
            "client-ip in",
            "colour = blue",
            "ORG = acme",
        ] {
            assert!(Predicate::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(Predicate::parse_bytes(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let mut t = OffsetDateTime::from_unix_timestamp(-62_135_596_800).unwrap(); // 0001-01-01
        let end = OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap(); // 9999-12-31T23:59:59
        let step = time::Duration::seconds(86_400 * 13 + 3_607);
        let mut n = 0;
        while t < end {
            let text = t.format(&Rfc3339).unwrap();
            assert_eq!(fast_utc_seconds(&text).map(i128::from), Some(t.unix_timestamp() as i128), "{text}");
            n += 1;
            match t.checked_add(step) {
                Some(next) => t = next,
                None => break,
            }
        }
        assert!(n > 200_000);
        for odd in ["2024-02-29T00:00:00Z", "2000-02-29T12:00:00Z"] {
            assert!(fast_utc_seconds(odd).is_some(), "{odd}");
        }
        for slow in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.5Z",
            "2024-01-01t00:00:00z",
        ] {
            assert_eq!(fast_utc_seconds(slow), None, "{slow}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
