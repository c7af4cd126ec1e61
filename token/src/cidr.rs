//! Address ranges for `client-ip in CIDR,...` caveats.

use std::net::IpAddr;
use std::str::FromStr;

/// An address range: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = &'static str;

    /// `ADDR/LEN` or a bare address (a single host). A range inside the
    /// IPv4-mapped block (`::ffff:a.b.c.d/96` or longer) is the IPv4 range it
    /// carries, as a mapped client address is the IPv4 address it carries.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| "invalid IP address")?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| "invalid prefix length")?
            }
            Some(_) => return Err("invalid prefix length"),
        };
        if prefix > max {
            return Err("prefix length too long");
        }
        match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Ok(Self { addr: IpAddr::V4(v4), prefix: prefix - 96 }),
                None => Ok(Self { addr, prefix }),
            },
            _ => Ok(Self { addr, prefix }),
        }
    }
}

impl Cidr {
    /// True when `ip` lies in this range. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are compared as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked_eq(u128::from(net.to_bits()), u128::from(ip.to_bits()), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked_eq(net.to_bits(), ip.to_bits(), 128, self.prefix),
            _ => false,
        }
    }
}

fn masked_eq(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let shift = width - u32::from(prefix);
    if shift >= 128 {
        return true;
    }
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contains() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.9.9")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!(!"0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("::1")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001:db8::1")));
        assert!("2001:db8::/32".parse::<Cidr>().unwrap().contains(ip("2001:db8:ffff::1")));
        let host: Cidr = "192.168.1.7".parse().unwrap();
        assert!(host.contains(ip("192.168.1.7")));
        assert!(!host.contains(ip("192.168.1.8")));
    }

    #[test]
    fn ipv4_mapped_ranges_are_ipv4_ranges() {
        // Found by fuzzing: a mapped range never contained its own address,
        // because the client side is compared as IPv4 and the range was not.
        let host: Cidr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(host.contains(ip("::ffff:10.1.2.3")));
        assert!(host.contains(ip("10.1.2.3")));
        assert!(!host.contains(ip("10.1.2.4")));
        assert_eq!("::ffff:10.0.0.0/104".parse::<Cidr>(), "10.0.0.0/8".parse::<Cidr>());
        assert!("::ffff:0:0/96".parse::<Cidr>().unwrap().contains(ip("192.0.2.1")));
        // Wider than the mapped block: still an IPv6 range, which IPv4 clients are never in.
        assert!(!"::/0".parse::<Cidr>().unwrap().contains(ip("10.1.2.3")));
        assert!(!"::ffff:0:0/95".parse::<Cidr>().unwrap().contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn malformed() {
        for bad in ["", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "x/8", "::/129", "1.2.3.4/0008"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
