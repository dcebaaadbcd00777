//! Which MCP methods and tools a principal may use, and how often.

use std::collections::BTreeMap;
use std::sync::Arc;

use mcp_core::Principal;
use mcp_ratelimit::{
    BackendError, Decision, FailurePolicy, InMemoryBackend, Policy, Quota, RateKey,
    RateLimitBackend, RateLimiter,
};
use serde::Deserialize;

/// What one rule of an [`McpPolicy`] needs of the caller, and the quota of
/// what it admits.
///
/// ```
/// use mcp_endpoint::McpRule;
///
/// let rule = McpRule::scopes(["mcp", "agents:write"]).quota("30/60s".parse().unwrap());
/// let admin = McpRule::scopes(["mcp"]).role("admin");
/// # let _ = (rule, admin);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McpRule {
    scopes: Vec<String>,
    role: Option<String>,
    quota: Option<Quota>,
}

impl McpRule {
    /// Needs `scopes` (each; for restricted principals).
    pub fn scopes(scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        McpRule {
            scopes: strings(scopes),
            ..McpRule::default()
        }
    }

    /// Also needs `role`.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// At most `quota` of what the rule admits, per principal and name (a
    /// tool's calls, per caller and tool).
    #[must_use]
    pub fn quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }
}

/// Why [`McpPolicy::check`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A scope is missing: these are every scope the message needs, for
    /// one `insufficient_scope` a client can step up from.
    NeedsScope(Vec<String>),
    /// A role is missing.
    NeedsRole(String),
    /// No rule names this method or tool.
    NotAllowed,
}

#[derive(Clone, Debug)]
struct Rule {
    /// An exact method, `prefix/*`, or `*`.
    method: String,
    /// An exact tool (or resource) name, `prefix/*`, or `*`.
    name: String,
    need: McpRule,
    /// The quota's limiter, named `tool:<name>` for tools and
    /// `method:<method>` otherwise.
    limiter: Option<RateLimiter>,
}

