//! Keyset pagination, the same everywhere: `?limit=&cursor=` in, `{items,
//! next_cursor}` out. A cursor is the sort key of the last item of a page,
//! encoded opaquely (base64url of JSON), so a client passes it back and
//! never builds one; a page never skips or repeats rows that were there
//! when the listing began, however rows are added meanwhile.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::FieldErrors;
use crate::problem::Problem;

/// The page size when the client does not say.
pub const DEFAULT_LIMIT: u32 = 20;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 50;

/// One page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a client asked for: how many, after which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// The sort key of the last item of the previous page.
    pub after: Option<K>,
}

impl<K: DeserializeOwned> PageRequest<K> {
    /// Checks `limit` and decodes `cursor`; a 422 names each that is wrong.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Problem> {
        let mut errors = FieldErrors::new();
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.add("limit", format!("must be between 1 and {MAX_LIMIT}"));
        }
        let after = match cursor {
            None => None,
            Some(c) => {
                let decoded = URL_SAFE_NO_PAD.decode(c).ok().and_then(|b| serde_json::from_slice::<K>(&b).ok());
                if decoded.is_none() {
                    errors.add("cursor", "is not a cursor this API returned");
                }
                decoded
            }
        };
        errors.finish()?;
        Ok(Self { limit, after })
    }

    /// The limit as SQL binds it.
    pub fn sql_limit(&self) -> i64 {
        i64::from(self.limit)
    }
}

impl<T> Page<T> {
    /// The page of `rows` (as the store returned them, at most
    /// `request.limit`), with the cursor after the last one when the page
    /// is full: a short page is the last.
    pub fn of<R, K: Serialize>(
        rows: Vec<R>,
        request: &PageRequest<K>,
        key: impl Fn(&R) -> K,
        item: impl Fn(R) -> T,
    ) -> Self {
        let next_cursor = if rows.len() < request.limit as usize {
            None
        } else {
            rows.last().and_then(|r| serde_json::to_vec(&key(r)).ok()).map(|b| URL_SAFE_NO_PAD.encode(b))
        };
        Self { items: rows.into_iter().map(item).collect(), next_cursor }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_full_page_has_a_cursor_that_decodes_to_its_last_key() {
        let request = PageRequest::<(String, u32)>::parse(Some(2), None).unwrap();
        let page = Page::of(vec![("a", 1), ("b", 2)], &request, |r| (r.0.to_owned(), r.1), |r| r.1);
        assert_eq!(page.items, vec![1, 2]);
        let next = PageRequest::<(String, u32)>::parse(Some(2), page.next_cursor.as_deref()).unwrap();
        assert_eq!(next.after, Some(("b".to_owned(), 2)));
        let last = Page::of(vec![("c", 3)], &next, |r| (r.0.to_owned(), r.1), |r| r.1);
        assert!(last.next_cursor.is_none());
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        let p = PageRequest::<u32>::parse(Some(0), Some("%%%")).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors.len(), 2);
        assert!(PageRequest::<u32>::parse(Some(MAX_LIMIT + 1), None).is_err());
        assert_eq!(PageRequest::<u32>::parse(None, None).unwrap().limit, DEFAULT_LIMIT);
    }
}
