//! Caveats parsed once and kept with their text in one buffer, for a caller
//! that evaluates the same token again and again (the verifier's token memo):
//! evaluation then only applies each predicate to the request, with no
//! UTF-8 check and no parsing. It agrees with [`crate::evaluate`] on every
//! input (a property test and the `caveat_parse` fuzz target compare them).

use std::fmt;

use crate::Error;
use crate::evaluate::{Claims, Context, Denial, apply};
use crate::predicate::PredicateRef;

/// A parsed predicate with its text values as offsets into the buffer: a
/// [`PredicateRef`] without the borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compiled {
    Text(Kind, u32, u32),
    Expires(i128),
    NotBefore(i128),
    /// Why the caveat does not parse.
    Invalid(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Org,
    ActionIn,
    Resource,
    Service,
    Subject,
    ClientIpIn,
    Role,
}

/// First-party caveats, parsed. `Debug` shows only the count (caveat texts
/// are not secret, but say nothing useful in bulk).
#[derive(Clone, PartialEq, Eq)]
pub struct CompiledCaveats {
    /// Every caveat's text (lossy UTF-8), one after the other.
    text: Box<str>,
    /// Per caveat: where its text ends, and its predicate.
    items: Box<[(u32, Compiled)]>,
}

impl fmt::Debug for CompiledCaveats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledCaveats").field("caveats", &self.items.len()).finish()
    }
}

impl CompiledCaveats {
    /// Parses raw first-party caveats, in order.
    pub fn compile<'c>(caveats: impl IntoIterator<Item = &'c [u8]>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for bytes in caveats {
            let utf8 = std::str::from_utf8(bytes).is_ok();
            text.push_str(&String::from_utf8_lossy(bytes));
            ends.push((text.len(), utf8));
        }
        let text: Box<str> = text.into();
        let mut start = 0;
        let items = ends
            .into_iter()
            .map(|(end, utf8)| {
                let caveat = &text[start..end];
                start = end;
                let compiled = if utf8 {
                    compile(PredicateRef::parse(caveat), &text)
                } else {
                    Compiled::Invalid(Error::InvalidCaveat("caveat is not UTF-8"))
                };
                (end as u32, compiled)
            })
            .collect();
        Self { text, items }
    }

    /// Caveats held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there is no caveat.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Evaluates the caveats against `ctx`: the same answer as
    /// [`crate::evaluate`] over the raw caveats.
    pub fn evaluate(&self, ctx: &Context<'_>) -> Result<Claims<'_>, Denial> {
        let mut claims = Claims::default();
        let mut budget = crate::evaluate::Budget::FULL;
        let mut start = 0;
        for (index, &(end, compiled)) in self.items.iter().enumerate() {
            let caveat = &self.text[start..end as usize];
            start = end as usize;
            apply(view(compiled, &self.text), ctx, &mut claims, &mut budget).map_err(|kind| Denial {
                kind,
                index,
                caveat: caveat.to_owned(),
            })?;
        }
        Ok(claims)
    }
}

/// `pred`, parsed from a slice of `base`, as offsets into `base`.
fn compile(pred: Result<PredicateRef<'_>, Error>, base: &str) -> Compiled {
    let text = |kind: Kind, value: &str| {
        let start = value.as_ptr() as usize - base.as_ptr() as usize;
        Compiled::Text(kind, start as u32, (start + value.len()) as u32)
    };
    match pred {
        Err(e) => Compiled::Invalid(e),
        Ok(PredicateRef::Expires(t)) => Compiled::Expires(t),
        Ok(PredicateRef::NotBefore(t)) => Compiled::NotBefore(t),
        Ok(PredicateRef::Org(v)) => text(Kind::Org, v),
        Ok(PredicateRef::ActionIn(v)) => text(Kind::ActionIn, v),
        Ok(PredicateRef::Resource(v)) => text(Kind::Resource, v),
        Ok(PredicateRef::Service(v)) => text(Kind::Service, v),
        Ok(PredicateRef::Subject(v)) => text(Kind::Subject, v),
        Ok(PredicateRef::ClientIpIn(v)) => text(Kind::ClientIpIn, v),
        Ok(PredicateRef::Role(v)) => text(Kind::Role, v),
    }
}

/// The predicate again, borrowing its values from `base`.
fn view(compiled: Compiled, base: &str) -> Result<PredicateRef<'_>, Error> {
    Ok(match compiled {
        Compiled::Invalid(e) => return Err(e),
        Compiled::Expires(t) => PredicateRef::Expires(t),
        Compiled::NotBefore(t) => PredicateRef::NotBefore(t),
        Compiled::Text(kind, start, end) => {
            let v = &base[start as usize..end as usize];
            match kind {
                Kind::Org => PredicateRef::Org(v),
                Kind::ActionIn => PredicateRef::ActionIn(v),
                Kind::Resource => PredicateRef::Resource(v),
                Kind::Service => PredicateRef::Service(v),
                Kind::Subject => PredicateRef::Subject(v),
                Kind::ClientIpIn => PredicateRef::ClientIpIn(v),
                Kind::Role => PredicateRef::Role(v),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::evaluate;

    #[test]
    fn agrees_with_evaluate_on_holds_fails_and_garbage() {
        let mut ctx = Context::at(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
        ctx.action = Some("read");
        ctx.resource = Some("apps/web/x");
        ctx.client_ip = Some("10.1.2.3".parse().unwrap());
        let lists: [&[&[u8]]; 5] = [
            &[b"org = acme", b"action in write, read", b"resource = apps/*", b"client-ip in 10.0.0.0/8"],
            &[b"subject = alice", b"expires < 2001-09-09T01:00:00Z"],
            &[b"org = acme", b"colour = blue"],
            &[b"service = web", &[0xff, 0xfe]],
            &[],
        ];
        for caveats in lists {
            let compiled = CompiledCaveats::compile(caveats.iter().copied());
            assert_eq!(compiled.len(), caveats.len());
            assert_eq!(compiled.evaluate(&ctx), evaluate(caveats.iter().copied(), &ctx), "{caveats:?}");
        }
    }
}
