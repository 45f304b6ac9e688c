//! Client addresses: which proxies are believed about them, who the client is behind them, and
//! the bucket an address is counted in by throttles and connection caps.
//!
//! An IPv6 client gets a whole /64 from any provider (often far more), so counting single
//! IPv6 addresses would give one client 2^64 fresh budgets; every per-address rule counts the
//! /64 instead. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports
//! for an IPv4 peer) count as the IPv4 address they carry.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The proxies whose `X-Forwarded-For` is believed. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// `nets` from `HEFFL_TRUSTED_PROXIES`; `loopback` from the older yes/no
    /// `HEFFL_TRUST_FORWARDED_FOR`, which meant "a proxy on this machine sets it".
    pub fn new(nets: &[IpNet], loopback: bool) -> TrustedProxies {
        let mut all: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
        if loopback {
            all.extend(
                ["127.0.0.0/8", "::1/128"]
                    .iter()
                    .filter_map(|n| n.parse::<IpNet>().ok()),
            );
        }
        TrustedProxies(all.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client behind `peer`: the peer itself unless it is a trusted proxy; then the
    /// right-most `X-Forwarded-For` entry that is not a trusted proxy (entries to its left are
    /// whatever the client claimed). `forwarded_for` holds the header's values in order. When
    /// every entry is a trusted proxy, the left-most is the client; when an entry cannot be
    /// read, the nearest hop that could be is.
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.contains(peer) {
            return canonical(peer);
        }
        let mut nearest = canonical(peer);
        for value in forwarded_for.rev() {
            for entry in value.rsplit(',') {
                let Some(hop) = parse_entry(entry) else {
                    return nearest;
                };
                if !self.contains(hop) {
                    return hop;
                }
                nearest = hop;
            }
        }
        nearest
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`[::1]:80`, `1.2.3.4:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(canonical)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a webhook may be sent to `address`: not loopback, private, link-local, unspecified,
/// nor any other range that reaches this machine or its network rather than the internet
/// (shared CGNAT space, multicast, broadcast, documentation, benchmarking, 6to4/NAT64 forms of
/// those), so that a workspace cannot make the server call its own neighbours.
pub fn is_public(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded_v4 = |octets: [u8; 4]| is_public(IpAddr::from(octets));
            let [s0, s1, ..] = segments;
            if s0 == 0x2002 {
                // 6to4 carries an IPv4 address in bits 16..48.
                let [a, b] = s1.to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                return embedded_v4([a, b, c, d]);
            }
            if s0 == 0x64 && s1 == 0xff9b {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return embedded_v4([a, b, c, d]);
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || (s0 & 0xffc0) == 0xfec0
                || (s0 == 0x2001 && s1 == 0x0db8)
                || segments[..6] == [0, 0, 0, 0, 0, 0])
        }
    }
}

/// What per-address rules count: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressBucket(IpAddr);

impl AddressBucket {
    pub fn of(address: IpAddr) -> AddressBucket {
        match canonical(address) {
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                AddressBucket(IpAddr::V6(Ipv6Addr::from(network)))
            }
            v4 => AddressBucket(v4),
        }
    }
}

impl fmt::Display for AddressBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A CIDR block or a single address (`10.0.0.1` → `10.0.0.1/32`). Host bits set under the
/// prefix (`10.0.0.1/24`) are refused rather than silently cleared: the writer meant something
/// and should say which.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(canonical(address)));
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("'{text}' is neither an IP address nor a CIDR block"))?;
    if net.trunc() != net {
        return Err(format!(
            "'{text}' has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        let nets: Vec<IpNet> = nets.iter().map(|n| parse_net(n).expect("a net")).collect();
        TrustedProxies::new(&nets, false)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let client = trusted.client_address(ip("203.0.113.9"), ["1.1.1.1"].into_iter());
        assert_eq!(client, ip("203.0.113.9"));
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("127.0.0.1"), ["1.1.1.1"].into_iter()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.7"]);
        // The client claimed 6.6.6.6; our edge proxy 192.0.2.7 saw 198.51.100.1.
        let header = ["6.6.6.6, 198.51.100.1", "192.0.2.7"];
        assert_eq!(
            trusted.client_address(ip("10.1.1.1"), header.into_iter()),
            ip("198.51.100.1")
        );
        // Every hop trusted: the left-most is the client.
        assert_eq!(
            trusted.client_address(ip("10.1.1.1"), ["10.2.2.2, 192.0.2.7"].into_iter()),
            ip("10.2.2.2")
        );
        // No header: the proxy itself.
        assert_eq!(
            trusted.client_address(ip("10.1.1.1"), std::iter::empty()),
            ip("10.1.1.1")
        );
        // Garbage stops the walk at the nearest hop that could be read.
        assert_eq!(
            trusted.client_address(ip("10.1.1.1"), ["nonsense, 192.0.2.7"].into_iter()),
            ip("192.0.2.7")
        );
        assert_eq!(
            trusted.client_address(ip("10.1.1.1"), ["[2001:db8::1]:443"].into_iter()),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn the_old_switch_trusts_the_loopback_proxy_only() {
        let trusted = TrustedProxies::new(&[], true);
        assert!(trusted.contains(ip("127.0.0.1")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
        assert!(!trusted.contains(ip("10.0.0.1")));
    }

    #[test]
    fn nets_are_normalised_and_host_bits_refused() {
        assert_eq!(
            parse_net("10.0.0.1").map(|n| n.to_string()),
            Ok("10.0.0.1/32".into())
        );
        assert_eq!(
            parse_net(" 2001:db8::/32 ").map(|n| n.to_string()),
            Ok("2001:db8::/32".into())
        );
        assert_eq!(
            parse_net("::1").map(|n| n.to_string()),
            Ok("::1/128".into())
        );
        assert!(parse_net("10.0.0.1/24").is_err_and(|e| e.contains("10.0.0.0/24")));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }

    #[test]
    fn buckets() {
        assert_eq!(AddressBucket::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(
            AddressBucket::of(ip("2001:db8:1:2:3:4:5:6")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            AddressBucket::of(ip("::ffff:192.0.2.1")),
            AddressBucket::of(ip("192.0.2.1"))
        );
    }

    proptest! {
        #[test]
        fn one_slash_64_is_one_bucket(network in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
            let at = |host: u64| IpAddr::V6(Ipv6Addr::from((u128::from(network) << 64) | u128::from(host)));
            prop_assume!(!matches!(at(a), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()));
            prop_assume!(!matches!(at(b), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()));
            prop_assert_eq!(AddressBucket::of(at(a)), AddressBucket::of(at(b)));
        }

        #[test]
        fn distinct_ipv4_addresses_are_distinct_buckets(a in any::<u32>(), b in any::<u32>()) {
            let v4 = |n: u32| IpAddr::V4(n.into());
            prop_assert_eq!(AddressBucket::of(v4(a)) == AddressBucket::of(v4(b)), a == b);
        }
    }

    #[test]
    fn only_internet_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2002:7f00:1::",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            let address: IpAddr = private.parse().expect("an address");
            assert!(!is_public(address), "{private} must not be public");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::",
        ] {
            let address: IpAddr = public.parse().expect("an address");
            assert!(is_public(address), "{public} is public");
        }
    }
}
