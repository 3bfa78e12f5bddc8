//! Which endpoint URLs a delivery may go to.
//!
//! Tenants choose the URLs, so by default a delivery goes only over HTTPS and only to public
//! addresses: never to this host (`localhost`, loopback), a private network (RFC 1918, unique
//! local, CGNAT), link-local addresses (cloud metadata services at 169.254.169.254), or any other
//! address that is not globally routable. [`check_url`] checks what the URL itself says (the
//! scheme, an IP literal, a `localhost` name); the sender checks the addresses a host name
//! resolves to when it connects ([`crate::sender`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::sender::SenderConfig;

/// IPv4 ranges that are not globally routable (network, prefix length).
const V4_NON_PUBLIC: [(u32, u8); 15] = [
    (0x0000_0000, 8),  // 0.0.0.0/8: "this network" (0.0.0.0 reaches this host)
    (0x0A00_0000, 8),  // 10.0.0.0/8: private
    (0x6440_0000, 10), // 100.64.0.0/10: shared address space (CGNAT)
    (0x7F00_0000, 8),  // 127.0.0.0/8: loopback
    (0xA9FE_0000, 16), // 169.254.0.0/16: link-local (cloud metadata)
    (0xAC10_0000, 12), // 172.16.0.0/12: private
    (0xC000_0000, 24), // 192.0.0.0/24: IETF protocol assignments
    (0xC000_0200, 24), // 192.0.2.0/24: documentation
    (0xC058_6300, 24), // 192.88.99.0/24: 6to4 relay anycast (deprecated)
    (0xC0A8_0000, 16), // 192.168.0.0/16: private
    (0xC612_0000, 15), // 198.18.0.0/15: benchmarking
    (0xC633_6400, 24), // 198.51.100.0/24: documentation
    (0xCB00_7100, 24), // 203.0.113.0/24: documentation
    (0xE000_0000, 4),  // 224.0.0.0/4: multicast
    (0xF000_0000, 4),  // 240.0.0.0/4: reserved, and 255.255.255.255 broadcast
];

/// IPv6 ranges that are not globally routable (network, prefix length). Ranges embedding an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address instead.
const V6_NON_PUBLIC: [(u128, u8); 9] = [
    (0x0064_ff9b_0001 << 80, 48), // 64:ff9b:1::/48: local-use NAT64
    (0x0100 << 112, 64),          // 100::/64: discard-only
    (0x2001_0000 << 96, 32),      // 2001::/32: Teredo
    (0x2001_0002_0000 << 80, 48), // 2001:2::/48: benchmarking
    (0x2001_0db8 << 96, 32),      // 2001:db8::/32: documentation
    (0xfc00 << 112, 7),           // fc00::/7: unique local
    (0xfe80 << 112, 10),          // fe80::/10: link-local
    (0xfec0 << 112, 10),          // fec0::/10: site-local (deprecated)
    (0xff00 << 112, 8),           // ff00::/8: multicast
];

fn v4_non_public(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    V4_NON_PUBLIC
        .iter()
        .any(|&(net, len)| n >> (32 - len) == net >> (32 - len))
}

fn v6_non_public(ip: Ipv6Addr) -> bool {
    let n = u128::from(ip);
    // ::ffff:a.b.c.d (mapped).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_non_public(v4);
    }
    // ::a.b.c.d (compatible, deprecated): also `::` and `::1`, which fall in 0.0.0.0/8.
    if n >> 32 == 0 {
        return v4_non_public(Ipv4Addr::from(n as u32));
    }
    // 64:ff9b::a.b.c.d (NAT64, well-known prefix): the gateway connects to a.b.c.d.
    if n >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return v4_non_public(Ipv4Addr::from(n as u32));
    }
    // 2002:AABB:CCDD::/48 (6to4) reaches a.b.c.d.
    if n >> 112 == 0x2002 {
        return v4_non_public(Ipv4Addr::from((n >> 80) as u32));
    }
    V6_NON_PUBLIC
        .iter()
        .any(|&(net, len)| n >> (128 - len) == net >> (128 - len))
}

/// Whether `ip` is not a public (globally routable) address: loopback, private, link-local,
/// unique-local, unspecified, CGNAT, multicast, broadcast, documentation, benchmarking and other
/// reserved ranges, including such IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64,
/// 6to4).
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_non_public(v4),
        IpAddr::V6(v6) => v6_non_public(v6),
    }
}

/// Whether a host name means this host: `localhost` or a name under it (RFC 6761), with or
/// without the trailing dot.
pub(crate) fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Parses an endpoint URL and checks what it says by itself: `https://` (or `http://` if
/// `config.allow_http`), a host, and, unless `config.allow_private_targets`, neither a
/// `localhost` name nor a non-public IP literal ([`is_non_public`]).
///
/// Names are not resolved here (the API can call this when an endpoint is created); the sender
/// checks what they resolve to when it connects. The reason given never repeats the URL.
pub fn check_url(raw: &str, config: &SenderConfig) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|_| "the endpoint URL is not a valid URL".to_owned())?;
    match url.scheme() {
        "https" => {}
        "http" if config.allow_http => {}
        "http" => return Err("the endpoint URL must be https://".to_owned()),
        _ => return Err("the endpoint URL must be an https:// URL".to_owned()),
    }
    let Some(host) = url.host() else {
        return Err("the endpoint URL has no host".to_owned());
    };
    if !config.allow_private_targets {
        let refused = match host {
            Host::Domain(name) => is_localhost_name(name),
            Host::Ipv4(ip) => is_non_public(IpAddr::V4(ip)),
            Host::Ipv6(ip) => is_non_public(IpAddr::V6(ip)),
        };
        if refused {
            return Err(
                "the endpoint URL names this host or a loopback, private or otherwise non-public address"
                    .to_owned(),
            );
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "2002:7f00:0001::1",
            "2002:c0a8:0101::",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_non_public(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn public_addresses() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.3.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "2001:4860:4860::8888",
        ] {
            assert!(!is_non_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn localhost_names() {
        for s in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "a.localhost",
            "x.y.Localhost.",
        ] {
            assert!(is_localhost_name(s), "{s}");
        }
        for s in ["localhost.example.com", "mylocalhost", "example.com"] {
            assert!(!is_localhost_name(s), "{s}");
        }
    }

    #[test]
    fn urls() {
        let strict = SenderConfig::default();
        assert!(check_url("https://hooks.example.com/x?token=1", &strict).is_ok());
        assert!(check_url("https://8.8.8.8/", &strict).is_ok());
        for refused in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "file:///etc/passwd",
            "not a url",
            "https://localhost/",
            "https://localhost./",
            "https://foo.localhost/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://192.168.1.1/",
            "https://100.64.0.1/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://0.0.0.0/",
            // Other spellings of 127.0.0.1, normalised by the URL parser.
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
        ] {
            let why = check_url(refused, &strict).unwrap_err();
            assert!(!why.contains("127") && !why.contains("token"), "{why}");
        }
        let open = SenderConfig {
            allow_http: true,
            allow_private_targets: true,
            ..SenderConfig::default()
        };
        for allowed in [
            "http://127.0.0.1:8080/",
            "https://localhost/",
            "http://[::1]/",
            "http://10.0.0.1/",
        ] {
            assert!(check_url(allowed, &open).is_ok(), "{allowed}");
        }
        assert!(check_url("ftp://127.0.0.1/", &open).is_err());
    }
}
