//! Which MCP methods and tools a principal may use.

use mcp_core::Principal;

/// What a rule needs of the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Need {
    /// These scopes (each), for restricted principals.
    Scopes(Vec<String>),
    /// This role.
    Role(String),
}

/// Why [`McpPolicy::check`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A scope is missing: ask for it.
    NeedsScope(String),
    /// A role is missing.
    NeedsRole(String),
    /// No rule names this method or tool.
    NotAllowed,
}

#[derive(Clone, Debug)]
struct Rule {
    /// An exact method, `prefix/*`, or `*`.
    method: String,
    /// An exact tool (or resource) name, or `*`.
    name: String,
    need: Vec<Need>,
}

/// A policy from MCP method and tool name to what the caller needs, checked
/// on every message; the first rule that matches decides, and what no rule
/// names is refused.
///
/// Methods are JSON-RPC methods (`tools/call`, `notifications/*`, ...) plus
/// two pseudo-methods: `response` (a client's answer to the server) and
/// `stream` (opening the event stream or closing a session over HTTP).
///
/// ```
/// use mcp_core::{AuthMethod, Principal};
/// use mcp_endpoint::{McpPolicy, Refusal};
///
/// let policy = McpPolicy::empty()
///     .allow("initialize", "*", ["mcp"])
///     .allow("tools/call", "whoami", ["mcp"])
///     .allow("tools/call", "create_agent", ["mcp", "agents:write"]);
/// let key = Principal::builder("u1", AuthMethod::ApiKey).role("user").scopes(["mcp"]).build();
/// assert_eq!(policy.check(&key, "tools/call", Some("whoami")), Ok(()));
/// assert_eq!(
///     policy.check(&key, "tools/call", Some("create_agent")),
///     Err(Refusal::NeedsScope("agents:write".into()))
/// );
/// assert_eq!(policy.check(&key, "tools/call", Some("rm_rf")), Err(Refusal::NotAllowed));
/// ```
#[derive(Clone, Debug)]
pub struct McpPolicy {
    rules: Vec<Rule>,
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

impl McpPolicy {
    /// A policy without rules: refuses everything.
    pub fn empty() -> Self {
        McpPolicy { rules: Vec::new() }
    }

    /// Adds a rule: `method` (exact, `prefix/*` or `*`) with `name` (exact
    /// or `*`) needs `scopes`.
    #[must_use]
    pub fn allow(
        mut self,
        method: impl Into<String>,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.rules.push(Rule {
            method: method.into(),
            name: name.into(),
            need: vec![Need::Scopes(strings(scopes))],
        });
        self
    }

    /// Adds a rule that also needs `role`.
    #[must_use]
    pub fn allow_role(
        mut self,
        method: impl Into<String>,
        name: impl Into<String>,
        role: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.rules.push(Rule {
            method: method.into(),
            name: name.into(),
            need: vec![Need::Role(role.into()), Need::Scopes(strings(scopes))],
        });
        self
    }

