//! Properties of the scope hierarchy, over generated scopes: the one rule
//! every scope check and the key-grant rule go through.

use mcp_core::{AuthMethod, Principal, scope_grants, scopes_grant};
use proptest::prelude::*;

/// Scopes as MCP clients send them, with the edge cases that matter here:
/// empty segments, a trailing `:`, segments that are prefixes of others.
fn scope() -> impl Strategy<Value = String> {
    prop::collection::vec("(a|ab|b|agents|agent|read|write|)", 0..4).prop_map(|s| s.join(":"))
}

proptest! {
    /// The rule, stated once: a scope grants itself and what lies below it
    /// by whole `:` segments, and nothing else.
    #[test]
    fn grants_exactly_itself_and_its_descendants(held in scope(), needed in scope()) {
        let expected = needed == held
            || (!held.is_empty() && needed.starts_with(&format!("{held}:")));
        prop_assert_eq!(scope_grants(&held, &needed), expected);
    }

    #[test]
    fn the_hierarchy_is_transitive(a in scope(), b in scope(), c in scope()) {
        if scope_grants(&a, &b) && scope_grants(&b, &c) {
            prop_assert!(scope_grants(&a, &c), "{a} -> {b} -> {c}");
        }
    }

    /// A child never grants its parent, and two different scopes never
    /// grant each other.
    #[test]
    fn a_child_never_grants_its_parent(a in scope(), child in "[a-z]{1,6}") {
        let below = format!("{a}:{child}");
        prop_assert!(!scope_grants(&below, &a));
        if scope_grants(&a, &below) {
            prop_assert!(!scope_grants(&below, &a));
        }
    }

    /// A principal's check is the same rule over every scope it holds;
    /// an unrestricted one holds them all.
    #[test]
    fn a_principal_checks_by_the_same_rule(held in prop::collection::vec(scope(), 0..4), needed in scope()) {
        let restricted = Principal::builder("user-1", AuthMethod::ApiKey).scopes(held.clone()).build();
        prop_assert_eq!(
            restricted.has_scope(&needed),
            scopes_grant(held.iter().map(String::as_str), &needed)
        );
        let unrestricted = Principal::builder("user-1", AuthMethod::ApiKey).build();
        prop_assert!(unrestricted.has_scope(&needed));
    }
}
