//! Listing through a real node: 10,000 keys with mixed prefixes and
//! delimiters paginate to exactly what a sorted in-memory model gives.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use predastore_core::meta::{ListRequest, Precondition};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::cluster::*;

fn keys() -> BTreeSet<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut out = BTreeSet::new();
    while out.len() < 10_000 {
        let i = rnd(100_000);
        let k = match rnd(8) {
            0 => format!("photos/2024/{:02}/img{i}.jpg", rnd(12)),
            1 => format!("logs/{i}"),
            2 => format!("a{i}"),
            3 => format!("a/b/{}/{i}", rnd(20)),
            4 => format!("docs/{}/", rnd(3000)),
            5 => format!("ü/{i}-x-{}", rnd(5)),
            6 => format!("x-y-{}-{i}", rnd(40)),
            _ => format!("{i}"),
        };
        out.insert(k);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Key(String),
    Prefix(String),
}

fn name(i: &Item) -> &str {
    match i {
        Item::Key(k) | Item::Prefix(k) => k,
    }
}

fn model(
    keys: &BTreeSet<String>,
    prefix: &str,
    delim: Option<&str>,
    after: Option<&str>,
) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for k in keys {
        if !k.starts_with(prefix) || after.is_some_and(|a| k.as_str() <= a) {
            continue;
        }
        let item = match delim.and_then(|d| k[prefix.len()..].find(d).map(|p| (d, p))) {
            Some((d, p)) => Item::Prefix(k[..prefix.len() + p + d.len()].to_string()),
            None => Item::Key(k.clone()),
        };
        if out.last() != Some(&item) {
            out.push(item);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_matches_a_sorted_model() {
    let c = Cluster::start(&[0], &[]).await;
    c.wait_leader(Duration::from_secs(20)).await;
    let client = Arc::new(c.client());
    client.create_bucket(bucket("ls-bucket")).await.unwrap();
    let all = keys();
    let list: Vec<String> = all.iter().cloned().collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, list, next) = (Arc::clone(&client), list.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(k) = list.get(i) else { return };
                client
                    .put_object("ls-bucket", k, record(i as u128, i as u64), Precondition::None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let prefixes = ["", "a", "a/", "a/b/1", "photos/2024/", "ü", "docs/", "x-", "zzz", "logs/1"];
    let delims = [None, Some("/"), Some("-"), Some("/2"), Some("ü")];
    let picks: Vec<String> = list.iter().step_by(97).cloned().collect();
    let strategy = (
        0..prefixes.len(),
        0..delims.len(),
        proptest::option::of(0..picks.len()),
        prop_oneof![Just(0u32), 1u32..40, 40u32..1100],
    );
    let handle = tokio::runtime::Handle::current();
    let mut runner =
        TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(p, d, a, max)| {
            let (prefix, delim) = (prefixes[p], delims[d]);
            let after = a.map(|i| picks[i].clone());
            let want = model(&all, prefix, delim, after.as_deref());
            let mut got = Vec::new();
            let mut cont = None;
            let page_max = if max == 0 { 1000 } else { max.min(1000) } as usize;
            loop {
                let req = ListRequest {
                    bucket: "ls-bucket".into(),
                    prefix: prefix.into(),
                    delimiter: delim.map(str::to_string),
                    start_after: after.clone(),
                    continuation: cont.take(),
                    max_keys: max,
                };
                let page = handle.block_on(client.list(req)).unwrap();
                let mut items: Vec<Item> = page
                    .objects
                    .into_iter()
                    .map(|o| Item::Key(o.key))
                    .chain(page.common_prefixes.into_iter().map(Item::Prefix))
                    .collect();
                items.sort_by(|a, b| name(a).as_bytes().cmp(name(b).as_bytes()));
                prop_assert!(items.len() <= page_max);
                let last = page.next_continuation.is_none();
                prop_assert!(last || items.len() == page_max, "short page before the end");
                got.extend(items);
                match page.next_continuation {
                    Some(c) => cont = Some(c),
                    None => break,
                }
            }
            prop_assert_eq!(got, want);
            Ok(())
        })
    });
    result.unwrap();
}
