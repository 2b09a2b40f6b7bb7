//! Which address a request really came from.
//!
//! Rate limits, lockouts and audit entries key on the client's IP, so a client must not be able
//! to choose it. `X-Forwarded-For` is believed only as far as it was written by proxies the
//! operator trusts: the list is walked from the right (the hop nearest to us) past trusted
//! proxies, and the first address that is not one of them is the client.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that arrived from `peer` carrying the given
    /// `X-Forwarded-For` header values (in the order they appeared).
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.into_iter().rev() {
            // An unparseable entry ends the walk: nothing left of it can be believed, and the
            // nearest hop we could trust is the best answer we have.
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// Proxies write either a bare address or, rarely, one with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(hop) {
        return Some(ip.to_canonical());
    }
    std::net::SocketAddr::from_str(hop)
        .ok()
        .map(|addr| addr.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), ["1.2.3.4"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("127.0.0.1"), ["1.2.3.4"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn walks_right_to_left_past_trusted_hops() {
        let trusted = proxies(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client forged the left-most entry; the proxies appended the rest.
        let header = "6.6.6.6, 198.51.100.7, 10.1.2.3";
        assert_eq!(
            trusted.client_ip(ip("192.168.1.1"), [header]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn multiple_headers_are_one_list_in_order() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), ["198.51.100.7", "10.0.0.2"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn all_trusted_yields_the_left_most_hop() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), ["10.0.0.3, 10.0.0.2"]),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_nearest_trusted_hop() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), ["1.2.3.4, not-an-ip, 10.0.0.2"]),
            ip("10.0.0.2")
        );
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), [""]), ip("10.0.0.1"));
    }

    #[test]
    fn ports_and_mapped_addresses_are_understood() {
        let trusted = proxies(&["127.0.0.0/8"]);
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), ["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), ["198.51.100.7:5555"]),
            ip("198.51.100.7")
        );
    }
}
