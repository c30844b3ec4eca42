//! Garbage collection of shards: what the metadata plane says nothing
//! references any more ([`GarbageRecord`]s), and writes whose gateway died
//! before committing ([`IntentRecord`](predastore_core::meta::IntentRecord)s older than a deadline).
//!
//! Freed chunks wait out a grace period first, so a GET of a replaced or
//! deleted version that is still streaming is not cut short; then this
//! loop deletes them (retrying while a node is down) and sweeps abandoned
//! writes by listing each node's shards of the owner.
//!
//! Ages are measured by this gateway's own monotonic clock, from the
//! round that first saw an entry — never by comparing the log time an
//! entry carries (the leader's wall clock) with this gateway's wall
//! clock: a gateway clock running an hour ahead would otherwise delete
//! garbage still being read at once, or sweep a live write. A restarted
//! gateway waits a full grace again, which only delays collection. Every
//! gateway runs it; deletes are idempotent, so two collectors at once only
//! repeat work. Entries leave the metadata plane only after their shards
//! are gone, so nothing is leaked by a crash at any point.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use predastore_core::client::ShardError;
use predastore_core::meta::{Command, GarbageRecord, Query, Reply};
use predastore_core::shard::ShardId;

use super::Inner;

/// When the collector looks and how long it leaves entries alone.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Pause between rounds.
    pub every: Duration,
    /// Freed chunks younger than this are kept: a GET of the version that
    /// referenced them may still be streaming. A read that takes longer
    /// than this after its object was replaced can fail mid-stream.
    pub grace: Duration,
    /// A write intent not renewed for this long belongs to a dead
    /// gateway (running writes renew theirs every [`INTENT_RENEW_EVERY`]).
    pub intent_ttl: Duration,
}

/// How often a running write re-records its intent: a sixth of the
/// default intent TTL, so several renewals may fail before a live write
/// looks abandoned.
pub const INTENT_RENEW_EVERY: Duration = Duration::from_secs(3600);

impl Default for Schedule {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            grace: Duration::from_secs(15 * 60),
            intent_ttl: INTENT_RENEW_EVERY * 6,
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

/// An entry the collector waits on: garbage freed at a log time, or an
/// intent recorded (or renewed) at a log time. A renewal is a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aged {
    Freed { owner: u128, since_ms: u64 },
    Intent { owner: u128, started_ms: u64 },
}

/// When this gateway first saw each entry still on record.
#[derive(Debug, Default)]
pub struct FirstSeen(Mutex<HashMap<Aged, Instant>>);

impl FirstSeen {
    /// Whether `entry` has been on record for `wait` of this gateway's
    /// time, noting it as seen in `round`.
    fn waited(&self, entry: Aged, now: Instant, wait: Duration, round: &mut Vec<Aged>) -> bool {
        round.push(entry);
        let mut seen = self.0.lock().expect("first-seen map poisoned");
        let first = *seen.entry(entry).or_insert(now);
        waited(first, now, wait)
    }

    /// Forgets entries a complete round no longer found (collected,
    /// committed or renewed), so the map stays as small as the backlog.
    fn keep_only(&self, round: &[Aged]) {
        let keep: std::collections::HashSet<&Aged> = round.iter().collect();
        self.0.lock().expect("first-seen map poisoned").retain(|k, _| keep.contains(k));
    }
}

/// Whether something first seen at `first` has waited `wait` by `now`.
pub fn waited(first: Instant, now: Instant, wait: Duration) -> bool {
    now.saturating_duration_since(first) >= wait
}

/// One round: pages through all garbage and intents (by owner id), deletes
/// garbage past its grace and abandons stale intents. Entries whose deletes
/// fail are passed over, so they never block the rest.
pub async fn round(inner: &Inner, schedule: Schedule) -> Result<Round, String> {
    let now = Instant::now();
    let mut seen = Vec::new();
    let (mut after_freed, mut after_intent) = (None, None);
    let mut done = Round::default();
    loop {
        let q = Query::GarbagePage { after_freed, after_intent, limit: PAGE };
        let reply = inner.meta.read(q).await.map_err(|e| e.to_string())?;
        let Reply::Garbage { freed, intents } = reply else {
            return Err(format!("unexpected reply {reply:?}"));
        };
        if freed.is_empty() && intents.is_empty() {
            inner.gc_first_seen.keep_only(&seen);
            return Ok(done);
        }
        // An empty side is done: park its cursor past every owner id.
        after_freed = Some(freed.last().map_or(u128::MAX, |g| g.owner));
        after_intent = Some(intents.last().map_or(u128::MAX, |i| i.owner));
        let first_seen = &inner.gc_first_seen;
        let old: Vec<GarbageRecord> = freed
            .into_iter()
            .filter(|g| {
                let entry = Aged::Freed { owner: g.owner, since_ms: g.since_ms };
                first_seen.waited(entry, now, schedule.grace, &mut seen)
            })
            .collect();
        let r = free(inner, old).await;
        done.chunks += r.chunks;
        done.swept += r.swept;
        let stale: Vec<_> = intents
            .into_iter()
            .filter(|i| {
                let entry = Aged::Intent { owner: i.owner, started_ms: i.started_ms };
                first_seen.waited(entry, now, schedule.intent_ttl, &mut seen)
            })
            .collect();
        for i in stale {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_age_by_this_gateways_clock_from_first_sight() {
        let seen = FirstSeen::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(900);
        // Log time says the entry is ancient (a leader clock far behind):
        // irrelevant, it waits a full grace from when it was first seen.
        let e = Aged::Freed { owner: 7, since_ms: 0 };
        let mut round = Vec::new();
        assert!(!seen.waited(e, t0, grace, &mut round));
        assert!(!seen.waited(e, t0 + grace / 2, grace, &mut round));
        assert!(seen.waited(e, t0 + grace, grace, &mut round));
        // A renewed intent is a new entry: its wait starts over.
        let first = Aged::Intent { owner: 9, started_ms: 1 };
        let renewed = Aged::Intent { owner: 9, started_ms: 2 };
        assert!(!seen.waited(first, t0, grace, &mut round));
        seen.keep_only(&[e]);
        assert!(!seen.waited(renewed, t0 + grace * 2, grace, &mut round), "a renewal resets");
        assert!(seen.waited(e, t0 + grace * 2, grace, &mut round), "kept entries keep their age");
        assert!(waited(t0, t0, Duration::ZERO), "no grace: due at once");
    }
}
