//! Which addresses mailroom may connect to on a user's behalf: the one guard every outbound
//! connection a tenant can steer (the verifier's SMTP probe, and later webhooks and mail
//! transports) goes through, so that nobody reaches inward through it.
//!
//! An address is public unless it falls in an entry of IANA's special-purpose address
//! registries (IPv4 and IPv6, every entry, including those the registries call globally
//! reachable: none is a place a mail host or a webhook belongs), or in multicast. IPv6 is
//! public only inside global unicast (`2000::/3`); an IPv4-mapped address is judged by the
//! IPv4 address it maps.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IANA IPv4 Special-Purpose Address Registry, and multicast.
const IPV4_SPECIAL: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),      // "this network" (and 0.0.0.0/32)
    (Ipv4Addr::new(10, 0, 0, 0), 8),     // private use
    (Ipv4Addr::new(100, 64, 0, 0), 10),  // shared address space (carrier-grade NAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),    // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16), // link local
    (Ipv4Addr::new(172, 16, 0, 0), 12),  // private use
    (Ipv4Addr::new(192, 0, 0, 0), 24),   // IETF protocol assignments (DS-Lite, NAT64 discovery, …)
    (Ipv4Addr::new(192, 0, 2, 0), 24),   // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 31, 196, 0), 24), // AS112-v4
    (Ipv4Addr::new(192, 52, 193, 0), 24), // AMT
    (Ipv4Addr::new(192, 88, 99, 0), 24), // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16), // private use
    (Ipv4Addr::new(192, 175, 48, 0), 24), // direct delegation AS112 service
    (Ipv4Addr::new(198, 18, 0, 0), 15),  // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24), // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),    // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),    // reserved (and 255.255.255.255, limited broadcast)
];

/// IANA IPv6 Special-Purpose Address Registry entries inside global unicast; everything
/// outside `2000::/3` (loopback, unspecified, IPv4-mapped and -translated, NAT64 prefixes,
/// discard-only, segment routing, unique local, link local, site local, multicast) is refused
/// by that bound alone.
const IPV6_SPECIAL_IN_GLOBAL_UNICAST: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments (Teredo, benchmarking, ORCHID, AMT, AS112, …)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4 (embeds any IPv4 address)
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48), // direct delegation AS112 service
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
];

/// Whether `ip` is an address on the public internet, where a tenant may point mailroom.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !IPV4_SPECIAL
            .iter()
            .any(|(network, len)| within(v4.to_bits().into(), network.to_bits().into(), 32, *len)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let bits = v6.to_bits();
            within(bits, 0x2000 << 112, 128, 3)
                && !IPV6_SPECIAL_IN_GLOBAL_UNICAST
                    .iter()
                    .any(|(network, len)| within(bits, network.to_bits(), 128, *len))
        }
    }
}

/// Whether the `width`-bit address `bits` lies in `network/len`.
fn within(bits: u128, network: u128, width: u32, len: u8) -> bool {
    let host_bits = width - u32::from(len);
    bits >> host_bits == network >> host_bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_purpose_entry_is_refused() {
        for address in [
            // IPv4: the registry's entries, first and last addresses where they matter.
            "0.0.0.0",
            "0.255.255.255",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.9",
            "192.0.0.170",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.1.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6.
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::ffff:0:10.0.0.1",
            "::ffff:0:8.8.8.8",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "100::1",
            "100:0:0:1::1",
            "2001::1",
            "2001:1::1",
            "2001:2::1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:10::1",
            "2001:20::1",
            "2001:30::1",
            "2001:db8::1",
            "2002:a00:1::1",
            "2620:4f:8000::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "142.250.0.27",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2a00:1450:4001::1b",
            "2001:200::1",
            "2600::1",
            "2620:4f:8001::1",
            "::ffff:8.8.4.4",
        ] {
            assert!(is_public(address.parse().unwrap()), "{address}");
        }
    }
}
