//! Keyset pagination: one page of a list ordered by a unique key.

use serde::Serialize;

/// One page of a list ordered by a unique key (keyset pagination), and the
/// cursor of the next page: the key of this page's last item, present only
/// when more items follow.
///
/// Stores fetch `limit + 1` rows after the cursor and hand them to
/// [`Page::from_overfetch`], which keeps `limit` and knows from the extra
/// row whether there is a next page, so no second query counts what is
/// left. It serialises as the contract's `{"items": [...], "nextCursor": ...}`.
///
/// ```
/// use mcp_core::Page;
///
/// // Three rows fetched for a limit of 2: a next page exists.
/// let page = Page::from_overfetch(vec![1, 2, 3], 2, |n| *n);
/// assert_eq!(page.items, [1, 2]);
/// assert_eq!(page.next_cursor, Some(2));
/// // Two rows for a limit of 2: this is the last page.
/// let last = Page::from_overfetch(vec![3, 4], 2, |n| *n);
/// assert_eq!(last.next_cursor, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T, C> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// The key to pass as the next cursor, if more items follow.
    pub next_cursor: Option<C>,
}

impl<T, C> Page<T, C> {
    /// The page of `limit` items from `rows` (fetched as `limit + 1`), its
    /// next cursor taken from the last kept item by `cursor_of`.
    pub fn from_overfetch(mut rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> C) -> Self {
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_of_zero_keeps_nothing_and_points_at_nothing() {
        let page = Page::from_overfetch(vec![1], 0, |n: &i32| *n);
        assert!(page.items.is_empty());
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn a_full_last_page_points_at_nothing() {
        let last = Page::from_overfetch(vec![3, 4], 2, |n: &i32| *n);
        assert_eq!(last.items, [3, 4]);
        assert_eq!(last.next_cursor, None);
        let more = Page::from_overfetch(vec![1, 2, 3], 2, |n: &i32| *n);
        assert_eq!(more.next_cursor, Some(2));
    }

    #[test]
    fn serialises_as_the_contract() {
        let page = Page::from_overfetch(vec!["a", "b"], 1, |s| s.to_string());
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            serde_json::json!({"items": ["a"], "nextCursor": "a"})
        );
    }
}
