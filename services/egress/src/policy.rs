//! Which IP addresses a tenant's outbound request may reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// 0.0.0.0/8, `::`.
    Unspecified,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// RFC 1918, IPv6 unique-local fc00::/7 and site-local fec0::/10.
    Private,
    /// Carrier-grade NAT, 100.64.0.0/10 (some clouds' metadata lives there).
    SharedAddressSpace,
    /// 169.254.0.0/16 (with the cloud metadata address 169.254.169.254), fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 240.0.0.0/4 with the broadcast address 255.255.255.255.
    Reserved,
}

impl Forbidden {
    /// A short name for errors and logs.
    pub fn label(self) -> &'static str {
        match self {
            Forbidden::Unspecified => "unspecified",
            Forbidden::Loopback => "loopback",
            Forbidden::Private => "private",
            Forbidden::SharedAddressSpace => "shared_address_space",
            Forbidden::LinkLocal => "link_local",
            Forbidden::Multicast => "multicast",
            Forbidden::Reserved => "reserved",
        }
    }
}

/// Why `ip` is not a public destination, or `None` if it is one.
pub fn forbidden(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        (0, _) => Forbidden::Unspecified,
        (127, _) => Forbidden::Loopback,
        (10, _) | (172, 16..=31) | (192, 168) => Forbidden::Private,
        (100, 64..=127) => Forbidden::SharedAddressSpace,
        (169, 254) => Forbidden::LinkLocal,
        (224..=239, _) => Forbidden::Multicast,
        (240..=255, _) => Forbidden::Reserved,
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    if ip.is_unspecified() {
        return Some(Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Forbidden::Loopback);
    }
    // An IPv4 address carried in IPv6 reaches that IPv4 address: judge it.
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    match first {
        _ if first & 0xfe00 == 0xfc00 => Some(Forbidden::Private),
        _ if first & 0xffc0 == 0xfec0 => Some(Forbidden::Private),
        _ if first & 0xffc0 == 0xfe80 => Some(Forbidden::LinkLocal),
        _ if first & 0xff00 == 0xff00 => Some(Forbidden::Multicast),
        _ => None,
    }
}

/// The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
/// (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:AABB:CCDD::) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// What the operator allows: public destinations only (the default), or
/// private ones too (`--allow-private-destinations`: development, tests, or
/// a deployment whose tenants' servers are on an internal network).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    pub allow_private: bool,
}

impl DestinationPolicy {
    pub const PUBLIC_ONLY: DestinationPolicy = DestinationPolicy {
        allow_private: false,
    };
    pub const ALLOW_PRIVATE: DestinationPolicy = DestinationPolicy {
        allow_private: true,
    };

    /// Whether a request may go to `ip`.
    pub fn check(self, ip: IpAddr) -> Result<(), Forbidden> {
        match forbidden(ip) {
            Some(why) if !self.allow_private => Err(why),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn why(s: &str) -> Option<Forbidden> {
        forbidden(s.parse().unwrap())
    }

    #[test]
    fn every_non_public_range_is_refused_at_both_ends() {
        use Forbidden::*;
        let table = [
            ("0.0.0.0", Unspecified),
            ("0.255.255.255", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.255", Loopback),
            ("10.0.0.0", Private),
            ("10.255.255.255", Private),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("192.168.0.0", Private),
            ("192.168.255.255", Private),
            ("100.64.0.0", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("100.100.100.200", SharedAddressSpace),
            ("169.254.0.0", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("169.254.255.255", LinkLocal),
            ("224.0.0.0", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.0", Reserved),
            ("255.255.255.255", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::", Private),
            ("fd00:ec2::254", Private),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
            ("fec0::1", Private),
            ("fe80::", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
            ("ff02::1", Multicast),
            ("ff00::", Multicast),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback),
            ("::192.168.1.1", Private),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", LinkLocal),
        ];
        for (ip, want) in table {
            assert_eq!(why(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_next_to_the_refused_ranges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "fbff:ffff::1",
            "fe00::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn the_operator_can_allow_private_destinations() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            DestinationPolicy::PUBLIC_ONLY.check(loopback),
            Err(Forbidden::Loopback)
        );
        assert_eq!(DestinationPolicy::ALLOW_PRIVATE.check(loopback), Ok(()));
        assert_eq!(DestinationPolicy::default(), DestinationPolicy::PUBLIC_ONLY);
    }

    /// An independent statement of the IPv4 rules, by prefix.
    fn v4_by_prefix(ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        let prefixes: [(u32, u32); 10] = [
            (0x0000_0000, 8),  // 0.0.0.0/8
            (0x0a00_0000, 8),  // 10/8
            (0x6440_0000, 10), // 100.64/10
            (0x7f00_0000, 8),  // 127/8
            (0xa9fe_0000, 16), // 169.254/16
            (0xac10_0000, 12), // 172.16/12
            (0xc0a8_0000, 16), // 192.168/16
            (0xe000_0000, 4),  // 224/4
            (0xf000_0000, 4),  // 240/4
            (0xffff_ffff, 32), // broadcast
        ];
        prefixes
            .iter()
            .any(|&(net, len)| n >> (32 - len) == net >> (32 - len))
    }

    proptest! {
        #[test]
        fn ipv4_matches_the_prefix_list(n: u32) {
            let ip = Ipv4Addr::from(n);
            prop_assert_eq!(forbidden(IpAddr::V4(ip)).is_some(), v4_by_prefix(ip));
        }

        /// An IPv4 address reached through IPv6 is judged as itself.
        #[test]
        fn ipv4_mapped_and_nat64_forms_agree_with_ipv4(n: u32) {
            let ip = Ipv4Addr::from(n);
            let v4 = forbidden(IpAddr::V4(ip));
            prop_assert_eq!(forbidden(IpAddr::V6(ip.to_ipv6_mapped())), v4);
            let [a, b, c, d] = ip.octets();
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            prop_assert_eq!(forbidden(IpAddr::V6(nat64)), v4);
        }

        /// Global unicast IPv6 (2000::/3) outside 6to4 and NAT64 is public.
        #[test]
        fn global_unicast_ipv6_is_public(segments: [u16; 8]) {
            let mut s = segments;
            s[0] = 0x2000 | (s[0] & 0x1fff);
            prop_assume!(s[0] != 0x2002);
            prop_assert_eq!(forbidden(IpAddr::V6(Ipv6Addr::from(s))), None);
        }
    }
}
