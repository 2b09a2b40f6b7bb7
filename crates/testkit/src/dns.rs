//! A real DNS server for tests: hickory-server, authoritative for the zones a test gives it,
//! on a loopback port (UDP and TCP). It runs on the calling test's Tokio runtime and stops
//! when dropped.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::ServerFuture;
use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::store::in_memory::InMemoryAuthority;
use tokio::net::{TcpListener, UdpSocket};

/// Seconds every test record lives in caches.
pub const TTL: u32 = 300;

/// One record of a test zone. Names are absolute, without the final dot.
#[derive(Clone, Debug)]
pub enum Rr {
    Mx(&'static str, u16, &'static str),
    /// `MX 0 .` (RFC 7505).
    NullMx(&'static str),
    Ip(&'static str, IpAddr),
    /// A TXT record (a DKIM key at `<selector>._domainkey.<domain>`), split into strings of
    /// at most 255 octets as DNS requires.
    Txt(&'static str, String),
}

pub struct DnsServer {
    address: SocketAddr,
    _server: ServerFuture<Catalog>,
}

fn name(text: &str) -> Name {
    Name::from_str(&format!("{text}.")).unwrap_or_else(|error| panic!("{text}: {error}"))
}

impl DnsServer {
    /// Serves `records` from one zone per distinct parent of `origins` (e.g. `["test"]`
    /// answers for everything under `.test`, and NXDOMAIN for the names it lacks).
    pub async fn start(origins: &[&str], records: &[Rr]) -> Self {
        let mut catalog = Catalog::new();
        for origin in origins {
            let origin_name = name(origin);
            let mut authority =
                InMemoryAuthority::empty(origin_name.clone(), ZoneType::Primary, false);
            let soa = SOA::new(
                name(&format!("ns.{origin}")),
                name(&format!("hostmaster.{origin}")),
                1,
                3600,
                600,
                86_400,
                60,
            );
            authority.upsert_mut(
                Record::from_rdata(origin_name.clone(), TTL, RData::SOA(soa)),
                1,
            );
            for record in records {
                let (owner, rdata) = match record {
                    Rr::Mx(owner, preference, exchange) => {
                        (owner, RData::MX(MX::new(*preference, name(exchange))))
                    }
                    Rr::NullMx(owner) => (owner, RData::MX(MX::new(0, Name::root()))),
                    Rr::Ip(owner, IpAddr::V4(ip)) => (owner, RData::A(A(*ip))),
                    Rr::Ip(owner, IpAddr::V6(ip)) => (owner, RData::AAAA(AAAA(*ip))),
                    Rr::Txt(owner, text) => {
                        let strings = text
                            .as_bytes()
                            .chunks(255)
                            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                            .collect::<Vec<_>>();
                        (owner, RData::TXT(TXT::new(strings)))
                    }
                };
                let owner = name(owner);
                if origin_name.zone_of(&owner) {
                    authority.upsert_mut(Record::from_rdata(owner, TTL, rdata), 1);
                }
            }
            catalog.upsert(LowerName::new(&origin_name), vec![Arc::new(authority)]);
        }
        let mut server = ServerFuture::new(catalog);
        // UDP takes any free port; TCP must get the same one, which another process may hold.
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|error| panic!("bind UDP: {error}"));
            let address = udp
                .local_addr()
                .unwrap_or_else(|error| panic!("UDP address: {error}"));
            if let Ok(tcp) = TcpListener::bind(address).await {
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5));
                return DnsServer {
                    address,
                    _server: server,
                };
            }
        }
        panic!("no port was free for both UDP and TCP");
    }

    /// `ip:port`, for `--verify-dns-server`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}
