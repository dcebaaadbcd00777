//! Properties of forwarded-address parsing and quota settings, over
//! generated input: a client never chooses its own address past an
//! untrusted hop, and a quota reads back as written.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mcp_ratelimit::{ClientAddr, ForwardedHeader, Quota, RequestInfo, TrustedProxyIp};
use proptest::prelude::*;

/// A hop of `X-Forwarded-For`: a trusted proxy (10/8), an outside
/// address, or something that is no address at all.
#[derive(Clone, Debug)]
enum Hop {
    Proxy(u8),
    Outside(u8),
    Garbage(&'static str),
}

impl Hop {
    fn text(&self) -> String {
        match self {
            Hop::Proxy(n) => format!("10.0.0.{n}"),
            Hop::Outside(n) => format!("203.0.113.{n}"),
            Hop::Garbage(g) => (*g).to_owned(),
        }
    }

    fn ip(&self) -> Option<IpAddr> {
        self.text().parse().ok()
    }
}

fn hop() -> impl Strategy<Value = Hop> {
    prop_oneof![
        4 => any::<u8>().prop_map(Hop::Proxy),
        4 => any::<u8>().prop_map(Hop::Outside),
        1 => prop::sample::select(vec!["unknown", "_hidden", "", "1.2.3", "::g", "[::1]:80x"])
            .prop_map(Hop::Garbage),
    ]
}

fn proxies() -> TrustedProxyIp {
    "10.0.0.0/8".parse().expect("a proxy list")
}

fn client(peer: IpAddr, lines: &[String]) -> ClientAddr {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(SocketAddr::new(peer, 443));
    for line in lines {
        request
            .headers_mut()
            .append("x-forwarded-for", line.parse().expect("a header value"));
    }
    proxies()
        .client(&RequestInfo::of(&request))
        .expect("a peer")
}

/// What the documented rule gives, written plainly: right to left, past
/// trusted proxies, the first other hop is the client; a hop that does not
/// parse hides the client behind the last trusted one.
fn model(peer: IpAddr, hops: &[Hop]) -> ClientAddr {
    if !matches!(peer, IpAddr::V4(v4) if v4.octets()[0] == 10) {
        return ClientAddr::Ip(peer);
    }
    let mut via = peer;
    for hop in hops.iter().rev() {
        match hop {
            Hop::Proxy(_) => via = hop.ip().expect("an address"),
            Hop::Outside(_) => return ClientAddr::Ip(hop.ip().expect("an address")),
            // An empty list element is no hop (RFC 9110, section 5.6.1).
            Hop::Garbage("") => {}
            Hop::Garbage(_) => return ClientAddr::Hidden { via },
        }
    }
    ClientAddr::Ip(via)
}

proptest! {
    /// The parser agrees with the rule over any chain of hops, written as
    /// one line or one line per hop, with any spacing.
    #[test]
    fn the_client_is_the_first_untrusted_hop(
        peer_trusted in any::<bool>(),
        hops in prop::collection::vec(hop(), 0..12),
        split in any::<bool>(),
        space in " {0,2}",
    ) {
        let peer = if peer_trusted { IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)) } else { IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)) };
        let texts: Vec<String> = hops.iter().map(Hop::text).collect();
        let lines = if hops.is_empty() {
            Vec::new()
        } else if split {
            texts.clone()
        } else {
            vec![texts.join(&format!(",{space}"))]
        };
        prop_assert_eq!(client(peer, &lines), model(peer, &hops), "{:?}", lines);
    }

    /// Whatever a client writes to the left of the first untrusted hop is
    /// never its address, however long the header (at most 32 hops read).
    #[test]
    fn what_a_client_writes_is_never_believed(
        forged in prop::collection::vec(any::<u8>(), 0..100),
        proxies_after in 0usize..40,
    ) {
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mut hops: Vec<String> = forged.iter().map(|n| format!("10.0.0.{n}")).collect();
        hops.push("203.0.113.7".to_owned());
        hops.extend((0..proxies_after).map(|n| format!("10.1.0.{n}")));
        let found = client(peer, &[hops.join(",")]);
        let hidden_at = |ip: IpAddr| matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == [10, 1]);
        match found {
            ClientAddr::Ip(ip) if proxies_after < 32 => prop_assert_eq!(ip, "203.0.113.7".parse::<IpAddr>().unwrap()),
            // Past 32 hops the answer is the last hop read, a proxy the
            // server trusts: never an address the client wrote.
            ClientAddr::Ip(ip) => prop_assert!(hidden_at(ip), "{ip}"),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    /// Any header bytes, in either header, are answered without a panic.
    #[test]
    fn any_header_is_answered(value in prop::collection::vec(any::<u8>(), 0..300), forwarded in any::<bool>()) {
        let Ok(value) = http::HeaderValue::from_bytes(&value) else { return Ok(()) };
        let mut request = http::Request::new(());
        request.extensions_mut().insert("10.0.0.1:443".parse::<SocketAddr>().unwrap());
        let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        request.headers_mut().insert(header.as_str(), value);
        let found = proxies().header(header).client(&RequestInfo::of(&request));
        prop_assert!(found.is_some());
    }

    /// A quota written by `Display` reads back as the same quota, and a
    /// period in any unit is that many of it.
    #[test]
    fn quotas_read_back_as_written(
        limit in 1u32..1_000_000,
        amount in 1u64..100_000,
        unit in prop::sample::select(vec![("ms", 1u64), ("s", 1_000), ("sec", 1_000), ("m", 60_000), ("min", 60_000), ("h", 3_600_000), ("d", 86_400_000)]),
    ) {
        let period = Duration::from_millis(amount * unit.1);
        let text = format!("{limit}/{amount}{}", unit.0);
        let parsed: Result<Quota, _> = text.parse();
        match Quota::per(limit, period) {
            Some(quota) => {
                let parsed = parsed.expect("a valid quota parses");
                prop_assert_eq!((parsed.limit(), parsed.period()), (limit, period));
                let again: Quota = quota.to_string().parse().expect("Display reads back");
                prop_assert_eq!((again.limit(), again.period(), again.burst()), (limit, period, limit));
            }
            None => prop_assert!(parsed.is_err()),
        }
    }

    /// Any text is answered with a quota or an error, never a panic or an
    /// overflow.
    #[test]
    fn any_quota_text_is_answered(text in "[0-9]{0,25}/[0-9]{0,25}(ms|s|sec|m|min|h|d|x|)|\\PC{0,40}") {
        if let Ok(quota) = text.parse::<Quota>() {
            prop_assert!(quota.limit() > 0 && !quota.period().is_zero());
        }
    }
}
