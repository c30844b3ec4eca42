//! Safe rejoin (issue 11 item 5): a node whose whole data directory is
//! wiped comes back under the same id. It must not vote or form a group
//! before the leader has readmitted it as a learner, so no committed
//! record is lost whatever else fails meanwhile.

use std::sync::Arc;
use std::time::Duration;

use predastore_core::meta::Precondition;
use predastore_node::meta::Status;
use tokio::time::Instant;

use crate::cluster::*;

/// Kills node `id`, deletes its data directory and starts it empty.
async fn wipe(c: &mut Cluster, id: u64) {
    c.kill(id).await;
    c.dirs.insert(id, tempfile::tempdir().unwrap());
    c.start_node(id).await;
}

/// Waits until node `id` is admitted and `leader` (which readmitted it,
/// demoting it to a learner first) has made it a voter again.
async fn rejoined(c: &Cluster, id: u64, leader: u64) {
    let within = Duration::from_secs(60);
    c.wait_status(id, within, "admitted", |s| s.admitted).await;
    c.wait_status(leader, within, "a voter again", |s| {
        s.voters == vec![0, 1, 2] && s.learners.is_empty()
    })
    .await;
    c.wait_status(id, within, "knows it is a voter", |s| s.voters == vec![0, 1, 2]).await;
}

/// For `during`, node `id` must keep `check`; fails at the first miss.
async fn holds(
    c: &Cluster,
    id: u64,
    during: Duration,
    what: &str,
    check: impl Fn(&Status) -> bool,
) {
    let until = Instant::now() + during;
    while Instant::now() < until {
        if let Some(s) = c.status(id).await {
            assert!(check(&s), "node {id}: {what}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_wiped_voter_rejoins_as_a_learner_and_votes_again_once_caught_up() {
    let mut c = Cluster::start(&[0, 1, 2], &["--raft-snapshot-logs", "200"]).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let client = Arc::new(c.client());
    client.create_bucket(bucket("rj-bucket")).await.unwrap();
    let (acked, errors) = write_many(&client, "rj-bucket", "k", 600, 8).await;
    assert!(errors.is_empty(), "{errors:?}");
    let wiped = (leader + 1) % 3;
    wipe(&mut c, wiped).await;
    // It is readmitted as a learner (the leader demotes it before it is
    // admitted) and promoted once caught up: voters are the three again,
    // and it holds every record (from a snapshot: the leader purged most
    // of its log).
    rejoined(&c, wiped, leader).await;
    let s = c.status(wiped).await.unwrap();
    assert!(s.last_applied.is_some());
    c.wait_converged(Duration::from_secs(30)).await;
    assert_eq!(keys_on(&client, &c.addr(wiped), "rj-bucket").await, acked);
    // Its vote counts again: with the leader gone, the wiped node and the
    // third elect a leader holding every record.
    c.kill(leader).await;
    let new = c.wait_leader(Duration::from_secs(20)).await;
    assert_ne!(new, leader);
    client.put_object("rj-bucket", "after", record(1, 1), Precondition::None).await.unwrap();
    let all = keys_on(&client, &c.addr(new), "rj-bucket").await;
    assert!(acked.is_subset(&all) && all.contains("after"));
}

#[tokio::test]
async fn a_wiped_lowest_id_waits_for_its_peers_and_forms_no_second_group() {
    let mut c = Cluster::start(&[0, 1, 2], &[]).await;
    c.wait_leader(Duration::from_secs(20)).await;
    let client = Arc::new(c.client());
    client.create_bucket(bucket("lo-bucket")).await.unwrap();
    let (acked, _) = write_many(&client, "lo-bucket", "k", 50, 4).await;
    c.signal(1, "STOP");
    c.signal(2, "STOP");
    wipe(&mut c, 0).await;
    // Its peers do not answer: it cannot tell a first start from a wipe,
    // so it forms nothing (no log) and takes no part.
    holds(&c, 0, Duration::from_secs(4), "no group of its own", |s| {
        !s.admitted && s.last_log.is_none() && s.role != "leader"
    })
    .await;
    c.signal(1, "CONT");
    c.signal(2, "CONT");
    c.wait_status(0, Duration::from_secs(60), "admitted", |s| s.admitted).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    rejoined(&c, 0, leader).await;
    c.wait_converged(Duration::from_secs(30)).await;
    // A new client: the old one's connection to node 0 is to the process
    // that was killed.
    assert_eq!(keys_on(&c.client(), &c.addr(0), "lo-bucket").await, acked);
}

/// Issue 11's scenario: one voter frozen, X written, another killed, the
/// third wiped and restarted, the frozen one resumed. The resumed voter
/// lacks X; with the wiped node's vote it could win and X would be lost.
#[tokio::test]
async fn a_wiped_voter_cannot_elect_a_leader_that_lost_a_write() {
    let mut c = Cluster::start(&[0, 1, 2], &[]).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let client = Arc::new(c.client());
    client.create_bucket(bucket("x-bucket")).await.unwrap();
    c.wait_converged(Duration::from_secs(20)).await;
    let frozen = (leader + 1) % 3;
    let wiped = (leader + 2) % 3;
    c.signal(frozen, "STOP");
    client.put_object("x-bucket", "X", record(7, 7), Precondition::Absent).await.unwrap();
    c.kill(leader).await;
    wipe(&mut c, wiped).await;
    c.signal(frozen, "CONT");
    // The resumed voter campaigns; the wiped node refuses to vote, so no
    // leader can be elected without the node that holds X.
    holds(&c, frozen, Duration::from_secs(5), "no leader without X", |s| s.role != "leader").await;
    holds(&c, wiped, Duration::from_millis(500), "not admitted", |s| !s.admitted).await;
    c.start_node(leader).await;
    c.wait_status(wiped, Duration::from_secs(60), "admitted", |s| s.admitted).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    rejoined(&c, wiped, leader).await;
    c.wait_converged(Duration::from_secs(30)).await;
    let client = c.client();
    for id in [0, 1, 2] {
        assert!(keys_on(&client, &c.addr(id), "x-bucket").await.contains("X"), "node {id} lost X");
    }
    assert_eq!(client.get_object("x-bucket", "X").await.unwrap().version_id, 7);
}
