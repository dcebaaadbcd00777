use std::time::Duration;

/// Timeouts and caps of client connections, against slow and greedy
/// clients; [`Default`] gives the values in parentheses.
///
/// ```
/// use std::time::Duration;
///
/// use mcp_serve::ConnectionLimits;
///
/// let limits = ConnectionLimits {
///     header_read_timeout: Duration::from_secs(5),
///     max_connections: 1_000,
///     ..ConnectionLimits::default()
/// };
/// assert_eq!(limits.max_connections_per_ip, 256);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must be whole this long after the connection opened,
    /// or after its first byte on a kept-alive connection (10 s).
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request under way is closed after
    /// this long (75 s).
    pub keep_alive_timeout: Duration,
    /// Most connections open at once (10,000).
    pub max_connections: usize,
    /// Most connections open at once from one client address, IPv6 grouped
    /// by /56 (256).
    pub max_connections_per_ip: usize,
    /// Largest request head in bytes, request line included (16 KiB).
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_header_bytes: 16 * 1024,
        }
    }
}
