//! Fuzzes bundle text (`TOKEN[,DISCHARGE…]`) through `Bundle::parse` and the
//! borrowed path (`DecodedBundle::decode` → `view` → `BundleRef`), against the
//! plain reading in `src/bundle_text.rs`. The input is the text (lossy UTF-8).
//!
//! Properties:
//! - `Bundle::parse` accepts exactly what the reference accepts, with the
//!   same macaroons, and equals the owned form of the borrowed view;
//! - a parsed bundle written back in any flavour (`tly_` or bare, standard or
//!   url-safe alphabet, padded or not, per part, spaces around the commas)
//!   parses to the same bundle; `to_text` is a fixpoint;
//! - the prefix keys of a decoded view (hashed from its own bytes when they
//!   are canonical), asked in either order, and `prefix_keys` of the owned
//!   macaroon equal SHA-256 of the canonical encoding (`src/prefix.rs`);
//! - tighter limits never accept what the defaults refuse;
//! - `Debug` output of bundles and views does not depend on the signatures.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_fuzz::bundle_text::{self, FLAVOURS, write_part};
use tally_fuzz::prefix;
use tally_token::{
    Bundle, BundleRef, DecodedBundle, Limits, Macaroon, MacaroonRef, PrefixKeys, Signature, prefix_keys,
};

/// `bundle` written with part i in flavour `pick(i)`, joined by `sep`.
fn write_bundle(bundle: &Bundle, pick: impl Fn(usize) -> usize, sep: &str) -> String {
    std::iter::once(&bundle.root)
        .chain(&bundle.discharges)
        .enumerate()
        .map(|(i, m)| write_part(m, pick(i)))
        .collect::<Vec<_>>()
        .join(sep)
}

fn small_limits() -> Limits {
    Limits { max_token_bytes: 600, max_caveats: 4, max_field_bytes: 64, max_discharges: 2, max_depth: 1 }
}

/// Prefix keys of a view, longest first then shortest first, against the
/// reference hash of the owned caveats (every prefix of short tokens; ends
/// and middle of long ones, to keep an input's cost linear).
fn check_prefix_keys(view: &MacaroonRef<'_>, owned: &Macaroon) {
    let n = owned.caveats().len();
    let ks: Vec<usize> = if n <= 16 { (0..=n).collect() } else { vec![0, 1, n / 2, n - 1, n] };
    let expected: Vec<_> = ks.iter().map(|&k| prefix::key(owned.identifier(), &owned.caveats()[..k])).collect();
    let mut keys = PrefixKeys::of(view);
    assert_eq!(keys.caveats(), n);
    for (&k, want) in ks.iter().zip(&expected).rev() {
        assert_eq!(keys.key(k), *want, "prefix {k} of {n}, longest first");
    }
    let mut keys = PrefixKeys::of(view);
    for (&k, want) in ks.iter().zip(&expected) {
        assert_eq!(keys.key(k), *want, "prefix {k} of {n}, shortest first");
    }
    let owned_view = owned.view();
    assert_eq!(PrefixKeys::of(&owned_view).key(n), expected[expected.len() - 1], "re-encoded");
    let all = prefix_keys(owned.identifier(), owned.caveats());
    assert_eq!(all.len(), n + 1);
    for (&k, want) in ks.iter().zip(&expected) {
        assert_eq!(all[k], *want, "prefix_keys[{k}]");
    }
}

/// `Debug` output does not depend on the signatures: it cannot show them.
fn check_debug(bundle: &Bundle, view: &BundleRef<'_>) {
    let zero = || Signature::from_bytes([0; 32]);
    let blank = |m: &Macaroon| {
        Macaroon::from_parts(m.location().map(str::to_owned), m.identifier().to_vec(), m.caveats().to_vec(), zero())
    };
    let blanked = Bundle { root: blank(&bundle.root), discharges: bundle.discharges.iter().map(blank).collect() };
    assert_eq!(format!("{bundle:?}"), format!("{blanked:?}"), "Debug of a bundle shows its signatures");
    let mut blanked_view = view.clone();
    for m in std::iter::once(&mut blanked_view.root).chain(&mut blanked_view.discharges) {
        m.signature = zero();
    }
    assert_eq!(format!("{view:?}"), format!("{blanked_view:?}"), "Debug of a view shows its signatures");
}

fn check_parsed<'a>(bundle: &'a Bundle, view: &BundleRef<'a>, limits: &Limits, seed: usize) {
    assert_eq!(view.caveats_len(), bundle.root.caveats().len());
    assert_eq!(*view, bundle.view());
    check_prefix_keys(&view.root, &bundle.root);
    for (v, d) in view.discharges.iter().zip(&bundle.discharges) {
        check_prefix_keys(v, d);
    }

    // Written back: Tally's own text is a fixpoint, and every flavour reads back.
    let own = bundle.to_text();
    assert_eq!(Bundle::parse(&own, limits).as_ref(), Ok(bundle));
    assert_eq!(Bundle::parse(&own, limits).map(|b| b.to_text()), Ok(own));
    for flavour in 0..FLAVOURS {
        let written = write_bundle(bundle, |_| flavour, ",");
        assert_eq!(Bundle::parse(&written, limits).as_ref(), Ok(bundle), "flavour {flavour}: {written}");
    }
    let mixed = write_bundle(bundle, |i| seed.wrapping_add(i * 5), " ,\n ");
    if mixed.len() <= limits.max_bundle_bytes() {
        assert_eq!(Bundle::parse(&format!("\t{mixed} "), limits).as_ref(), Ok(bundle), "mixed: {mixed}");
    }
    check_debug(bundle, view);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let limits = Limits::default();

    let parsed = Bundle::parse(&text, &limits);
    let decoded = DecodedBundle::decode(&text, &limits);
    let viewed = decoded.as_ref().map_err(Clone::clone).and_then(|d| d.view(&limits));
    assert_eq!(viewed.as_ref().map(|v| v.root.to_owned()).ok(), parsed.as_ref().map(|b| b.root.clone()).ok());
    assert_eq!(
        viewed.as_ref().map(|v| v.discharges.iter().map(MacaroonRef::to_owned).collect::<Vec<_>>()).ok(),
        parsed.as_ref().map(|b| b.discharges.clone()).ok()
    );
    assert_eq!(parsed.as_ref().ok(), bundle_text::parse(&text, &limits).as_ref(), "reference disagrees");
    if let Ok(d) = &decoded {
        let _ = format!("{d:?}");
    }

    if !text.contains(',') {
        assert_eq!(Macaroon::from_text(&text, &limits).ok(), parsed.as_ref().ok().map(|b| b.root.clone()));
    }

    if let (Ok(bundle), Ok(view)) = (&parsed, &viewed) {
        check_parsed(bundle, view, &limits, data.len());
    }

    // Tighter limits only ever refuse more.
    if let Ok(small) = Bundle::parse(&text, &small_limits()) {
        assert_eq!(parsed.as_ref(), Ok(&small));
    }
});
