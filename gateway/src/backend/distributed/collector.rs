//! Garbage collection of shards: what the metadata plane says nothing
//! references any more ([`GarbageRecord`]s), and writes whose gateway died
//! before committing ([`IntentRecord`](predastore_core::meta::IntentRecord)s older than a deadline).
//!
//! Freed chunks wait out a grace period first, so a GET of a replaced or
//! deleted version that is still streaming is not cut short; then this
//! loop deletes them (retrying while a node is down) and sweeps abandoned
//! writes by listing each node's shards of the owner. Every
//! gateway runs it; deletes are idempotent, so two collectors at once only
//! repeat work. Entries leave the metadata plane only after their shards
//! are gone, so nothing is leaked by a crash at any point.

use std::sync::Arc;
use std::time::Duration;

use predastore_core::client::ShardError;
use predastore_core::meta::{Command, GarbageRecord, Query, Reply};
use predastore_core::shard::ShardId;

use super::Inner;
use super::record::millis;
use crate::backend::rules::now_millis;

/// When the collector looks and how long it leaves entries alone.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Pause between rounds.
    pub every: Duration,
    /// Freed chunks younger than this are kept: a GET of the version that
    /// referenced them may still be streaming. A read that takes longer
    /// than this after its object was replaced can fail mid-stream.
    pub grace: Duration,
    /// A write intent older than this belongs to a dead gateway (or an
    /// upload slower than any client waits for).
    pub intent_ttl: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            grace: Duration::from_secs(15 * 60),
            intent_ttl: Duration::from_secs(6 * 3600),
        }
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Chunks whose shards were all deleted.
    pub chunks: usize,
    /// Owners swept by listing the nodes.
    pub swept: usize,
    /// Intents abandoned as stale.
    pub abandoned: usize,
}

/// Runs rounds forever (until the task is aborted).
pub async fn run(inner: Arc<Inner>, schedule: Schedule) {
    loop {
        tokio::time::sleep(schedule.every).await;
        if !inner.ready.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        match round(&inner, schedule).await {
            Ok(r) if r != Round::default() => tracing::info!(?r, "garbage collected"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "garbage collection round failed"),
        }
    }
}

/// One round: pages through all garbage and intents (by owner id), deletes
/// garbage past its grace and abandons stale intents. Entries whose deletes
/// fail are passed over, so they never block the rest.
pub async fn round(inner: &Inner, schedule: Schedule) -> Result<Round, String> {
    let now = millis(now_millis());
    let grace = schedule.grace.as_millis() as u64;
    let ttl = schedule.intent_ttl.as_millis() as u64;
    let (mut after_freed, mut after_intent) = (None, None);
    let mut done = Round::default();
    loop {
        let q = Query::GarbagePage { after_freed, after_intent, limit: PAGE };
        let reply = inner.meta.read(q).await.map_err(|e| e.to_string())?;
        let Reply::Garbage { freed, intents } = reply else {
            return Err(format!("unexpected reply {reply:?}"));
        };
        if freed.is_empty() && intents.is_empty() {
            return Ok(done);
        }
        // An empty side is done: park its cursor past every owner id.
        after_freed = Some(freed.last().map_or(u128::MAX, |g| g.owner));
        after_intent = Some(intents.last().map_or(u128::MAX, |i| i.owner));
        let old: Vec<GarbageRecord> =
            freed.into_iter().filter(|g| now.saturating_sub(g.since_ms) >= grace).collect();
        let r = free(inner, old).await;
        done.chunks += r.chunks;
        done.swept += r.swept;
        for i in intents.into_iter().filter(|i| now.saturating_sub(i.started_ms) >= ttl) {
            tracing::info!(owner = %format!("{:032x}", i.owner), bucket = %i.bucket, key = %i.key,
                "abandoning a write that never committed");
            inner
                .meta
                .write_freeing(Command::AbandonIntent { owner: i.owner })
                .await
                .map_err(|e| e.to_string())?;
            // Its sweep record is collected once past the grace.
            done.abandoned += 1;
        }
    }
}

/// Garbage and intents read per metadata request.
const PAGE: u32 = 256;

/// Deletes the shards of `freed` and forgets what is fully deleted.
/// Whatever fails stays on record for a later round.
pub async fn free(inner: &Inner, freed: Vec<GarbageRecord>) -> Round {
    let mut chunks = Vec::new();
    let mut owners = Vec::new();
    for g in freed {
        if g.chunks.is_empty() {
            match sweep(inner, g.owner).await {
                Ok(()) => owners.push(g.owner),
                Err(e) => tracing::warn!(owner = %format!("{:032x}", g.owner), error = %e,
                    "sweeping an abandoned write; will retry"),
            }
            continue;
        }
        let failed = inner.data.delete_object(&g.chunks).await;
        for c in &g.chunks {
            if failed.iter().all(|f| f.shard.chunk != c.chunk) {
                chunks.push((g.owner, c.chunk));
            }
        }
        if !failed.is_empty() {
            tracing::warn!(owner = %format!("{:032x}", g.owner), failed = failed.len(),
                "some freed shards could not be deleted; will retry");
        }
    }
    let round = Round { chunks: chunks.len(), swept: owners.len(), abandoned: 0 };
    if (!chunks.is_empty() || !owners.is_empty())
        && let Err(e) = inner.meta.write(Command::ForgetGarbage { chunks, owners }).await
    {
        // The shards are gone; the entries are retried and find nothing.
        tracing::warn!(error = %e, "recording deleted garbage");
    }
    round
}

/// Deletes every shard of `owner` on every node, found by listing.
async fn sweep(inner: &Inner, owner: u128) -> Result<(), ShardError> {
    let client = inner.data.client();
    for node in &inner.nodes() {
        let mut after =
            owner.checked_sub(1).map(|o| ShardId { object: o, chunk: u32::MAX, index: u8::MAX });
        loop {
            let (shards, more) = client.list(node, after, 1000).await?;
            let mine: Vec<ShardId> =
                shards.iter().map(|s| s.id).take_while(|s| s.object == owner).collect();
            let stop = !more || mine.is_empty() || mine.len() < shards.len();
            for s in &mine {
                match client.delete(node, *s).await {
                    Ok(()) | Err(ShardError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if stop {
                break;
            }
            after = mine.last().copied();
        }
    }
    Ok(())
}
