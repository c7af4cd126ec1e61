//! Fuzzes `RequestFields::parse`, the bounds on a check's request fields.
//!
//! The input is read as lossy UTF-8 and split at its first five newlines
//! into the six fields (action, resource, service, subject, client IP, org;
//! missing ones empty), each parsed under the default limits and under
//! tight ones. Properties:
//! - nothing panics;
//! - it accepts exactly what a plain reading of the rules accepts: the first
//!   field, in argument order, longer than its bound is `FieldTooLong` with
//!   that field, length and bound; then a client IP that std does not parse
//!   is `BadClientIp`; then an org of other than 1 to 64 of a-z, 0-9, `-`,
//!   `_`, `.` is `BadOrg`;
//! - what it accepts round-trips: each field is `None` when empty and the
//!   very same text otherwise, the client IP the address std reads;
//! - error messages are fixed texts with the field, length and bound, never
//!   a value;
//! - what the tight limits accept, the default limits accept too.

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use tally_token::{Error, FieldLimits, MAX_CLIENT_IP_BYTES, RequestFields};

const NAMES: [&str; 6] = ["action", "resource", "service", "subject", "client_ip", "org"];

/// Limits small enough that fuzzed inputs cross them all the time.
const TIGHT: FieldLimits = FieldLimits { action: 3, resource: 9, service: 2, subject: 5, org: 4 };

/// The org rule written out character by character.
fn org_name(s: &str) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.';
    !s.is_empty() && s.chars().count() <= 64 && s.chars().all(allowed)
}

/// What `parse` must answer, from the rules.
fn expected(fields: &[&str; 6], limits: &FieldLimits) -> Result<(), Error> {
    let maxima = [limits.action, limits.resource, limits.service, limits.subject, MAX_CLIENT_IP_BYTES, limits.org];
    for ((field, text), max) in NAMES.into_iter().zip(fields).zip(maxima) {
        if text.len() > max {
            return Err(Error::FieldTooLong { field, len: text.len(), max });
        }
    }
    if !fields[4].is_empty() && fields[4].parse::<IpAddr>().is_err() {
        return Err(Error::BadClientIp);
    }
    if !fields[5].is_empty() && !org_name(fields[5]) {
        return Err(Error::BadOrg);
    }
    Ok(())
}

/// Parses under `limits` and checks everything; returns whether it accepted.
fn check(fields: &[&str; 6], limits: &FieldLimits) -> bool {
    let [action, resource, service, subject, client_ip, org] = *fields;
    let parsed = RequestFields::parse(action, resource, service, subject, client_ip, org, limits);
    assert_eq!(parsed.clone().map(drop), expected(fields, limits), "{fields:?} under {limits:?}");
    match parsed {
        Ok(got) => {
            let same = |got: Option<&str>, text: &str| match got {
                None => text.is_empty(),
                Some(g) => !text.is_empty() && std::ptr::eq(g, text),
            };
            assert!(same(got.action, action) && same(got.resource, resource) && same(got.service, service));
            assert!(same(got.subject, subject) && same(got.org, org));
            assert_eq!(got.client_ip, Some(client_ip).filter(|t| !t.is_empty()).map(|t| t.parse().unwrap()));
            if let Some(ip) = got.client_ip {
                assert_eq!(ip.to_string().parse::<IpAddr>(), Ok(ip));
            }
            true
        }
        Err(e) => {
            let message = e.to_string();
            let fixed = match e {
                Error::FieldTooLong { field, len, max } => {
                    format!("request field {field} is {len} bytes, at most {max} allowed")
                }
                Error::BadClientIp => "request field client_ip is not an IP address".to_owned(),
                Error::BadOrg => "request field org is not an org name (1 to 64 of a-z, 0-9, '-', '_', '.')".to_owned(),
                other => panic!("unexpected error {other:?}"),
            };
            assert_eq!(message, fixed);
            false
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let mut parts = input.splitn(6, '\n');
    let fields: [&str; 6] = std::array::from_fn(|_| parts.next().unwrap_or(""));
    let tight = check(&fields, &TIGHT);
    let default = check(&fields, &FieldLimits::default());
    assert!(!tight || default, "the tight limits accepted what the default ones refused: {fields:?}");
});