    /// Decides for `principal` calling `method` (with `name` for
    /// `tools/call` and other named methods).
    pub fn check(
        &self,
        principal: &Principal,
        method: &str,
        name: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(rule) = self.rules.iter().find(|rule| {
            let method_matches = rule.method == "*"
                || rule.method == method
                || rule.method.strip_suffix("/*").is_some_and(|prefix| {
                    method
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
                });
            let name_matches = rule.name == "*" || Some(rule.name.as_str()) == name;
            method_matches && name_matches
        }) else {
            return Err(Refusal::NotAllowed);
        };
        for need in &rule.need {
            match need {
                Need::Role(role) if !principal.has_role(role) => {
                    return Err(Refusal::NeedsRole(role.clone()));
                }
                Need::Scopes(scopes) => {
                    if let Some(missing) = scopes.iter().find(|s| !principal.has_scope(s)) {
                        return Err(Refusal::NeedsScope(missing.clone()));
                    }
                }
                Need::Role(_) => {}
            }
        }
        Ok(())
    }
}

/// The method and tool name of each JSON-RPC message (one message or a
/// batch). Responses (no method) are the pseudo-method `response`; what is
/// not a message at all yields nothing and is left to the MCP server to
/// answer.
///
/// ```
/// let batch = serde_json::json!([
///     {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet"}},
///     {"jsonrpc": "2.0", "id": 7, "result": {}},
/// ]);
/// assert_eq!(
///     mcp_endpoint::messages(&batch),
///     [("tools/call", Some("greet")), ("response", None)]
/// );
/// ```
pub fn messages(message: &serde_json::Value) -> Vec<(&str, Option<&str>)> {
    let items = match message {
        serde_json::Value::Array(items) => items.as_slice(),
        serde_json::Value::Object(_) => std::slice::from_ref(message),
        _ => &[],
    };
    items
        .iter()
        .map(|message| {
            let method = message
                .get("method")
                .and_then(|m| m.as_str())
                .unwrap_or("response");
            let name = message
                .get("params")
                .and_then(|params| params.get(name_key(method)?))
                .and_then(|n| n.as_str());
            (method, name)
        })
        .collect()
}

/// Where a method's name is, as the MCP `Mcp-Name` header takes it (and
/// rmcp checks it): a tool's or prompt's `name`, a resource's `uri`, a
/// task's `taskId`. Other methods have none, so a rule naming one cannot be
/// met by a `name` the client slips into their params.
fn name_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_core::AuthMethod;

    #[test]
    fn wildcards_and_roles() {
        let policy = McpPolicy::empty()
            .allow("notifications/*", "*", ["mcp"])
            .allow_role("tools/call", "admin_tool", "admin", ["mcp"])
            .allow("tools/*", "*", ["mcp"]);
        let user = Principal::builder("u", AuthMethod::Jwt)
            .role("user")
            .build();
        assert_eq!(
            policy.check(&user, "notifications/initialized", None),
            Ok(())
        );
        assert_eq!(
            policy.check(&user, "notificationsX", None),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            policy.check(&user, "tools/call", Some("admin_tool")),
            Err(Refusal::NeedsRole("admin".into()))
        );
        assert_eq!(policy.check(&user, "tools/call", Some("other")), Ok(()));
        assert_eq!(
            policy.check(&user, "resources/read", Some("x")),
            Err(Refusal::NotAllowed)
        );
    }

    /// A resource is named by its `uri`, a task by its `taskId`: a rule on
    /// a resource cannot be dodged by leaving out `name`, and a `name` in
    /// another method's params names nothing.
    #[test]
    fn names_are_taken_where_the_method_keeps_them() {
        let read = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
            "params": {"uri": "file:///etc/secret", "name": "harmless"}});
        assert_eq!(
            messages(&read),
            [("resources/read", Some("file:///etc/secret"))]
        );
        let task = serde_json::json!({"method": "tasks/get", "params": {"taskId": "t1"}});
        assert_eq!(messages(&task), [("tasks/get", Some("t1"))]);
        let init = serde_json::json!({"method": "initialize", "params": {"name": "x"}});
        assert_eq!(messages(&init), [("initialize", None)]);

        let policy = McpPolicy::empty()
            .allow_role("resources/read", "file:///etc/secret", "admin", ["mcp"])
            .allow("resources/*", "*", ["mcp"]);
        let user = Principal::builder("u", AuthMethod::Jwt)
            .role("user")
            .build();
        let (method, name) = messages(&read)[0];
        assert_eq!(
            policy.check(&user, method, name),
            Err(Refusal::NeedsRole("admin".into()))
        );
    }

    #[test]
    fn unrestricted_principals_have_every_scope_of_their_role() {
        let session = Principal::builder("u", AuthMethod::Jwt)
            .role("user")
            .build();
        let policy = McpPolicy::empty().allow("initialize", "*", ["mcp"]).allow(
            "tools/call",
            "create_agent",
            ["mcp", "agents:write"],
        );
        assert_eq!(
            policy.check(&session, "tools/call", Some("create_agent")),
            Ok(())
        );
        let empty = Principal::builder("u", AuthMethod::ApiKey)
            .scopes(Vec::<String>::new())
            .build();
        assert_eq!(
            policy.check(&empty, "initialize", None),
            Err(Refusal::NeedsScope("mcp".into()))
        );
    }
}