/// An exact `pattern`, `prefix/*` (anything below `prefix/`), or `*`.
fn matches(pattern: &str, text: &str) -> bool {
    pattern == "*"
        || pattern == text
        || pattern.strip_suffix("/*").is_some_and(|prefix| {
            text.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// A policy from MCP method and tool name to what the caller needs, checked
/// on every message; the first rule that matches decides, and what no rule
/// names is refused. A rule may carry a quota, counted per principal and
/// name on the policy's [rate-limit backend](Self::quota_backend).
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
///     Err(Refusal::NeedsScope(vec!["mcp".into(), "agents:write".into()]))
/// );
/// assert_eq!(policy.check(&key, "tools/call", Some("rm_rf")), Err(Refusal::NotAllowed));
/// // The hierarchy: `agents` grants `agents:write`.
/// let wide = Principal::builder("u1", AuthMethod::ApiKey).scopes(["mcp", "agents"]).build();
/// assert_eq!(policy.check(&wide, "tools/call", Some("create_agent")), Ok(()));
/// ```
#[derive(Clone)]
pub struct McpPolicy {
    rules: Vec<Rule>,
    backend: Arc<dyn RateLimitBackend>,
    failure: FailurePolicy,
}

impl std::fmt::Debug for McpPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpPolicy")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// What [`McpPolicy::meter`] decided.
#[derive(Debug)]
pub enum Metered<'a> {
    /// No quota applies.
    Unmetered,
    /// Within the quota (the decision, for its headers).
    Allowed(&'a RateLimiter, Decision),
    /// Over the quota: answer with [`RateLimiter::refusal`].
    Limited(&'a RateLimiter, Decision),
    /// The backend could not decide and its failure policy refuses.
    Unavailable(BackendError),
}

impl McpPolicy {
    /// A policy without rules: refuses everything. Quotas count in
    /// process until [`quota_backend`](Self::quota_backend) says otherwise.
    pub fn empty() -> Self {
        McpPolicy {
            rules: Vec::new(),
            backend: Arc::new(InMemoryBackend::new()),
            failure: FailurePolicy::Open,
        }
    }

    /// Counts quotas on `backend` (Redis, to share them across replicas).
    #[must_use]
    pub fn quota_backend(mut self, backend: impl RateLimitBackend) -> Self {
        self.backend = Arc::new(backend);
        self.rebuild_limiters();
        self
    }

    /// What a quota does when its backend fails (default: lets the message
    /// through).
    #[must_use]
    pub fn quota_failure(mut self, failure: FailurePolicy) -> Self {
        self.failure = failure;
        self.rebuild_limiters();
        self
    }

    fn rebuild_limiters(&mut self) {
        let mut rules = std::mem::take(&mut self.rules);
        for rule in &mut rules {
            rule.limiter = self.limiter(&rule.method, &rule.name, rule.need.quota);
        }
        self.rules = rules;
    }

    fn limiter(&self, method: &str, name: &str, quota: Option<Quota>) -> Option<RateLimiter> {
        let policy = if method == "tools/call" {
            format!("tool:{name}")
        } else {
            format!("method:{method}")
        };
        quota.map(|quota| {
            RateLimiter::new(self.backend.clone(), Policy::new(policy, quota))
                .on_failure(self.failure.clone())
        })
    }

    /// Adds a rule: `method` (exact, `prefix/*` or `*`) with `name` (exact,
    /// `prefix/*` or `*`) needs `scopes`.
    #[must_use]
    pub fn allow(
        self,
        method: impl Into<String>,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.rule(method, name, McpRule::scopes(scopes))
    }

    /// Adds a rule that also needs `role`.
    #[must_use]
    pub fn allow_role(
        self,
        method: impl Into<String>,
        name: impl Into<String>,
        role: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.rule(method, name, McpRule::scopes(scopes).role(role))
    }

    /// Adds `rule` for `method` with `name`.
    #[must_use]
    pub fn rule(
        mut self,
        method: impl Into<String>,
        name: impl Into<String>,
        rule: McpRule,
    ) -> Self {
        let (method, name) = (method.into(), name.into());
        let limiter = self.limiter(&method, &name, rule.quota);
        self.rules.push(Rule {
            method,
            name,
            need: rule,
            limiter,
        });
        self
    }

    fn find(&self, method: &str, name: Option<&str>) -> Option<&Rule> {
        self.rules.iter().find(|rule| {
            matches(&rule.method, method)
                && (rule.name == "*" || name.is_some_and(|name| matches(&rule.name, name)))
        })
    }

    /// Decides for `principal` calling `method` (with `name` for
    /// `tools/call` and other named methods).
    pub fn check(
        &self,
        principal: &Principal,
        method: &str,
        name: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(rule) = self.find(method, name) else {
            return Err(Refusal::NotAllowed);
        };
        let need = &rule.need;
        if let Some(role) = need.role.as_ref().filter(|r| !principal.has_role(r)) {
            return Err(Refusal::NeedsRole(role.clone()));
        }
        if principal.lacks_any_scope(need.scopes.iter().map(String::as_str)) {
            return Err(Refusal::NeedsScope(need.scopes.clone()));
        }
        Ok(())
    }

    /// Whether `principal` may call the tool `name`: what `tools/list`
    /// shows it.
    pub fn may_call_tool(&self, principal: &Principal, name: &str) -> bool {
        self.check(principal, "tools/call", Some(name)).is_ok()
    }

    /// Counts one message against the quota of its rule, if it has one:
    /// per principal and name (a tool's calls per caller and tool). Call it
    /// after [`check`](Self::check) allowed the message.
    pub async fn meter(
        &self,
        principal: &Principal,
        method: &str,
        name: Option<&str>,
    ) -> Metered<'_> {
        let Some(limiter) = self.find(method, name).and_then(|r| r.limiter.as_ref()) else {
            return Metered::Unmetered;
        };
        // One bucket per caller and name; the name is bounded by the body
        // limit and the backend bounds how many keys it keeps.
        let key = RateKey::text(format!("{}\n{}", principal.subject(), name.unwrap_or("")));
        match limiter.check(&key).await {
            Ok(decision) if decision.allowed => Metered::Allowed(limiter, decision),
            Ok(decision) => Metered::Limited(limiter, decision),
            Err(error) => Metered::Unavailable(error),
        }
    }

    /// [`meter`](Self::meter)s each of `messages` (a message or a batch),
    /// stopping at the first over its quota or that cannot be metered:
    /// `Metered::Unmetered` when all passed.
    pub async fn meter_all(
        &self,
        principal: &Principal,
        messages: &[(&str, Option<&str>)],
    ) -> Metered<'_> {
        for &(method, name) in messages {
            match self.meter(principal, method, name).await {
                Metered::Unmetered | Metered::Allowed(..) => {}
                stopped => {
                    tracing::info!(
                        method,
                        tool = name.unwrap_or(""),
                        "MCP message over its quota"
                    );
                    return stopped;
                }
            }
        }
        Metered::Unmetered
    }

    /// This policy with the rules of `config` in front (so they override
    /// its own): each scope must be one `known` accepts, each quota must
    /// parse, and every rule of the file also needs `base_scopes`. A rule
    /// for an exact name that leaves out `scopes` or `role` keeps what the
    /// rule it overrides needed, so a file that only sets a quota never
    /// lifts a scope.
    ///
    /// ```
    /// use mcp_endpoint::{McpPolicy, PolicyConfig};
    ///
    /// let config: PolicyConfig = toml::from_str(r#"
    ///     [tools."create_agent"]
    ///     quota = "30/60s"
    ///     [tools."admin/*"]
    ///     role = "admin"
    /// "#).unwrap();
    /// let defaults = McpPolicy::empty().allow("tools/call", "create_agent", ["mcp", "agents:write"]);
    /// let policy = defaults
    ///     .overridden_by(&config, |s| ["mcp", "agents:write"].contains(&s), &["mcp"])
    ///     .unwrap();
    /// # let _ = policy;
    /// let typo: PolicyConfig = toml::from_str("[tools.x]\nscopes = [\"agentz\"]").unwrap();
    /// let error = McpPolicy::empty().overridden_by(&typo, |s| s == "mcp", &["mcp"]).unwrap_err();
    /// assert_eq!(error.to_string(), "mcp.tools.\"x\": unknown scope `agentz`");
    /// ```
    pub fn overridden_by(
        self,
        config: &PolicyConfig,
        known: impl Fn(&str) -> bool,
        base_scopes: &[&str],
    ) -> Result<McpPolicy, PolicyError> {
        let mut added = Vec::new();
        let entries = config
            .tools
            .iter()
            .map(|(name, rule)| ("tools", "tools/call", name.as_str(), rule))
            .chain(
                config
                    .methods
                    .iter()
                    .map(|(method, rule)| ("methods", method.as_str(), "*", rule)),
            );
        for (table, method, name, entry) in entries {
            let key = if table == "tools" { name } else { method };
            let at = |reason: String| PolicyError {
                entry: format!("mcp.{table}.{key:?}"),
                reason,
            };
            if !valid_pattern(key) {
                return Err(at("expected an exact name, `prefix/*` or `*`".to_owned()));
            }
            let inherited = (!key.contains('*'))
                .then(|| self.find(method, (name != "*").then_some(name)))
                .flatten()
                .map(|rule| rule.need.clone());
            let mut scopes: Vec<String> = base_scopes.iter().map(|s| (*s).to_owned()).collect();
            let own = match &entry.scopes {
                Some(own) => own.clone(),
                None => inherited
                    .as_ref()
                    .map(|r| r.scopes.clone())
                    .unwrap_or_default(),
            };
            for scope in own {
                if !known(&scope) {
                    return Err(at(format!("unknown scope `{scope}`")));
                }
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
            let role = entry
                .role
                .clone()
                .or_else(|| inherited.as_ref().and_then(|r| r.role.clone()));
            let quota = match &entry.quota {
                Some(text) => Some(
                    text.parse::<Quota>()
                        .map_err(|e| at(format!("quota {text:?}: {e}")))?,
                ),
                None => None,
            };
            added.push((
                method.to_owned(),
                name.to_owned(),
                McpRule {
                    scopes,
                    role,
                    quota,
                },
            ));
        }
        // Exact names before patterns, longer patterns before shorter:
        // within the file, the most specific rule decides.
        added.sort_by_key(|(method, name, _)| {
            let pattern = if method == "tools/call" { name } else { method };
            (pattern.contains('*'), std::cmp::Reverse(pattern.len()))
        });
        let mut policy = McpPolicy {
            rules: Vec::new(),
            backend: self.backend.clone(),
            failure: self.failure.clone(),
        };
        for (method, name, rule) in added {
            policy = policy.rule(method, name, rule);
        }
        policy.rules.extend(self.rules);
        Ok(policy)
    }
}

fn valid_pattern(pattern: &str) -> bool {
    let body = pattern.strip_suffix("/*").unwrap_or(pattern);
    pattern == "*" || (!body.is_empty() && !body.contains('*'))
}

/// The `[mcp]` table of a configuration file: per-tool and per-method
/// rules, keyed by exact name or `prefix/*`, for
/// [`McpPolicy::overridden_by`].
///
/// ```toml
/// [tools."create_agent"]
/// scopes = ["agents:write"]
/// quota = "30/60s"
/// [tools."admin/*"]
/// role = "admin"
/// [methods."resources/read"]
/// scopes = ["resources"]
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rules for `tools/call`, by tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, RuleConfig>,
    /// Rules for other methods, by method.
    #[serde(default)]
    pub methods: BTreeMap<String, RuleConfig>,
}

/// One rule of a [`PolicyConfig`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Scopes needed (beyond the policy's base scopes).
    pub scopes: Option<Vec<String>>,
    /// Role needed.
    pub role: Option<String>,
    /// Quota per principal and name, such as `30/60s`.
    pub quota: Option<String>,
}

/// Why a [`PolicyConfig`] cannot be used: one line naming the entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{entry}: {reason}")]
pub struct PolicyError {
    entry: String,
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Messages;
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
        let read = Messages::from_value(&read);
        assert_eq!(
            read.pairs(),
            [("resources/read", Some("file:///etc/secret"))]
        );
        let task = serde_json::json!({"method": "tasks/get", "params": {"taskId": "t1"}});
        assert_eq!(
            Messages::from_value(&task).pairs(),
            [("tasks/get", Some("t1"))]
        );
        let init = serde_json::json!({"method": "initialize", "params": {"name": "x"}});
        assert_eq!(Messages::from_value(&init).pairs(), [("initialize", None)]);

        let policy = McpPolicy::empty()
            .allow_role("resources/read", "file:///etc/secret", "admin", ["mcp"])
            .allow("resources/*", "*", ["mcp"]);
        let user = Principal::builder("u", AuthMethod::Jwt)
            .role("user")
            .build();
        let (method, name) = read.pairs()[0];
        assert_eq!(
            policy.check(&user, method, name),
            Err(Refusal::NeedsRole("admin".into()))
        );
    }

    fn key(scopes: &[&str]) -> Principal {
        Principal::builder("u1", AuthMethod::ApiKey)
            .role("user")
            .scopes(scopes.iter().copied())
            .build()
    }

    fn defaults() -> McpPolicy {
        McpPolicy::empty()
            .allow("tools/list", "*", ["mcp"])
            .allow("tools/call", "list_agents", ["mcp", "agents:read"])
            .allow("tools/call", "create_agent", ["mcp", "agents:write"])
    }

    fn file(text: &str) -> PolicyConfig {
        toml::from_str(text).unwrap()
    }

    const KNOWN: &[&str] = &["mcp", "agents", "agents:read", "agents:write", "admin"];

    fn configured(text: &str) -> Result<McpPolicy, PolicyError> {
        defaults().overridden_by(&file(text), |s| KNOWN.contains(&s), &["mcp"])
    }

    /// A refusal names every scope the message needs, not the first
    /// missing one; a parent scope grants its children.
    #[test]
    fn refusals_name_every_scope_and_parents_grant_children() {
        let policy = defaults();
        let reader = key(&["mcp", "agents:read"]);
        assert_eq!(
            policy.check(&reader, "tools/call", Some("list_agents")),
            Ok(())
        );
        assert_eq!(
            policy.check(&reader, "tools/call", Some("create_agent")),
            Err(Refusal::NeedsScope(vec![
                "mcp".into(),
                "agents:write".into()
            ]))
        );
        assert_eq!(
            policy.check(&key(&[]), "tools/call", Some("create_agent")),
            Err(Refusal::NeedsScope(vec![
                "mcp".into(),
                "agents:write".into()
            ]))
        );
        let parent = key(&["mcp", "agents"]);
        assert!(policy.may_call_tool(&parent, "list_agents"));
        assert!(policy.may_call_tool(&parent, "create_agent"));
        assert!(!policy.may_call_tool(&reader, "create_agent"));
        assert!(!policy.may_call_tool(&parent, "unknown_tool"));
    }

    #[test]
    fn the_file_overrides_and_extends_the_defaults() {
        let policy = configured(
            r#"
            [tools."create_agent"]
            quota = "3/60s"
            [tools."admin/*"]
            role = "admin"
            [tools."admin/reset"]
            scopes = ["admin"]
            [tools."list_agents"]
            scopes = ["agents"]
            "#,
        )
        .unwrap();
        // A quota alone keeps the scope the default rule needed.
        assert_eq!(
            policy.check(&key(&["mcp"]), "tools/call", Some("create_agent")),
            Err(Refusal::NeedsScope(vec![
                "mcp".into(),
                "agents:write".into()
            ]))
        );
        // Scopes given replace the default's (plus the base scopes).
        assert_eq!(
            policy.check(
                &key(&["mcp", "agents:read"]),
                "tools/call",
                Some("list_agents")
            ),
            Err(Refusal::NeedsScope(vec!["mcp".into(), "agents".into()]))
        );
        // A prefix rule names tools no default knows; an exact rule under it
        // is more specific and decides for its tool.
        let admin = Principal::builder("a", AuthMethod::Jwt)
            .role("admin")
            .build();
        let user = Principal::builder("u", AuthMethod::Jwt)
            .role("user")
            .build();
        assert!(policy.may_call_tool(&admin, "admin/purge"));
        assert_eq!(
            policy.check(&user, "tools/call", Some("admin/purge")),
            Err(Refusal::NeedsRole("admin".into()))
        );
        assert!(policy.may_call_tool(&user, "admin/reset"));
        assert!(!policy.may_call_tool(&key(&["mcp"]), "admin/reset"));
        assert!(!policy.may_call_tool(&admin, "adminx"));
    }

    #[test]
    fn a_bad_file_is_one_line_naming_its_entry() {
        for (text, message) in [
            (
                "[tools.x]\nscopes = [\"agentz\"]",
                "mcp.tools.\"x\": unknown scope `agentz`",
            ),
            (
                "[tools.x]\nquota = \"3 per minute\"",
                "mcp.tools.\"x\": quota \"3 per minute\": ",
            ),
            (
                "[methods.\"a*b\"]\nrole = \"admin\"",
                "mcp.methods.\"a*b\": expected an exact name, `prefix/*` or `*`",
            ),
            (
                "[tools.\"/*\"]\nrole = \"admin\"",
                "mcp.tools.\"/*\": expected an exact name, `prefix/*` or `*`",
            ),
        ] {
            let error = configured(text).unwrap_err().to_string();
            assert!(error.starts_with(message), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
        assert!(toml::from_str::<PolicyConfig>("[tools.x]\nscope = [\"mcp\"]").is_err());
    }

    /// Quotas count per caller and tool, only for what they name.
    #[tokio::test]
    async fn quotas_count_per_caller_and_tool() {
        let policy = configured("[tools.\"create_agent\"]\nquota = \"3/60s\"").unwrap();
        let alice = key(&["mcp", "agents"]);
        let bob = Principal::builder("u2", AuthMethod::ApiKey)
            .scopes(["mcp", "agents"])
            .build();
        for _ in 0..3 {
            assert!(matches!(
                policy
                    .meter(&alice, "tools/call", Some("create_agent"))
                    .await,
                Metered::Allowed(..)
            ));
        }
        match policy
            .meter(&alice, "tools/call", Some("create_agent"))
            .await
        {
            Metered::Limited(limiter, decision) => {
                assert_eq!(limiter.policy().name(), "tool:create_agent");
                assert!(!decision.allowed);
                let response: http::Response<bytes::Bytes> = limiter.refusal(&decision);
                assert_eq!(response.status(), 429);
                assert!(response.headers().contains_key("retry-after"));
            }
            other => panic!("expected the fourth call refused, got {other:?}"),
        }
        assert!(matches!(
            policy.meter(&bob, "tools/call", Some("create_agent")).await,
            Metered::Allowed(..)
        ));
        assert!(matches!(
            policy
                .meter(&alice, "tools/call", Some("list_agents"))
                .await,
            Metered::Unmetered
        ));
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
            Err(Refusal::NeedsScope(vec!["mcp".into()]))
        );
    }
}
