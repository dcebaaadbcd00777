//! Redirect URIs: which may be registered, and when a presented one
//! matches a registered one (exactly, except a loopback's port: RFC 8252
//! §7.3, since a native client gets an ephemeral port from the system).

use url::Url;

/// Whether `uri` may be registered as a redirect URI: absolute, without a
/// fragment or credentials, and `https`, or `http` on a loopback address
/// (`127.0.0.1`, `[::1]`, `localhost`), or a private-use scheme of a native
/// app (`com.example.app:/callback`, RFC 8252 §7.1: it must contain a dot).
/// Never `javascript:`, `data:`, `file:` or plain `http` elsewhere.
///
/// ```
/// use mcp_oauth::redirect_uri_allowed;
///
/// assert!(redirect_uri_allowed("https://app.example.com/callback"));
/// assert!(redirect_uri_allowed("http://127.0.0.1/callback"));
/// assert!(redirect_uri_allowed("com.example.app:/oauth"));
/// assert!(!redirect_uri_allowed("http://app.example.com/callback"));
/// assert!(!redirect_uri_allowed("javascript:alert(1)"));
/// assert!(!redirect_uri_allowed("https://app.example.com/cb#fragment"));
/// ```
pub fn redirect_uri_allowed(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback(&url),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" | "ws" | "wss" | "ftp" => {
            false
        }
        scheme => scheme.contains('.'),
    }
}

/// Whether the presented `redirect_uri` matches the registered one: the
/// same string, or, for a loopback `http` URI, the same in everything but
/// the port.
///
/// ```
/// use mcp_oauth::redirect_uri_matches;
///
/// let registered = "http://127.0.0.1/callback";
/// assert!(redirect_uri_matches(registered, "http://127.0.0.1:53124/callback"));
/// assert!(!redirect_uri_matches(registered, "http://127.0.0.1:53124/callback/../evil"));
/// assert!(!redirect_uri_matches(registered, "http://127.0.0.1.evil.com/callback"));
/// assert!(redirect_uri_matches("https://a.example/cb", "https://a.example/cb"));
/// assert!(!redirect_uri_matches("https://a.example/cb", "https://a.example/cb/"));
/// assert!(!redirect_uri_matches("https://a.example/cb", "https://A.example/cb"));
/// ```
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    // Only a loopback's port may differ; everything else is compared as
    // the client sent it, so no normalisation can make two URIs equal.
    let (Ok(reg), Ok(pres)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    if reg.scheme() != "http" || !is_loopback(&reg) || !is_loopback(&pres) {
        return false;
    }
    let (Some(reg_rest), Some(pres_rest)) = (
        without_port(registered, &reg),
        without_port(presented, &pres),
    ) else {
        return false;
    };
    reg_rest == pres_rest && pres.fragment().is_none()
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

/// `http://host` + what follows the authority, as written, with the port
/// left out: the text compared for loopback URIs. `None` when the raw text
/// does not have the shape the parsed URL says (userinfo, odd spellings).
fn without_port<'a>(raw: &'a str, url: &Url) -> Option<(&'a str, &'a str)> {
    let rest = raw.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return None;
    }
    // Whatever port is written goes, the scheme's default (`:80`, which the
    // parsed URL drops) included; an IPv6 host ends with `]`, so its own
    // colons are never taken for a port.
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    if url
        .port()
        .is_some_and(|port| !authority.ends_with(&format!(":{port}")))
    {
        return None;
    }
    Some((host, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `:80` is the scheme's default, which the parsed URL drops: it is
    /// still only a port.
    #[test]
    fn a_loopback_on_the_default_port_matches() {
        assert!(redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:80/cb"
        ));
        assert!(redirect_uri_matches(
            "http://127.0.0.1:80/cb",
            "http://127.0.0.1:5000/cb"
        ));
        assert!(redirect_uri_matches(
            "http://[::1]:8080/cb",
            "http://[::1]:80/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:080x/cb"
        ));
    }

    #[test]
    fn loopback_ports_vary_and_nothing_else_does() {
        for registered in [
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "http://localhost/cb?x=1",
        ] {
            let with_port = |port: u16| {
                let url = Url::parse(registered).unwrap();
                let mut url = url.clone();
                url.set_port(Some(port)).unwrap();
                url.to_string()
            };
            assert!(
                redirect_uri_matches(registered, &with_port(49152)),
                "{registered}"
            );
            assert!(redirect_uri_matches(registered, registered));
        }
        let refused = [
            // another host, path, query, scheme, or credentials
            "http://127.0.0.2:5000/cb",
            "http://127.0.0.1:5000/cb2",
            "http://127.0.0.1:5000/cb?x=1",
            "https://127.0.0.1:5000/cb",
            "http://user@127.0.0.1:5000/cb",
            "http://127.0.0.1:5000/cb#frag",
            "http://127.0.0.1:5000/CB",
            "http://127.0.0.1:5000//cb",
            "http://localhost:5000/cb",
        ];
        for presented in refused {
            assert!(
                !redirect_uri_matches("http://127.0.0.1/cb", presented),
                "{presented}"
            );
        }
        // Only plain http loopback URIs may change port.
        assert!(!redirect_uri_matches(
            "https://127.0.0.1/cb",
            "https://127.0.0.1:5000/cb"
        ));
        // Non-loopback URIs match only exactly, port included.
        assert!(!redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://app.example/cb",
            "http://app.example:81/cb"
        ));
    }

    #[test]
    fn registration_refuses_dangerous_uris() {
        for bad in [
            "",
            "/relative",
            "http://example.com/cb",
            "https://user:pw@example.com/cb",
            "https://user@example.com/cb",
            "https://:pw@example.com/cb",
            "JavaScript:alert(1)",
            "data:text/html,<script>",
            "file:///etc/passwd",
            "myapp:/cb",
            "https://example.com/cb#x",
        ] {
            assert!(!redirect_uri_allowed(bad), "{bad}");
        }
        for good in [
            "https://example.com/cb?x=1",
            "http://localhost:3000/cb",
            "http://[::1]/cb",
        ] {
            assert!(redirect_uri_allowed(good), "{good}");
        }
    }
}
