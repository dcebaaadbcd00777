//! Glue for servers built on rmcp.

use mcp_core::Principal;
use rmcp::RoleServer;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;

/// Feeds rmcp's own DNS-rebinding defence (its allowed `Host`s and
/// `Origin`s) from the settings of the guard in front of it, so the two
/// never disagree.
///
/// - `hosts`: the `Host`s the guard allows; empty turns rmcp's check off
///   (when no guard runs, or it allows any host).
/// - `exact_origins`: the CORS origins, when each is exact. `None` (`*` or
///   wildcard subdomains, which rmcp cannot express, or no guard) turns
///   rmcp's Origin check off: the guard checks every `Origin` already.
/// - `own_origin`: the server's own origin, allowed beside the list.
///
/// Origins must carry explicit ports (`https://app.example.com:443`), as
/// rmcp compares them.
///
/// ```
/// use mcp_endpoint::streamable_http_config;
/// use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
///
/// let config = streamable_http_config(
///     StreamableHttpServerConfig::default(),
///     &["mcp.example.com".to_owned()],
///     Some(vec!["https://app.example.com:443".to_owned()]),
///     Some("https://mcp.example.com:443".to_owned()),
/// );
/// assert_eq!(config.allowed_hosts, ["mcp.example.com"]);
/// assert_eq!(config.allowed_origins.len(), 2);
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "rmcp")))]
pub fn streamable_http_config(
    config: StreamableHttpServerConfig,
    hosts: &[String],
    exact_origins: Option<Vec<String>>,
    own_origin: Option<String>,
) -> StreamableHttpServerConfig {
    let config = if hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(hosts.iter().cloned())
    };
    match exact_origins {
        Some(mut origins) => {
            origins.extend(own_origin);
            config
                .with_allowed_origins(origins)
                .enforce_origin_validation()
        }
        None => config.disable_allowed_origins(),
    }
}

/// The caller of a tool: the [`Principal`] the authentication layer put
/// into the HTTP request (rmcp hands its head, `http::request::Parts`, to
/// every request over Streamable HTTP), or the one a transport put into the
/// request's extensions directly (as the `ws` feature's
/// `WebSocketEndpoint` does).
///
/// `None` means no authentication ran in front of the tool: a
/// misconfiguration, to refuse.
///
/// ```no_run
/// use rmcp::RoleServer;
/// use rmcp::model::ErrorData;
/// use rmcp::service::RequestContext;
///
/// fn who(context: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
///     let principal = mcp_endpoint::caller(context)
///         .ok_or_else(|| ErrorData::internal_error("no authentication in front", None))?;
///     Ok(principal.subject().to_owned())
/// }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "rmcp")))]
pub fn caller(context: &RequestContext<RoleServer>) -> Option<Principal> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .or_else(|| context.extensions.get::<Principal>())
        .cloned()
}
