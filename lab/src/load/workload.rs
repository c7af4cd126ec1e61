//! Request bodies, framed and ready to send, for each [`Workload`]: built
//! before the timed part where the workload allows, so the generator's CPU
//! goes to the transport, not to minting test data.

use anyhow::Context;
use bytes::Bytes;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use tally_proto::v1 as pb;
use tally_token::{Limits, Macaroon};

use super::client::frame;
use super::spec::Workload;

/// The next request body, or `None` when the workload is used up.
pub(crate) trait Producer {
    fn next(&mut self) -> Option<Bytes>;
}

/// A framed Check request.
pub(crate) fn check_body(bundle: &str, action: &str, resource: &str) -> Bytes {
    let req = pb::CheckRequest {
        bundle: bundle.into(),
        action: action.into(),
        resource: resource.into(),
        ..Default::default()
    };
    frame(&req.encode_to_vec())
}

/// The producer of `workload`.
pub(crate) fn producer(workload: &Workload, seed: u64) -> anyhow::Result<Box<dyn Producer>> {
    Ok(match workload {
        Workload::Check { token, action, resource } => Box::new(Repeat(check_body(token, action, resource))),
        Workload::Message { hex } => Box::new(Repeat(frame(&hex::decode(hex).context("message hex")?))),
        Workload::Descendants { tokens, caveats, tag, pool } => {
            let bases =
                tokens.iter().map(|t| Macaroon::from_text(t, &Limits::default())).collect::<Result<Vec<_>, _>>();
            let bases = bases.context("descendant base token")?;
            anyhow::ensure!(!bases.is_empty(), "no base token for descendants");
            let mut make = Descendants { bases, caveats: *caveats, tag: tag.clone(), next: 0 };
            if *pool > 0 {
                let bodies: Vec<Bytes> = (0..*pool).map(|_| make.make()).collect();
                Box::new(Pool { bodies, next: 0 })
            } else {
                Box::new(make)
            }
        }
        Workload::Tokens { file, skip } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let bodies = text.lines().skip(*skip).map(|t| check_body(t, "read", "")).collect();
            Box::new(Pool { bodies, next: 0 })
        }
        Workload::Mix { file, exponent } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let tokens: Vec<String> = text.lines().map(str::to_owned).collect();
            anyhow::ensure!(!tokens.is_empty(), "no tokens in {}", file.display());
            Box::new(Mix::new(tokens, *exponent, seed)?)
        }
        Workload::Revoke { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            Box::new(Pool { bodies: text.lines().map(revoke_body).collect(), next: 0 })
        }
    })
}

struct Repeat(Bytes);

impl Producer for Repeat {
    fn next(&mut self) -> Option<Bytes> {
        Some(self.0.clone())
    }
}

struct Pool {
    bodies: Vec<Bytes>,
    next: usize,
}

impl Producer for Pool {
    fn next(&mut self) -> Option<Bytes> {
        let body = self.bodies.get(self.next)?.clone();
        self.next += 1;
        Some(body)
    }
}

/// Attenuations of some tokens (in turn), each with caveats no other request has.
struct Descendants {
    bases: Vec<Macaroon>,
    caveats: usize,
    tag: String,
    next: u64,
}

impl Descendants {
    fn make(&mut self) -> Bytes {
        let i = self.next;
        self.next += 1;
        let mut m = self.bases[i as usize % self.bases.len()].clone();
        m.add_first_party(format!("resource = {}/{i}/*", self.tag));
        if self.caveats >= 2 {
            m.add_first_party("action in read");
        }
        check_body(&m.to_text(), "read", &format!("{}/{i}/doc", self.tag))
    }
}

impl Producer for Descendants {
    fn next(&mut self) -> Option<Bytes> {
        Some(self.make())
    }
}

/// Shares of the mix's draws.
const MIX_ROOT: f64 = 0.70;
const MIX_FIXED: f64 = 0.20;
/// The resource every mix request names (fresh attenuations name their own).
const MIX_RESOURCE: &str = "mix/r/doc";

/// Zipf over ranks 0..n: rank k drawn with weight 1/(k+1)^s.
#[derive(Debug, Clone, Copy)]
struct Ranks(Zipf<f64>);

impl Ranks {
    fn new(n: usize, exponent: f64) -> anyhow::Result<Self> {
        Ok(Self(Zipf::new(n as f64, exponent).with_context(|| format!("Zipf over {n} with exponent {exponent}"))?))
    }

    /// `Zipf` draws 1..=n (as a float holding an integer).
    fn sample(&self, rng: &mut impl Rng) -> usize {
        self.0.sample(rng) as usize - 1
    }
}

/// Zipf over tokens and their attenuations.
struct Mix {
    tokens: Vec<String>,
    roots: Vec<Bytes>,
    /// Two fixed attenuations per token, made the first time they are drawn.
    fixed: Vec<[Option<Bytes>; 2]>,
    ranks: Ranks,
    rng: SmallRng,
    /// Fresh attenuations made so far; with the seed, names them uniquely across runs.
    fresh: u64,
    seed: u64,
}

impl Mix {
    fn new(tokens: Vec<String>, exponent: f64, seed: u64) -> anyhow::Result<Self> {
        let roots = tokens.iter().map(|t| check_body(t, "read", MIX_RESOURCE)).collect();
        let fixed = vec![[None, None]; tokens.len()];
        let ranks = Ranks::new(tokens.len(), exponent)?;
        Ok(Self { tokens, roots, fixed, ranks, rng: SmallRng::seed_from_u64(seed), fresh: 0, seed })
    }

    fn attenuate(&self, k: usize, caveats: &[&str]) -> Macaroon {
        let mut m = Macaroon::from_text(&self.tokens[k], &Limits::default()).expect("minted tokens parse");
        caveats.iter().for_each(|c| m.add_first_party(*c));
        m
    }
}

impl Producer for Mix {
    fn next(&mut self) -> Option<Bytes> {
        let k = self.ranks.sample(&mut self.rng);
        let u: f64 = self.rng.random();
        if u < MIX_ROOT {
            return Some(self.roots[k].clone());
        }
        if u < MIX_ROOT + MIX_FIXED {
            let which = self.rng.random_range(0..2);
            if self.fixed[k][which].is_none() {
                let caveats: &[&str] =
                    if which == 0 { &["resource = mix/*"] } else { &["action in read", "resource = mix/r/*"] };
                let body = check_body(&self.attenuate(k, caveats).to_text(), "read", MIX_RESOURCE);
                self.fixed[k][which] = Some(body);
            }
            return self.fixed[k][which].clone();
        }
        self.fresh += 1;
        let n = format!("{}-{}", self.seed, self.fresh);
        let m = self.attenuate(k, &["action in read", &format!("resource = mix/{n}/*")]);
        Some(check_body(&m.to_text(), "read", &format!("mix/{n}/doc")))
    }
}

/// A framed Revoke of a family (hex id).
fn revoke_body(family: &str) -> Bytes {
    let target = Some(pb::revoke_request::Target::Family(family.to_owned()));
    frame(&pb::RevokeRequest { target, reason: "bench".into() }.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks() {
        let ranks = Ranks::new(1000, 1.0).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[ranks.sample(&mut rng)] += 1;
        }
        // Rank 0 has weight 1/H(1000) ≈ 13 %; rank 9 a tenth of that.
        assert!((12_000..15_000).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > 5 * counts[9] && counts[9] > counts[99]);
    }
}
