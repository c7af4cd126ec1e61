//! Evaluating first-party caveats against a request. Fail closed: a caveat
//! that does not parse, or restricts a field the request does not supply, is
//! unsatisfied. Caveats of the same kind intersect.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::glob::{glob_match, glob_weight};
use crate::predicate::PredicateRef;

/// How much matching its resource globs may cost one evaluation, in passes
/// over the resource: a glob weighs [`glob_weight`] (0 for one with at most
/// one `*`, which searches nothing; otherwise 1, or ⌈k / 64⌉ for its longest
/// `?` run of k characters, plus one per 16 segments past the first), and
/// the resource caveats of a token, its discharges' included, may weigh
/// this much together. Past it a resource caveat is not matched and does
/// not hold ([`DenialKind::TooCostly`]): however a holder builds its token
/// within the limits (128 caveats could each scan the resource), a Check
/// scans the resource at most this many times over. Real tokens carry
/// prefix and suffix globs (`apps/web/*`, weight 0) and rarely more than one
/// that searches (`*/public/*`). Four keep the worst Check a holder can
/// build under 50 µs (`cargo bench -p tally-verifier --bench check -- worst`).
pub const MAX_GLOB_WEIGHT: u32 = 4;

/// How many list items (of `action in` and `client-ip in` caveats together,
/// discharges' included) one evaluation compares the request with. A list
/// is charged all its items before it is read; past this the caveat does
/// not hold ([`DenialKind::TooCostly`]). Without it a holder fills a 16 KiB
/// token with address lists the client is in only at the end, and every
/// Check parses some 1,400 ranges (measured: 94 µs, over half of it parsing
/// addresses; an address range costs about 70 ns, an action 9 ns). Real
/// tokens carry a few short lists.
pub const MAX_LIST_ITEMS: u32 = 64;

/// What is left of one evaluation's budgets ([`MAX_GLOB_WEIGHT`],
/// [`MAX_LIST_ITEMS`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    glob_weight: u32,
    list_items: u32,
}

impl Budget {
    pub(crate) const FULL: Self = Self { glob_weight: MAX_GLOB_WEIGHT, list_items: MAX_LIST_ITEMS };

    fn spend(left: &mut u32, cost: u32) -> Result<(), DenialKind> {
        *left = left.checked_sub(cost).ok_or(DenialKind::TooCostly)?;
        Ok(())
    }

    /// Charges a list's items (one more than its commas: parsed lists hold no empty item).
    fn list(&mut self, list: &str) -> Result<(), DenialKind> {
        let items = memchr::memchr_iter(b',', list.as_bytes()).count() + 1;
        Self::spend(&mut self.list_items, u32::try_from(items).unwrap_or(u32::MAX))
    }
}

/// Default clock skew allowance for `expires` and `not-before`.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(2);

/// What a request looks like to the caveats. `None` means the request does
/// not supply that field.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Now, as unix nanoseconds.
    pub now_unix_nanos: i128,
    /// Allowed clock skew, in nanoseconds, applied in the token's favour.
    pub skew_nanos: i128,
    /// The action requested (`read`, `write`, an RPC name…).
    pub action: Option<&'a str>,
    /// The resource acted on.
    pub resource: Option<&'a str>,
    /// The service doing the check (audience).
    pub service: Option<&'a str>,
    /// The subject the request claims to act for.
    pub subject: Option<&'a str>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The org the token must belong to, where known (the key's org).
    pub org: Option<&'a str>,
    /// The role required (Tally's own API).
    pub role: Option<&'a str>,
}

impl Context<'_> {
    /// An empty request at `now` with the default skew.
    pub fn at(now: SystemTime) -> Self {
        let now_unix_nanos = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Self {
            now_unix_nanos,
            skew_nanos: DEFAULT_SKEW.as_nanos() as i128,
            action: None,
            resource: None,
            service: None,
            subject: None,
            client_ip: None,
            org: None,
            role: None,
        }
    }
}

/// What the caveats say about the token once they all hold (borrowed from
/// the caveat texts: evaluation allocates nothing unless a caveat fails).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims<'a> {
    /// From `org = ID`.
    pub org: Option<&'a str>,
    /// From `subject = ID`.
    pub subject: Option<&'a str>,
    /// From `role = NAME`.
    pub role: Option<&'a str>,
    /// Earliest `expires`, unix nanoseconds.
    pub expires_unix_nanos: Option<i128>,
}

/// Which way a caveat failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    /// An `expires` instant has passed.
    Expired,
    /// A `not-before` instant has not come yet.
    NotYetValid,
    /// The predicate is well formed and does not hold for this request.
    Unsatisfied,
    /// The caveat is not in the language (unknown key or malformed).
    Invalid(Error),
    /// A resource or list caveat past the evaluation's budget
    /// ([`MAX_GLOB_WEIGHT`], [`MAX_LIST_ITEMS`]): not read, so it does not hold.
    TooCostly,
}

