//! Listing pages: prefix, delimiter, markers and max-keys over any ordered
//! key source. Pure, so every backend lists the same way and the logic is
//! checked against a `BTreeMap` model in property tests.
//!
//! Pagination is by key: the page's `next_marker` is the last key or common
//! prefix returned, and the next page starts strictly after it. That is
//! stable while objects are added or removed: nothing before the marker is
//! repeated and nothing after it is skipped.

use std::ops::Bound;

use time::OffsetDateTime;

/// What a listing asks for (ListObjects v1/v2, ListObjectVersions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Start strictly after this key (marker, start-after or the decoded
    /// continuation token, whichever is greatest).
    pub after: Option<String>,
    /// At most this many keys + common prefixes (callers cap it at 1000).
    pub max_keys: usize,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub key: String,
    pub size: u64,
    /// Hex ETag without quotes.
    pub etag: String,
    pub last_modified: OffsetDateTime,
    pub storage_class: String,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListEntry>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// Last key or common prefix returned when truncated: where the next
    /// page starts (exclusive).
    pub next_marker: Option<String>,
}

/// An ordered source of keys that can start at any point.
pub trait KeySource {
    /// Entries with key within `from..` in ascending byte order.
    fn entries_from(&self, from: Bound<&str>) -> Box<dyn Iterator<Item = ListEntry> + '_>;
}

/// The least string greater than every string that starts with `prefix`,
/// or `None` when no such string exists. Byte order of UTF-8 is code point
/// order, so bumping the last char is enough.
pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Builds one page from `source`.
pub fn list_page(source: &dyn KeySource, q: &ListQuery) -> ListPage {
    let mut page = ListPage::default();
    if q.max_keys == 0 {
        return page;
    }
    // Where to start: after the marker, but never before the prefix.
    let mut start: Option<String> = q.after.clone();
    let mut inclusive_start: Option<String> = None;
    if start.as_deref().is_none_or(|a| a < q.prefix.as_str()) {
        start = None;
        inclusive_start = Some(q.prefix.clone());
    }
    let mut count = 0usize;
    'seek: loop {
        let from = match (&start, &inclusive_start) {
            (Some(s), _) => Bound::Excluded(s.as_str()),
            (None, Some(s)) => Bound::Included(s.as_str()),
            (None, None) => Bound::Unbounded,
        };
        for entry in source.entries_from(from) {
            if !entry.key.starts_with(&q.prefix) {
                if entry.key.as_str() > q.prefix.as_str() {
                    break 'seek;
                }
                continue;
            }
            let rest = &entry.key[q.prefix.len()..];
            if let Some(d) = q.delimiter.as_deref().filter(|d| !d.is_empty())
                && let Some(pos) = rest.find(d)
            {
                let cp = entry.key[..q.prefix.len() + pos + d.len()].to_string();
                // A prefix at or before the marker was returned on an
                // earlier page: skip its keys without counting it again.
                if q.after.as_deref().is_none_or(|a| cp.as_str() > a) {
                    if count == q.max_keys {
                        page.is_truncated = true;
                        break 'seek;
                    }
                    count += 1;
                    page.next_marker = Some(cp.clone());
                    page.common_prefixes.push(cp.clone());
                }
                // Skip everything under this common prefix in one seek.
                match prefix_successor(&cp) {
                    Some(succ) => {
                        start = None;
                        inclusive_start = Some(succ);
                        continue 'seek;
                    }
                    None => break 'seek,
                }
            }
            if count == q.max_keys {
                page.is_truncated = true;
                break 'seek;
            }
            count += 1;
            page.next_marker = Some(entry.key.clone());
            page.objects.push(entry);
        }
        break;
    }
    if !page.is_truncated {
        page.next_marker = None;
    }
    page
}

