//! The request fields of a check, bounded before anything else is done with
//! them: the verifier's gRPC Check and its Envoy adapter both go through
//! [`RequestFields::parse`], so a request can only hand caveat evaluation
//! text of a known size (the cost of a resource glob grows with the text).

use std::net::IpAddr;

use crate::Error;

/// Default bound on the action, in bytes.
pub const DEFAULT_MAX_ACTION_BYTES: usize = 128;
/// Default bound on the resource, in bytes; see [`FieldLimits`] for why.
pub const DEFAULT_MAX_RESOURCE_BYTES: usize = 1024;
/// Default bound on the service, in bytes.
pub const DEFAULT_MAX_SERVICE_BYTES: usize = 256;
/// Default bound on the subject, in bytes.
pub const DEFAULT_MAX_SUBJECT_BYTES: usize = 256;
/// Default bound on the org, in bytes: the longest org name.
pub const DEFAULT_MAX_ORG_BYTES: usize = MAX_ORG_NAME_BYTES;
/// The longest text of an IP address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
pub const MAX_CLIENT_IP_BYTES: usize = 45;
/// The longest org name.
pub const MAX_ORG_NAME_BYTES: usize = 64;

/// Bounds on the request fields of a check (bytes).
///
/// The resource bound is what keeps a token's holder from buying CPU with
/// it. Every `resource` caveat of a token is matched against the resource,
/// and the glob matcher's work grows with the text: O(|glob| + |text| × W),
/// W = 1 for most globs and at most 32 (see [`crate::glob_match`]); a glob
/// with at most one `*` is compared in place, in steps bounded by its own
/// length. A token holds up to 128 caveats in 16 KiB, all of which may be
/// resource globs that hold but first match at the very end of the
/// resource; the evaluation's glob budget ([`crate::MAX_GLOB_WEIGHT`]) lets
/// one Check scan the resource at most 4 times over, whatever the token.
///
/// The bound is 1024 bytes, which still holds any path or object name in
/// practice. The criterion group "check, worst token" in
/// `verifier/benches/check.rs` measures the worst tokens a holder can build
/// within the limits and budgets, each a whole Check (decoding, the chain,
/// evaluation): at most 46 µs on a 2-vCPU AMD EPYC (four globs of 64-character
/// `?` segments over a resource of `é`, 64 address ranges, 122 more
/// caveats); before the budgets the worst cost 0.45 to 0.7 ms, and up to
/// 28 ms with the backtracking matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    /// Longest action.
    pub action: usize,
    /// Longest resource.
    pub resource: usize,
    /// Longest service.
    pub service: usize,
    /// Longest subject.
    pub subject: usize,
    /// Longest org.
    pub org: usize,
}

impl Default for FieldLimits {
    fn default() -> Self {
        Self {
            action: DEFAULT_MAX_ACTION_BYTES,
            resource: DEFAULT_MAX_RESOURCE_BYTES,
            service: DEFAULT_MAX_SERVICE_BYTES,
            subject: DEFAULT_MAX_SUBJECT_BYTES,
            org: DEFAULT_MAX_ORG_BYTES,
        }
    }
}

/// A check's request fields, bounded and parsed. Empty text means "not
/// supplied" (None).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFields<'a> {
    /// The action requested.
    pub action: Option<&'a str>,
    /// The resource acted on.
    pub resource: Option<&'a str>,
    /// The service doing the check.
    pub service: Option<&'a str>,
    /// The subject the request claims to act for.
    pub subject: Option<&'a str>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The org the calling service belongs to: an org name.
    pub org: Option<&'a str>,
}

impl<'a> RequestFields<'a> {
    /// Checks every field's length against `limits` (the client IP's
    /// against [`MAX_CLIENT_IP_BYTES`]) before anything else is done with
    /// any of them, in the order of the arguments (the first one too long is
    /// the error); then parses the client IP, then checks that the org is an
    /// org name.
    pub fn parse(
        action: &'a str,
        resource: &'a str,
        service: &'a str,
        subject: &'a str,
        client_ip: &'a str,
        org: &'a str,
        limits: &FieldLimits,
    ) -> Result<Self, Error> {
        let action = bounded("action", action, limits.action)?;
        let resource = bounded("resource", resource, limits.resource)?;
        let service = bounded("service", service, limits.service)?;
        let subject = bounded("subject", subject, limits.subject)?;
        let client_ip = bounded("client_ip", client_ip, MAX_CLIENT_IP_BYTES)?;
        let org = bounded("org", org, limits.org)?;
        let client_ip = match client_ip {
            Some(text) => Some(text.parse().map_err(|_| Error::BadClientIp)?),
            None => None,
        };
        if org.is_some_and(|name| !is_org_name(name)) {
            return Err(Error::BadOrg);
        }
        Ok(Self { action, resource, service, subject, client_ip, org })
    }
}

