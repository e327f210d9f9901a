//! Which address a request comes from, and whether a source accepts requests from it.
//!
//! A source's `allow_ips` is a list of networks (`10.0.0.0/8`, `2001:db8::/32`) or single
//! addresses (`203.0.113.7`). The address checked is the TCP peer's, unless the peer is one of
//! `server.trusted_proxies`: only then is `X-Forwarded-For` believed, and only as far as trusted
//! proxies wrote it. Each proxy appends the address it received the request from, so the list is
//! walked from the right, skipping trusted proxies; the first address that is not a trusted
//! proxy is the client. Everything to the left of it was written by the client itself and could
//! be anything (a sender outside the allowlist would simply claim an allowed address).
//!
//! IPv4 addresses seen through a dual-stack socket (`::ffff:10.1.2.3`) are compared as IPv4.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The header proxies use to pass on the address they received a request from.
pub const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// A set of networks, parsed once from configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRanges(Vec<IpNet>);

impl IpRanges {
    /// Parses a list of CIDR networks or single addresses; on error, the index of the first bad
    /// entry and why it is bad.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<IpRanges, Vec<(usize, String)>> {
        let mut networks = Vec::with_capacity(entries.len());
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse_network(entry.as_ref()) {
                Ok(network) => networks.push(network),
                Err(reason) => errors.push((index, reason)),
            }
        }
        if errors.is_empty() {
            Ok(IpRanges(networks))
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }
}

fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if text.contains('/') {
        let network: IpNet = text.parse().map_err(|_| {
            format!("{text:?} is not a network: write an address with a prefix length, as in 10.0.0.0/8 or 2001:db8::/32")
        })?;
        if network.trunc() != network {
            return Err(format!(
                "{text:?} has host bits set; the network is {}",
                network.trunc()
            ));
        }
        Ok(network)
    } else {
        text.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{text:?} is not an IP address or a network such as 10.0.0.0/8"))
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` entry that is not a trusted proxy. `None` when it cannot be known (no peer
/// address, or a trusted proxy passed an entry that is not an address), which an allowlist
/// refuses.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted_proxies: &IpRanges,
) -> Option<IpAddr> {
    let mut client = peer?.ip().to_canonical();
    if !trusted_proxies.contains(client) {
        return Some(client);
    }
    // Several X-Forwarded-For headers form one list, in order.
    let entries: Vec<&str> = headers
        .get_all(FORWARDED_FOR_HEADER)
        .map(|value| value.to_str().ok())
        .collect::<Option<Vec<&str>>>()?
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.into_iter().rev() {
        client = parse_forwarded(entry)?;
        if !trusted_proxies.contains(client) {
            break;
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:4711`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn ranges(entries: &[&str]) -> IpRanges {
        IpRanges::parse(entries).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip(text), 40_000))
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static(FORWARDED_FOR_HEADER),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn networks_and_single_addresses_of_both_families_match() {
        let allowed = ranges(&["10.0.0.0/8", "2001:db8::/32", "203.0.113.7"]);
        assert!(allowed.contains(ip("10.200.0.1")));
        assert!(allowed.contains(ip("2001:db8:1::5")));
        assert!(allowed.contains(ip("203.0.113.7")));
        assert!(allowed.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        assert!(!allowed.contains(ip("203.0.113.8")));
        assert!(!allowed.contains(ip("11.0.0.1")));
        assert!(!allowed.contains(ip("2001:db9::1")));
    }

    #[test]
    fn bad_entries_are_reported_by_index() {
        let errors =
            IpRanges::parse(&["10.0.0.0/8", "10.0.0.0/33", "nope", "10.0.0.1/8"]).unwrap_err();
        let indexes: Vec<usize> = errors.iter().map(|(index, _)| *index).collect();
        assert_eq!(indexes, vec![1, 2, 3]);
        assert!(errors[2].1.contains("10.0.0.0/8"), "{}", errors[2].1);
    }

    #[test]
    fn the_peer_is_the_client_when_it_is_not_a_trusted_proxy() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(
            client_ip(peer("198.51.100.1"), &headers, &trusted),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(peer("198.51.100.1"), &headers, &IpRanges::default()),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_forwarded_address_is_the_client() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let client = |values: &[&str]| client_ip(peer("10.0.0.1"), &forwarded(values), &trusted);
        assert_eq!(client(&["203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(
            client(&["192.0.2.1, 203.0.113.7, 10.0.0.2"]),
            Some(ip("203.0.113.7")),
            "what the client wrote itself (192.0.2.1) is ignored"
        );
        assert_eq!(
            client(&["192.0.2.1", "203.0.113.7:4711, 10.0.0.2"]),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(client(&["[2001:db8::1]:80"]), Some(ip("2001:db8::1")));
        assert_eq!(client(&[]), Some(ip("10.0.0.1")), "no header: the proxy");
        assert_eq!(client(&["10.0.0.3"]), Some(ip("10.0.0.3")), "all trusted");
        assert_eq!(client(&["203.0.113.7, garbage"]), None);
    }

    #[test]
    fn without_a_peer_address_the_client_is_unknown() {
        assert_eq!(
            client_ip(None, &HeaderMap::new(), &IpRanges::default()),
            None
        );
    }
}
