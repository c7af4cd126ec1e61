//! A slow, obviously-written second implementation of the caveat language
//! (parsing, address ranges, globs, evaluation), straight from the rules in
//! `token/src/predicate.rs` and `evaluate.rs`, for the fuzz targets to compare
//! the fast one against. Written with `split_once`, `char`s and a table for
//! globs where the library scans bytes, so the two do not share mistakes.

use std::net::IpAddr;

use tally_token::{Context, Predicate};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An address range as the reference reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Range {
    /// `ADDR/LEN` (LEN: 1 to 3 ASCII digits, at most the address width) or a
    /// bare address. A range within the IPv4-mapped block `::ffff:0:0/96` is
    /// the IPv4 range it carries.
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let width: u32 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                p.parse::<u32>().ok()?
            }
        };
        if prefix > width {
            return None;
        }
        if let IpAddr::V6(v6) = addr {
            let o = v6.octets();
            if prefix >= 96 && o[..10] == [0; 10] && o[10..12] == [0xff, 0xff] {
                let v4 = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
                return Some(Self { addr: IpAddr::V4(v4), prefix: (prefix - 96) as u8 });
            }
        }
        Some(Self { addr, prefix: prefix as u8 })
    }

    /// Whether `ip` is inside; an IPv4-mapped IPv6 client address counts as
    /// the IPv4 address it carries, so an IPv6 range never contains one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> Vec<bool> {
            let bytes = match a {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            bytes.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect()
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let n = usize::from(self.prefix);
        bits(self.addr)[..n] == bits(ip)[..n]
    }

    /// The canonical text of the range.
    pub fn text(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

/// A predicate as the reference reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pred {
    Org(String),
    Expires(i128),
    NotBefore(i128),
    ActionIn(Vec<String>),
    Resource(String),
    Service(String),
    Subject(String),
    ClientIpIn(Vec<Range>),
    Role(String),
}

/// One token of text: not empty, no whitespace, control character or comma.
fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
}

/// Items of a comma list, spaces after each comma dropped; `None` if one is empty.
fn list(s: &str) -> Option<Vec<&str>> {
    s.split(',').map(|i| i.trim_start_matches(' ')).map(|i| (!i.is_empty()).then_some(i)).collect()
}

fn instant(s: &str) -> Option<i128> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp_nanos)
}

/// Parses one caveat: `key op value`, single spaces, value not empty and not
/// padded with spaces.
pub fn parse(bytes: &[u8]) -> Option<Pred> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (key, rest) = text.split_once(' ')?;
    let (op, value) = rest.split_once(' ')?;
    if value.is_empty() || value.starts_with(' ') || value.ends_with(' ') {
        return None;
    }
    let word = |v: &str| is_word(v).then(|| v.to_owned());
    match (key, op) {
        ("org", "=") => word(value).map(Pred::Org),
        ("expires", "<") => instant(value).map(Pred::Expires),
        ("not-before", ">") => instant(value).map(Pred::NotBefore),
        ("action", "in") => {
            let items = list(value)?;
            items.iter().all(|i| is_word(i)).then(|| Pred::ActionIn(items.iter().map(|i| (*i).to_owned()).collect()))
        }
        ("resource", "=") => Some(Pred::Resource(value.to_owned())),
        ("service", "=") => word(value).map(Pred::Service),
        ("subject", "=") => word(value).map(Pred::Subject),
        ("client-ip", "in") => list(value)?.into_iter().map(Range::parse).collect::<Option<_>>().map(Pred::ClientIpIn),
        ("role", "=") => word(value).map(Pred::Role),
        _ => None,
    }
}

/// Whether the library's predicate is the one the reference read.
pub fn same(lib: &Predicate, reference: &Pred) -> bool {
    match (lib, reference) {
        (Predicate::Org(a), Pred::Org(b))
        | (Predicate::Resource(a), Pred::Resource(b))
        | (Predicate::Service(a), Pred::Service(b))
        | (Predicate::Subject(a), Pred::Subject(b))
        | (Predicate::Role(a), Pred::Role(b)) => a == b,
        (Predicate::Expires(a), Pred::Expires(b)) | (Predicate::NotBefore(a), Pred::NotBefore(b)) => a == b,
        (Predicate::ActionIn(a), Pred::ActionIn(b)) => a == b,
        (Predicate::ClientIpIn(a), Pred::ClientIpIn(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| b.text().parse().as_ref() == Ok(a))
        }
        _ => false,
    }
}