/// A `BTreeMap` of entries is a key source (used by the fs index and the
/// property tests' model).
impl KeySource for std::collections::BTreeMap<String, ListEntry> {
    fn entries_from(&self, from: Bound<&str>) -> Box<dyn Iterator<Item = ListEntry> + '_> {
        Box::new(self.range::<str, _>((from, Bound::Unbounded)).map(|(_, e)| e.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entry(key: &str) -> ListEntry {
        ListEntry {
            key: key.into(),
            size: 1,
            etag: "e".into(),
            last_modified: OffsetDateTime::UNIX_EPOCH,
            storage_class: "STANDARD".into(),
        }
    }

    fn source(keys: &[&str]) -> BTreeMap<String, ListEntry> {
        keys.iter().map(|k| (k.to_string(), entry(k))).collect()
    }

    fn q(prefix: &str, delim: Option<&str>, after: Option<&str>, max: usize) -> ListQuery {
        ListQuery {
            prefix: prefix.into(),
            delimiter: delim.map(Into::into),
            after: after.map(Into::into),
            max_keys: max,
        }
    }

    /// The obvious O(n) definition of a listing, to check the seeking one.
    fn model(keys: &[String], q: &ListQuery) -> (Vec<String>, Vec<String>, bool) {
        let mut items: Vec<(String, bool)> = Vec::new();
        for k in keys {
            if !k.starts_with(&q.prefix) {
                continue;
            }
            let item = match q.delimiter.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => match k[q.prefix.len()..].find(d) {
                    Some(p) => (k[..q.prefix.len() + p + d.len()].to_string(), true),
                    None => (k.clone(), false),
                },
                None => (k.clone(), false),
            };
            if items.last() != Some(&item) {
                items.push(item);
            }
        }
        let items: Vec<_> =
            items.into_iter().filter(|(k, _)| q.after.as_ref().is_none_or(|a| k > a)).collect();
        let truncated = items.len() > q.max_keys && q.max_keys > 0;
        let page: Vec<_> = items.into_iter().take(q.max_keys).collect();
        let objs = page.iter().filter(|(_, cp)| !cp).map(|(k, _)| k.clone()).collect();
        let cps = page.iter().filter(|(_, cp)| *cp).map(|(k, _)| k.clone()).collect();
        (objs, cps, truncated)
    }

    #[test]
    fn delimiter_groups_and_pages() {
        let s = source(&["a", "a/b", "a/c", "b/x/y", "b/z", "c"]);
        let p = list_page(&s, &q("", Some("/"), None, 1000));
        let keys: Vec<_> = p.objects.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(p.common_prefixes, ["a/", "b/"]);
        assert!(!p.is_truncated);

        let p = list_page(&s, &q("", Some("/"), None, 2));
        assert!(p.is_truncated);
        assert_eq!(p.next_marker.as_deref(), Some("a/"));
        let p2 = list_page(&s, &q("", Some("/"), p.next_marker.as_deref(), 2));
        assert_eq!(p2.common_prefixes, ["b/"]);
        assert_eq!(p2.objects[0].key, "c");
        assert!(!p2.is_truncated);
    }

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("").as_deref(), None);
        let max = char::MAX.to_string();
        assert_eq!(prefix_successor(&format!("a{max}")).as_deref(), Some("b"));
    }

    proptest! {
        #[test]
        fn pages_match_the_model(
            keys in proptest::collection::btree_set("[ab/._é-]{0,6}", 0..60),
            prefix in "[ab/]{0,2}",
            delim in proptest::option::of(prop_oneof!["/", "b", "/a"]),
            max in 1usize..7,
        ) {
            let keys: Vec<String> = keys.into_iter().collect();
            let src: BTreeMap<String, ListEntry> =
                keys.iter().map(|k| (k.clone(), entry(k))).collect();
            // Walk every page and compare with the model's full listing.
            let mut after: Option<String> = None;
            let mut got_objs = Vec::new();
            let mut got_cps = Vec::new();
            for _ in 0..200 {
                let query = ListQuery { prefix: prefix.clone(), delimiter: delim.clone(), after: after.clone(), max_keys: max };
                let page = list_page(&src, &query);
                let (mo, mc, mt) = model(&keys, &query);
                let objs: Vec<String> = page.objects.iter().map(|e| e.key.clone()).collect();
                prop_assert_eq!(&objs, &mo);
                prop_assert_eq!(&page.common_prefixes, &mc);
                prop_assert_eq!(page.is_truncated, mt);
                got_objs.extend(objs);
                got_cps.extend(page.common_prefixes.clone());
                if !page.is_truncated { break; }
                after = page.next_marker.clone();
            }
            let all = ListQuery { prefix: prefix.clone(), delimiter: delim.clone(), after: None, max_keys: usize::MAX };
            let (mo, mc, _) = model(&keys, &all);
            prop_assert_eq!(got_objs, mo);
            prop_assert_eq!(got_cps, mc);
        }
    }
}
