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
//! items. Anything else is an error, which evaluation treats as unsatisfied.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// Why a caveat text is not a predicate of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Predicate {
    /// Parses caveat bytes; non-UTF-8 is an error.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
        std::str::from_utf8(bytes).map_err(|_| ParseError("caveat is not UTF-8")).and_then(Self::parse)
    }

    /// Parses one caveat text.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let (key, rest) = text.split_once(' ').ok_or(ParseError("expected `key op value`"))?;
        let (op, value) = rest.split_once(' ').ok_or(ParseError("expected `key op value`"))?;
        if value.is_empty() || value.starts_with(' ') || value.ends_with(' ') {
            return Err(ParseError("empty or padded value"));
        }
        let expect = |wanted: &'static str| {
            if op == wanted { Ok(()) } else { Err(ParseError("wrong operator for this caveat")) }
        };
        Ok(match key {
            "org" => {
                expect("=")?;
                Predicate::Org(word(value)?)
            }
            "expires" => {
                expect("<")?;
                Predicate::Expires(instant(value)?)
            }
            "not-before" => {
                expect(">")?;
                Predicate::NotBefore(instant(value)?)
            }
            "action" => {
                expect("in")?;
                Predicate::ActionIn(list(value, word)?)
            }
            "resource" => {
                expect("=")?;
                Predicate::Resource(value.to_owned())
            }
            "service" => {
                expect("=")?;
                Predicate::Service(word(value)?)
            }
            "subject" => {
                expect("=")?;
                Predicate::Subject(word(value)?)
            }
            "client-ip" => {
                expect("in")?;
                Predicate::ClientIpIn(list(value, |s| s.parse::<Cidr>().map_err(ParseError))?)
            }
            "role" => {
                expect("=")?;
                Predicate::Role(word(value)?)
            }
            _ => return Err(ParseError("unknown caveat key")),
        })
    }
}

/// A single token of text: no whitespace, no commas, no control characters.
fn word(s: &str) -> Result<String, ParseError> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
        return Err(ParseError("value must be one word without spaces or commas"));
    }
    Ok(s.to_owned())
}

/// A comma-separated list with no empty items (spaces after commas allowed).
fn list<T>(s: &str, item: impl Fn(&str) -> Result<T, ParseError>) -> Result<Vec<T>, ParseError> {
    s.split(',')
        .map(|part| {
            let part = part.trim_start_matches(' ');
            if part.is_empty() { Err(ParseError("empty list item")) } else { item(part) }
        })
        .collect()
}

fn instant(s: &str) -> Result<i128, ParseError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp_nanos)
        .map_err(|_| ParseError("invalid RFC 3339 timestamp"))
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
    fn formats_rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