/// Glob match over characters: `*` any run, `?` one character, the rest literal.
/// Dynamic programming, O(pattern × text).
pub fn glob(pattern: &str, text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    // row[j]: the pattern so far matches the first j characters of the text.
    let mut row = vec![false; t.len() + 1];
    let mut next = vec![false; t.len() + 1];
    row[0] = true;
    for p in pattern.chars() {
        next[0] = p == '*' && row[0];
        for j in 1..=t.len() {
            next[j] = match p {
                '*' => next[j - 1] || row[j],
                '?' => row[j - 1],
                c => row[j - 1] && t[j - 1] == c,
            };
        }
        std::mem::swap(&mut row, &mut next);
    }
    row[t.len()]
}

/// What the reference concludes about a list of caveats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub org: Option<String>,
    pub subject: Option<String>,
    pub role: Option<String>,
    pub expires: Option<i128>,
}

/// Why the reference denies: which caveat (index) and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    Expired,
    NotYetValid,
    Unsatisfied,
    Invalid,
    TooCostly,
}

/// The glob budget of one evaluation (`tally_token::MAX_GLOB_WEIGHT`).
const GLOB_BUDGET: usize = 4;
/// The list-item budget of one evaluation (`tally_token::MAX_LIST_ITEMS`).
const LIST_BUDGET: usize = 64;

/// A glob's weight, counted plainly: 0 with fewer than two stars (nothing
/// is searched for); otherwise the longest run of characters between
/// stars, with its `?`s at either end left out, that still holds a `?`,
/// in 64-character words; 1 when there is none. Plus one for every 16
/// segments past the first.
fn weight(glob: &str) -> usize {
    let mut heaviest = 1;
    let segments = glob.split('*').count();
    if segments < 3 {
        return 0;
    }
    for segment in glob.split('*') {
        let chars: Vec<char> = segment.chars().collect();
        let first = chars.iter().position(|&c| c != '?');
        let last = chars.iter().rposition(|&c| c != '?');
        if let (Some(first), Some(last)) = (first, last) {
            let core = &chars[first..=last];
            if core.contains(&'?') {
                heaviest = heaviest.max(core.len().div_ceil(64));
            }
        }
    }
    heaviest + (segments - 1) / 16
}

/// Records a claim that every caveat of its kind must repeat.
fn claim(slot: &mut Option<String>, value: &str) -> bool {
    match slot {
        Some(v) => v == value,
        None => {
            *slot = Some(value.to_owned());
            true
        }
    }
}

/// Evaluates caveats in order; the first that fails decides.
pub fn evaluate(caveats: &[Option<Pred>], ctx: &Context<'_>) -> Result<Claims, (usize, Fail)> {
    let mut c = Claims::default();
    let mut budget = GLOB_BUDGET;
    let mut items = LIST_BUDGET;
    for (i, pred) in caveats.iter().enumerate() {
        let Some(pred) = pred else { return Err((i, Fail::Invalid)) };
        let holds = match pred {
            Pred::Org(o) => ctx.org.is_none_or(|w| w == o) && claim(&mut c.org, o),
            Pred::Subject(s) => ctx.subject.is_none_or(|w| w == s) && claim(&mut c.subject, s),
            Pred::Role(r) => ctx.role == Some(r.as_str()) && claim(&mut c.role, r),
            Pred::Expires(t) => {
                // Invalid at or after the instant, with the skew in the token's favour.
                if ctx.now_unix_nanos >= t.saturating_add(ctx.skew_nanos) {
                    return Err((i, Fail::Expired));
                }
                c.expires = Some(c.expires.map_or(*t, |e| e.min(*t)));
                true
            }
            Pred::NotBefore(t) => {
                if ctx.now_unix_nanos < t.saturating_sub(ctx.skew_nanos) {
                    return Err((i, Fail::NotYetValid));
                }
                true
            }
            Pred::ActionIn(set) => {
                if set.len() > items {
                    return Err((i, Fail::TooCostly));
                }
                items -= set.len();
                ctx.action.is_some_and(|a| set.iter().any(|s| s == a))
            }
            Pred::Resource(g) => {
                if weight(g) > budget {
                    return Err((i, Fail::TooCostly));
                }
                budget -= weight(g);
                ctx.resource.is_some_and(|r| glob(g, r))
            }
            Pred::Service(s) => ctx.service == Some(s.as_str()),
            Pred::ClientIpIn(ranges) => {
                if ranges.len() > items {
                    return Err((i, Fail::TooCostly));
                }
                items -= ranges.len();
                ctx.client_ip.is_some_and(|ip| ranges.iter().any(|r| r.contains(ip)))
            }
        };
        if !holds {
            return Err((i, Fail::Unsatisfied));
        }
    }
    Ok(c)
}