/// `text` if it is within `max` bytes, `None` if it is empty.
fn bounded<'a>(field: &'static str, text: &'a str, max: usize) -> Result<Option<&'a str>, Error> {
    if text.len() > max {
        return Err(Error::FieldTooLong { field, len: text.len(), max });
    }
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// An org name: 1 to 64 of a-z, 0-9, '-', '_', '.' (the authority's rule; it
/// will use this one).
pub fn is_org_name(s: &str) -> bool {
    (1..=MAX_ORG_NAME_BYTES).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(fields: [&'a str; 6]) -> Result<RequestFields<'a>, Error> {
        let [action, resource, service, subject, client_ip, org] = fields;
        RequestFields::parse(action, resource, service, subject, client_ip, org, &FieldLimits::default())
    }

    #[test]
    fn empty_means_not_supplied() {
        assert_eq!(parse([""; 6]), Ok(RequestFields::default()));
    }

    #[test]
    fn fields_within_bounds_pass_through() {
        let fields = parse(["read", "apps/web/x", "web", "alice@example.com", "10.1.2.3", "acme"]).unwrap();
        assert_eq!(
            fields,
            RequestFields {
                action: Some("read"),
                resource: Some("apps/web/x"),
                service: Some("web"),
                subject: Some("alice@example.com"),
                client_ip: Some("10.1.2.3".parse().unwrap()),
                org: Some("acme"),
            }
        );
        // Only lengths are checked, not content: the caveats decide.
        assert_eq!(parse(["a b,c", "", "", "", "", ""]).unwrap().action, Some("a b,c"));
    }

    #[test]
    fn each_bound_is_inclusive_and_counts_bytes() {
        let limits = FieldLimits::default();
        let bounds = [
            (0, "action", limits.action),
            (1, "resource", limits.resource),
            (2, "service", limits.service),
            (3, "subject", limits.subject),
            (5, "org", limits.org),
        ];
        for (index, field, max) in bounds {
            let at_max = "a".repeat(max);
            let mut fields = [""; 6];
            fields[index] = &at_max;
            assert!(parse(fields).is_ok(), "{field} at its bound");
            let over = format!("{at_max}a");
            fields[index] = &over;
            assert_eq!(parse(fields), Err(Error::FieldTooLong { field, len: max + 1, max }));
        }
        // Bytes, not characters: 65 `é` are 130 bytes.
        let wide = "é".repeat(65);
        assert_eq!(
            parse([&wide, "", "", "", "", ""]),
            Err(Error::FieldTooLong { field: "action", len: 130, max: DEFAULT_MAX_ACTION_BYTES })
        );
    }

    #[test]
    fn client_ip_must_be_an_address() {
        for (text, ip) in
            [("10.1.2.3", "10.1.2.3"), ("2001:db8::1", "2001:db8::1"), ("::ffff:10.1.2.3", "::ffff:10.1.2.3")]
        {
            assert_eq!(parse(["", "", "", "", text, ""]).unwrap().client_ip, Some(ip.parse().unwrap()));
        }
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
        assert_eq!(longest.len(), MAX_CLIENT_IP_BYTES);
        assert!(parse(["", "", "", "", longest, ""]).is_ok());
        for bad in ["10.0.0", "10.0.0.256", "::g", " 10.0.0.1", "10.0.0.1/8", "fe80::1%eth0", "localhost"] {
            assert_eq!(parse(["", "", "", "", bad, ""]), Err(Error::BadClientIp), "{bad}");
        }
        let long = format!("{longest}0");
        assert_eq!(
            parse(["", "", "", "", &long, ""]),
            Err(Error::FieldTooLong { field: "client_ip", len: 46, max: MAX_CLIENT_IP_BYTES })
        );
    }

    #[test]
    fn org_must_be_an_org_name() {
        for good in ["acme", "a", "a-b_c.d", "0", &"z".repeat(64)] {
            assert!(is_org_name(good), "{good}");
            assert_eq!(parse(["", "", "", "", "", good]).unwrap().org, Some(good));
        }
        for bad in ["Acme", "a b", "é", "a/b", "a,b", "a\n"] {
            assert!(!is_org_name(bad), "{bad}");
            assert_eq!(parse(["", "", "", "", "", bad]), Err(Error::BadOrg), "{bad}");
        }
        assert!(!is_org_name(""));
        assert!(!is_org_name(&"a".repeat(65)));
        // A wider bound than the rule still accepts only org names.
        let limits = FieldLimits { org: 100, ..FieldLimits::default() };
        let long = "a".repeat(65);
        assert_eq!(RequestFields::parse("", "", "", "", "", &long, &limits), Err(Error::BadOrg));
    }

    #[test]
    fn lengths_come_first_and_errors_do_not_quote_values() {
        // Too long and malformed: the length is what is reported.
        let org = "SECRET".repeat(20);
        assert_eq!(
            parse(["", "", "", "", "", &org]),
            Err(Error::FieldTooLong { field: "org", len: 120, max: MAX_ORG_NAME_BYTES })
        );
        let ip = "SECRET".repeat(10);
        assert!(matches!(parse(["", "", "", "", &ip, ""]), Err(Error::FieldTooLong { field: "client_ip", .. })));
        // The first field out of bounds, in argument order, and every length
        // before any parsing: a long org is reported over a bad address.
        let long = "SECRET".repeat(300);
        assert!(matches!(parse([&long, &long, "", "", "", ""]), Err(Error::FieldTooLong { field: "action", .. })));
        assert!(matches!(parse(["", "", "", "", "10.0.0", &long]), Err(Error::FieldTooLong { field: "org", .. })));
        assert_eq!(parse(["", "", "", "", "10.0.0", "Bad"]), Err(Error::BadClientIp));
        for fields in [[&long[..], "", "", "", "", ""], ["", "", "", "", "SECRET", ""], ["", "", "", "", "", "SECRET"]]
        {
            let message = parse(fields).unwrap_err().to_string();
            assert!(!message.contains("SECRET"), "{message}");
        }
        assert_eq!(
            parse([&long, "", "", "", "", ""]).unwrap_err().to_string(),
            "request field action is 1800 bytes, at most 128 allowed"
        );
        assert_eq!(
            parse(["", "", "", "", "x", ""]).unwrap_err().to_string(),
            "request field client_ip is not an IP address"
        );
        assert_eq!(
            parse(["", "", "", "", "", "X"]).unwrap_err().to_string(),
            "request field org is not an org name (1 to 64 of a-z, 0-9, '-', '_', '.')"
        );
    }
}