/// A caveat that does not hold. Caveat texts are not secret and are reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub kind: DenialKind,
    /// Position in the evaluated sequence (root caveats first, then discharges').
    pub index: usize,
    /// The caveat text (lossy UTF-8).
    pub caveat: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DenialKind::Expired => write!(f, "token expired (caveat `{}`)", self.caveat),
            DenialKind::NotYetValid => write!(f, "token not yet valid (caveat `{}`)", self.caveat),
            DenialKind::Unsatisfied => write!(f, "caveat `{}` not satisfied", self.caveat),
            DenialKind::Invalid(e) => write!(f, "caveat `{}` is invalid: {e}", self.caveat),
            DenialKind::TooCostly => write!(
                f,
                "caveat `{}` not evaluated: the token's caveats cost more than one check allows \
                 (resource patterns weighing {MAX_GLOB_WEIGHT}, or lists of {MAX_LIST_ITEMS} items, together)",
                self.caveat
            ),
        }
    }
}

/// Evaluates raw first-party caveats against `ctx`.
pub fn evaluate<'c>(caveats: impl IntoIterator<Item = &'c [u8]>, ctx: &Context<'_>) -> Result<Claims<'c>, Denial> {
    let mut claims = Claims::default();
    let mut budget = Budget::FULL;
    for (index, bytes) in caveats.into_iter().enumerate() {
        apply(PredicateRef::parse_bytes(bytes), ctx, &mut claims, &mut budget).map_err(|kind| Denial {
            kind,
            index,
            caveat: String::from_utf8_lossy(bytes).into_owned(),
        })?;
    }
    Ok(claims)
}

/// One caveat: does it hold, and what does it add to the claims. A resource
/// glob is charged its weight, a list its items, to `budget` (what is left
/// of this evaluation's) before it is read.
pub(crate) fn apply<'c>(
    pred: Result<PredicateRef<'c>, Error>,
    ctx: &Context<'_>,
    claims: &mut Claims<'c>,
    budget: &mut Budget,
) -> Result<(), DenialKind> {
    let pred = pred.map_err(DenialKind::Invalid)?;
    let holds = match pred {
        PredicateRef::Org(org) => ctx.org.is_none_or(|want| want == org) && same_or_set(&mut claims.org, org),
        PredicateRef::Subject(subject) => {
            ctx.subject.is_none_or(|want| want == subject) && same_or_set(&mut claims.subject, subject)
        }
        PredicateRef::Role(role) => ctx.role == Some(role) && same_or_set(&mut claims.role, role),
        PredicateRef::Expires(t) => {
            if ctx.now_unix_nanos >= t.saturating_add(ctx.skew_nanos) {
                return Err(DenialKind::Expired);
            }
            claims.expires_unix_nanos = Some(claims.expires_unix_nanos.map_or(t, |e| e.min(t)));
            true
        }
        PredicateRef::NotBefore(t) => {
            if ctx.now_unix_nanos < t.saturating_sub(ctx.skew_nanos) {
                return Err(DenialKind::NotYetValid);
            }
            true
        }
        PredicateRef::ActionIn(set) => {
            budget.list(set)?;
            ctx.action.is_some_and(|a| PredicateRef::items(set).any(|s| s == a))
        }
        PredicateRef::Resource(glob) => {
            Budget::spend(&mut budget.glob_weight, glob_weight(glob))?;
            ctx.resource.is_some_and(|r| glob_match(glob, r))
        }
        PredicateRef::Service(name) => ctx.service == Some(name),
        PredicateRef::ClientIpIn(ranges) => {
            budget.list(ranges)?;
            ctx.client_ip.is_some_and(|ip| {
                PredicateRef::items(ranges).any(|r| r.parse::<crate::Cidr>().is_ok_and(|r| r.contains(ip)))
            })
        }
    };
    if holds { Ok(()) } else { Err(DenialKind::Unsatisfied) }
}

