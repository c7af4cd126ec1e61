//! The input language of the `check_path` target: a line naming the token,
//! then lines that change it or fill in the request. Text, so libFuzzer's
//! mutations and the committed seeds stay readable.
//!
//! ```text
//! @2                    the cached token 2 (any other first line: literal bundle text)
//! +action in read       attenuate: append a first-party caveat, signature updated
//! !service = db         append a caveat, signature left as it was (a forgery)
//! -                     drop the last caveat, signature left as it was
//! ^17                   flip bit 17 of the signature
//! #3                    flip bit 3 of the identifier
//! &cav-1                append a third-party caveat (no discharge)
//! ,TEXT                 append TEXT as a discharge part
//! Lhttps://x            set the location
//! f3                    write the token in text flavour 3 (`bundle_text::write_part`)
//! a=read                request field: a action, r resource, s service, u subject, i client IP, o org
//! a                     the field is absent
//! ```

use std::net::IpAddr;

use tally_token::{Macaroon, RootKey, Signature};

/// Where the token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base<'a> {
    /// One of the tokens the verifier has cached (index, reduced modulo their count).
    Cached(usize),
    /// Bundle text as given.
    Literal(&'a str),
}

/// A change to the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<'a> {
    Attenuate(&'a str),
    AppendUnsigned(&'a str),
    DropLast,
    FlipSignatureBit(usize),
    FlipIdentifierBit(usize),
    ThirdParty(&'a str),
    Discharge(&'a str),
    Location(&'a str),
}

/// One input, read.
#[derive(Debug, Clone, Default)]
pub struct Recipe<'a> {
    pub base: Option<Base<'a>>,
    pub edits: Vec<Edit<'a>>,
    pub flavour: usize,
    pub action: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub service: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    /// The org the checking service requires.
    pub org: Option<&'a str>,
}

impl<'a> Recipe<'a> {
    /// Reads an input; lines it does not understand are ignored.
    pub fn read(text: &'a str) -> Self {
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or_default();
        let base = match first.strip_prefix('@') {
            Some(n) => Base::Cached(n.trim().parse().unwrap_or(0)),
            None => Base::Literal(first),
        };
        let mut r = Recipe { base: Some(base), ..Recipe::default() };
        let number = |s: &str| s.trim().parse::<usize>().unwrap_or(0);
        for line in lines {
            let Some(tag) = line.chars().next() else { continue };
            let rest = &line[tag.len_utf8()..];
            let field = rest.strip_prefix('=');
            match tag {
                '+' => r.edits.push(Edit::Attenuate(rest)),
                '!' => r.edits.push(Edit::AppendUnsigned(rest)),
                '-' => r.edits.push(Edit::DropLast),
                '^' => r.edits.push(Edit::FlipSignatureBit(number(rest))),
                '#' => r.edits.push(Edit::FlipIdentifierBit(number(rest))),
                '&' => r.edits.push(Edit::ThirdParty(rest)),
                ',' => r.edits.push(Edit::Discharge(rest)),
                'L' => r.edits.push(Edit::Location(rest)),
                'f' => r.flavour = number(rest),
                'a' => r.action = field,
                'r' => r.resource = field,
                's' => r.service = field,
                'u' => r.subject = field,
                'i' => r.client_ip = field.and_then(|v| v.parse().ok()),
                'o' => r.org = field,
                _ => {}
            }
        }
        r
    }
}

/// Applies one edit to a token; discharges are collected as text.
pub fn apply<'a>(m: &mut Macaroon, discharges: &mut Vec<&'a str>, edit: Edit<'a>) {
    let rebuild = |m: &Macaroon, identifier: Vec<u8>, caveats: Vec<tally_token::Caveat>, sig: Signature| {
        Macaroon::from_parts(m.location().map(str::to_owned), identifier, caveats, sig)
    };
    match edit {
        Edit::Attenuate(c) => m.add_first_party(c),
        Edit::AppendUnsigned(c) => {
            let mut caveats = m.caveats().to_vec();
            caveats.push(tally_token::Caveat::first_party(c));
            *m = rebuild(m, m.identifier().to_vec(), caveats, m.signature().clone());
        }
        Edit::DropLast => {
            let mut caveats = m.caveats().to_vec();
            caveats.pop();
            *m = rebuild(m, m.identifier().to_vec(), caveats, m.signature().clone());
        }
        Edit::FlipSignatureBit(bit) => {
            let mut sig = *m.signature().as_bytes();
            sig[bit / 8 % 32] ^= 1 << (bit % 8);
            *m = rebuild(m, m.identifier().to_vec(), m.caveats().to_vec(), Signature::from_bytes(sig));
        }
        Edit::FlipIdentifierBit(bit) => {
            let mut id = m.identifier().to_vec();
            if !id.is_empty() {
                let i = bit / 8 % id.len();
                id[i] ^= 1 << (bit % 8);
            }
            *m = rebuild(m, id, m.caveats().to_vec(), m.signature().clone());
        }
        Edit::ThirdParty(cid) => m.add_third_party(None, &RootKey::from_bytes([5; 32]), cid, [1; 24]),
        Edit::Discharge(text) => discharges.push(text),
        Edit::Location(loc) => {
            let loc = Some(loc.to_owned()).filter(|l| !l.is_empty());
            *m = Macaroon::from_parts(loc, m.identifier().to_vec(), m.caveats().to_vec(), m.signature().clone());
        }
    }
}
