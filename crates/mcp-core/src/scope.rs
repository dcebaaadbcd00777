//! The scope hierarchy: the one rule every scope check follows.

/// Whether holding `held` grants `needed`: a scope grants itself and every
/// scope below it in the `:` hierarchy (MCP authorization, 2026-07-28), and
/// nothing else. `agents` grants `agents:read` and `agents:read:own`;
/// `agents:write` does not grant `agents:read`, and `agent` does not grant
/// `agents` (a parent is a whole segment, not a prefix of the text).
///
/// Every check of a principal's scopes ([`Principal::has_scope`]) and the
/// rule that a restricted caller cannot hand out more than it holds go
/// through this one function.
///
/// ```
/// use mcp_core::scope_grants;
///
/// assert!(scope_grants("agents", "agents:read"));
/// assert!(scope_grants("agents:read", "agents:read"));
/// assert!(!scope_grants("agents:write", "agents:read"));
/// assert!(!scope_grants("agents:read", "agents"));
/// assert!(!scope_grants("agent", "agents:read"));
/// ```
///
/// [`Principal::has_scope`]: crate::Principal::has_scope
pub fn scope_grants(held: &str, needed: &str) -> bool {
    match needed.strip_prefix(held) {
        Some("") => true,
        Some(rest) => !held.is_empty() && rest.starts_with(':'),
        None => false,
    }
}

/// Whether any of `held` grants `needed` ([`scope_grants`]).
pub fn scopes_grant<'a>(held: impl IntoIterator<Item = &'a str>, needed: &str) -> bool {
    held.into_iter().any(|held| scope_grants(held, needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_grants_itself_and_what_is_below_it() {
        for (held, needed, granted) in [
            ("agents", "agents", true),
            ("agents", "agents:read", true),
            ("agents", "agents:write", true),
            ("agents", "agents:read:own", true),
            ("agents:read", "agents:read:own", true),
            ("agents:read", "agents", false),
            ("agents:write", "agents:read", false),
            ("agent", "agents", false),
            ("agent", "agents:read", false),
            ("agents:", "agents:read", false),
            ("", "agents", false),
            ("", "", true),
            ("mcp", "mcpx", false),
            ("mcp", "mcp:", true),
            ("keys", "agents:read", false),
        ] {
            assert_eq!(scope_grants(held, needed), granted, "{held} -> {needed}");
        }
        assert!(scopes_grant(["mcp", "agents"], "agents:write"));
        assert!(!scopes_grant(["mcp", "agents:read"], "agents:write"));
    }
}