/// Records a claim; false when a different value was already claimed (two
/// different orgs or subjects never hold).
fn same_or_set<'c>(slot: &mut Option<&'c str>, value: &'c str) -> bool {
    match slot {
        Some(existing) => *existing == value,
        None => {
            *slot = Some(value);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        let mut c = Context::at(UNIX_EPOCH + Duration::from_secs(1_000_000_000)); // 2001-09-09T01:46:40Z
        c.action = Some("read");
        c.resource = Some("apps/web/x");
        c.service = Some("web");
        c.client_ip = Some("10.1.2.3".parse().unwrap());
        c
    }

    fn eval<'a>(caveats: &[&'a str], ctx: &Context<'_>) -> Result<Claims<'a>, Denial> {
        evaluate(caveats.iter().map(|c| c.as_bytes()), ctx)
    }

    fn kind(caveats: &[&str], ctx: &Context<'_>) -> Option<DenialKind> {
        eval(caveats, ctx).err().map(|d| d.kind)
    }

    #[test]
    fn everything_holds() {
        let claims = eval(
            &[
                "org = acme",
                "subject = alice",
                "action in read,write",
                "resource = apps/web/*",
                "service = web",
                "client-ip in 10.0.0.0/8",
                "expires < 2001-09-09T02:00:00Z",
                "expires < 2001-09-09T03:00:00Z",
                "not-before > 2001-09-09T01:00:00Z",
            ],
            &ctx(),
        )
        .unwrap();
        assert_eq!(claims.org, Some("acme"));
        assert_eq!(claims.subject, Some("alice"));
        assert_eq!(claims.expires_unix_nanos, Some(1_000_000_800 * 1_000_000_000));
    }

    #[test]
    fn time_bounds_with_skew() {
        let c = ctx();
        assert_eq!(kind(&["expires < 2001-09-09T01:46:38Z"], &c), Some(DenialKind::Expired));
        assert_eq!(kind(&["expires < 2001-09-09T01:46:39Z"], &c), None, "within skew");
        let mut strict = c;
        strict.skew_nanos = 0;
        assert_eq!(kind(&["expires < 2001-09-09T01:46:40Z"], &strict), Some(DenialKind::Expired), "at the instant");
        assert_eq!(kind(&["not-before > 2001-09-09T01:46:41Z"], &strict), Some(DenialKind::NotYetValid));
        assert_eq!(kind(&["not-before > 2001-09-09T01:46:40Z"], &strict), None);
    }

    #[test]
    fn same_kind_intersects() {
        let c = ctx();
        assert_eq!(kind(&["action in read,write", "action in write"], &c), Some(DenialKind::Unsatisfied));
        assert_eq!(kind(&["resource = apps/*", "resource = apps/db/*"], &c), Some(DenialKind::Unsatisfied));
        assert_eq!(kind(&["org = a", "org = b"], &c), Some(DenialKind::Unsatisfied));
        assert_eq!(kind(&["subject = a", "subject = b"], &c), Some(DenialKind::Unsatisfied));
        assert_eq!(kind(&["org = a", "org = a"], &c), None);
    }

    #[test]
    fn missing_request_fields_fail_closed() {
        let bare = Context::at(UNIX_EPOCH);
        for caveat in ["action in read", "resource = *", "service = web", "client-ip in 0.0.0.0/0", "role = operator"] {
            assert_eq!(kind(&[caveat], &bare), Some(DenialKind::Unsatisfied), "{caveat}");
        }
        // org and subject are informational when the request names none.
        assert_eq!(kind(&["org = acme", "subject = bob"], &bare), None);
    }

    #[test]
    fn context_org_and_subject_must_match() {
        let mut c = ctx();
        c.org = Some("acme");
        c.subject = Some("alice");
        assert_eq!(kind(&["org = other"], &c), Some(DenialKind::Unsatisfied));
        assert_eq!(kind(&["subject = bob"], &c), Some(DenialKind::Unsatisfied));
        assert_eq!(kind(&["org = acme", "subject = alice"], &c), None);
    }

    #[test]
    fn unknown_and_malformed_are_unsatisfied() {
        let c = ctx();
        let d = eval(&["service = web", "colour = blue"], &c).unwrap_err();
        assert_eq!(d.index, 1);
        assert!(matches!(d.kind, DenialKind::Invalid(_)));
        assert_eq!(d.to_string(), "caveat `colour = blue` is invalid: unknown caveat key");
        assert!(matches!(kind(&["expires < soon"], &c), Some(DenialKind::Invalid(_))));
        assert!(evaluate([&[0xffu8][..]], &c).is_err());
    }

    #[test]
    fn parsed_and_raw_agree() {
        let c = ctx();
        let caveats = ["action in read", "org = acme", "service = api"];
        let parsed = crate::CompiledCaveats::compile(caveats.iter().map(|t| t.as_bytes()));
        assert_eq!(parsed.evaluate(&c), eval(&caveats, &c));
    }

    /// The items of action and address lists share one budget per
    /// evaluation: 64 hold, the 65th list item is not even read; the
    /// compiled caveats agree.
    #[test]
    fn list_items_share_a_budget() {
        let mut c = ctx();
        c.client_ip = Some("10.0.0.9".parse().unwrap());
        let half = MAX_LIST_ITEMS as usize / 2;
        let actions = format!("action in {},read", (1..half).map(|i| format!("a{i}")).collect::<Vec<_>>().join(","));
        let ranges = format!(
            "client-ip in {},10.0.0.0/8",
            (1..half).map(|i| format!("192.0.2.{i}")).collect::<Vec<_>>().join(",")
        );
        let full = [actions.as_str(), ranges.as_str()];
        assert!(eval(&full, &c).is_ok(), "32 + 32 items");
        let over = [actions.as_str(), ranges.as_str(), "action in read"];
        let denial = eval(&over, &c).unwrap_err();
        assert_eq!((denial.kind, denial.index), (DenialKind::TooCostly, 2));
        assert!(denial.to_string().contains("lists of 64 items"), "{denial}");
        let parsed = crate::CompiledCaveats::compile(over.iter().map(|t| t.as_bytes()));
        assert_eq!(parsed.evaluate(&c), eval(&over, &c));
        // A list that does not fit is not read, even when it would hold.
        let long = format!("action in read,{}", (0..64).map(|i| format!("b{i}")).collect::<Vec<_>>().join(","));
        assert_eq!(kind(&[long.as_str()], &c), Some(DenialKind::TooCostly));
    }

    /// Resource globs that search share one budget per evaluation: four
    /// searching globs hold, the fifth is not even matched; prefix globs
    /// search nothing and cost nothing; a glob with a long `?` run weighs
    /// more; the compiled caveats agree.
    #[test]
    fn resource_globs_share_a_budget() {
        let c = ctx();
        let prefixes = vec!["resource = apps/*"; 128];
        assert!(eval(&prefixes, &c).is_ok(), "prefix globs weigh nothing");
        let searching = vec!["resource = apps/*e*/x"; MAX_GLOB_WEIGHT as usize];
        assert!(eval(&searching, &c).is_ok());
        let mut over = searching.clone();
        over.push("resource = apps/*e*/x");
        let denial = eval(&over, &c).unwrap_err();
        assert_eq!((denial.kind, denial.index), (DenialKind::TooCostly, MAX_GLOB_WEIGHT as usize));
        assert!(denial.to_string().contains("resource patterns weighing 4"), "{denial}");
        let parsed = crate::CompiledCaveats::compile(over.iter().map(|t| t.as_bytes()));
        assert_eq!(parsed.evaluate(&c), eval(&over, &c));

        // A `?` run of 130 characters weighs 3: one holds, a second does not.
        let heavy = format!("resource = apps/*{}*", "x?".repeat(65));
        assert_eq!(crate::glob_weight(heavy.trim_start_matches("resource = ")), 3);
        let mut heavy_ones = vec![heavy.as_str(); 1];
        assert_eq!(kind(&heavy_ones, &c), Some(DenialKind::Unsatisfied), "matched, and no match");
        heavy_ones.push(&heavy);
        assert_eq!(kind(&heavy_ones, &c), Some(DenialKind::Unsatisfied), "the first one already fails");
        let mut c2 = ctx();
        let resource = format!("apps/{}", "xy".repeat(65));
        c2.resource = Some(&resource);
        let mut one = vec![heavy.as_str(); 1];
        assert!(eval(&one, &c2).is_ok());
        one.push(&heavy);
        assert_eq!(kind(&one, &c2), Some(DenialKind::TooCostly));
    }

    #[test]
    fn a_globs_weight_is_its_longest_question_mark_run_in_words() {
        use crate::glob_weight;
        assert_eq!(glob_weight("apps/web/*"), 0, "a prefix searches nothing");
        assert_eq!(glob_weight("*.pdf"), 0, "a suffix searches nothing");
        assert_eq!(glob_weight(""), 0);
        assert_eq!(glob_weight(&format!("{}*{}", "a?".repeat(500), "?b".repeat(500))), 0, "compared in place");
        assert_eq!(glob_weight("apps/*/x"), 0);
        assert_eq!(glob_weight("apps/*e*/x"), 1, "a segment between stars is searched for");
        assert_eq!(glob_weight("*?a?*"), 1);
        assert_eq!(glob_weight("???*???*"), 1, "leading and trailing ?s are skips");
        assert_eq!(glob_weight(&format!("*{}*", "a?".repeat(32))), 1, "63 characters");
        assert_eq!(glob_weight(&format!("*{}b*", "a?".repeat(32))), 2, "65 characters");
        assert_eq!(glob_weight(&format!("*{}*", "é?".repeat(1000))), 32);
        assert_eq!(glob_weight(&format!("x*{}b*y", "a".repeat(2000))), 1, "a literal reads the text once");
        assert_eq!(glob_weight(&"a*".repeat(16)), 2, "17 segments: one pass more to set up");
        assert_eq!(glob_weight(&format!("{}*", "*a?b".repeat(113))), 8, "114 segments");
    }
}
