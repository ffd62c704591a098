//! The replicated log in-process: election, commit, quorum loss, partitions,
//! loss and delay, restart from the store, compaction and resync, refused
//! certificates. Section numbers refer to the Raft paper (Ongaro and
//! Ousterhout, 2014).

mod common;

use std::time::Duration;

use common::{items, Cluster, Options};
use tandem_replicator::tls::{self, TlsMaterial};
use tandem_replicator::{Node, ProposeError};

const SECS: Duration = Duration::from_secs(1);

/// §5.2, §5.3: one leader is elected; entries proposed through any node
/// commit and apply on every node with the same allocated numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_is_elected_and_entries_apply_everywhere_in_order() {
    let cluster = Cluster::start(Options::default()).await;
    let leader = cluster.leader(10 * SECS).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    let a = cluster.propose(leader, "via-leader").await.unwrap();
    let b = cluster.propose(follower, "via-follower").await.unwrap();
    assert_eq!(b, a + 1, "numbers allocated in log order");
    // Read-your-writes: the proposing follower already applied it.
    assert!(items(cluster.node(follower)).contains(&(b, "via-follower".to_string())));

    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 5 * SECS).await;
    let expected = items(cluster.node(1));
    assert_eq!(expected.len(), 2);
    for id in 2..=3 {
        assert_eq!(items(cluster.node(id)), expected, "node {id} diverged");
    }
    cluster.shutdown().await;
}

/// §5.3: a majority suffices; with one of three down, proposals commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_one_of_three_down() {
    let mut cluster = Cluster::start(Options::default()).await;
    let leader = cluster.leader(10 * SECS).await;
    let down = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop_node(down).await;
    for i in 0..10 {
        cluster.propose(leader, &format!("m{i}")).await.unwrap();
    }
    // The leader itself going down: the two survivors elect one of them.
    let mut cluster2 = cluster;
    cluster2.start_node(down).await;
    let leader = cluster2.leader(10 * SECS).await;
    cluster2.stop_node(leader).await;
    let new_leader = cluster2.leader(10 * SECS).await;
    assert_ne!(new_leader, leader);
    let n = cluster2
        .propose(new_leader, "after-failover")
        .await
        .unwrap();
    assert_eq!(n, 11, "no number reused or skipped across failover");
    cluster2.shutdown().await;
}

/// §5.4.1: without a majority nothing commits; the proposal fails with the
/// timeout error instead of succeeding locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_commit_with_two_of_three_down() {
    let mut cluster = Cluster::start(Options {
        proposal_timeout: Duration::from_millis(1500),
        ..Options::default()
    })
    .await;
    let leader = cluster.leader(10 * SECS).await;
    cluster.propose(leader, "before").await.unwrap();
    for id in 1..=3 {
        if id != leader {
            cluster.stop_node(id).await;
        }
    }
    let err = cluster.propose(leader, "lonely").await.unwrap_err();
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");
    let held = items(cluster.node(leader));
    assert!(
        !held.iter().any(|(_, v)| v == "lonely"),
        "applied without quorum: {held:?}"
    );
    cluster.shutdown().await;
}

/// §5.4 and §8: a leader cut off from the others cannot commit; its pending
/// proposal fails; the majority elects a new leader (higher term) that
/// commits; after healing the old leader's uncommitted entry is gone and all
/// nodes agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_old_leader_cannot_commit() {
    let cluster = Cluster::start(Options {
        relay: true,
        proposal_timeout: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let old = cluster.leader(10 * SECS).await;
    cluster.propose(old, "before").await.unwrap();
    // Under load a leader can change between the two calls; isolate the
    // node that leads now.
    let old = cluster.leader(10 * SECS).await;
    let old_term = cluster.node(old).term();

    let net = cluster.net.as_ref().unwrap();
    net.isolate(old);
    let err = cluster
        .propose(old, "from-isolated-leader")
        .await
        .unwrap_err();
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");

    let other = (1..=3).find(|id| *id != old).unwrap();
    let mut new = None;
    for _ in 0..100 {
        let l = cluster.node(other).leader();
        if l.is_some() && l != Some(old) {
            new = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = new.expect("the majority elects a new leader");
    assert!(cluster.node(new).term() > old_term);
    let n = cluster.propose(new, "from-majority").await.unwrap();
    assert_eq!(n, 2);

    net.heal();
    let index = cluster.node(new).applied_index().unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    let expected = items(cluster.node(new));
    assert_eq!(
        expected,
        vec![(1, "before".to_string()), (2, "from-majority".to_string())]
    );
    for id in 1..=3 {
        assert_eq!(items(cluster.node(id)), expected, "node {id}");
    }
    cluster.shutdown().await;
}

/// The mailing-list scenario: 2% datagram loss and 50 ms delay on every
/// replication link; proposals still commit, in order, everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_through_two_percent_loss_and_fifty_ms_delay() {
    let cluster = Cluster::start(Options {
        relay: true,
        proposal_timeout: Duration::from_secs(10),
        // Production timing: AppendEntries must fit in one heartbeat
        // interval, and a round trip here is over 100 ms.
        heartbeat: Duration::from_millis(250),
        election_timeout: (Duration::from_millis(1000), Duration::from_millis(2000)),
        ..Options::default()
    })
    .await;
    cluster.leader(10 * SECS).await;
    cluster.net.as_ref().unwrap().degrade_all(
        0.02,
        Duration::from_millis(50),
        Duration::from_millis(5),
    );
    let mut numbers = Vec::new();
    for i in 0..20 {
        let via = 1 + (i % 3);
        numbers.push(cluster.propose(via, &format!("lossy{i}")).await.unwrap());
    }
    assert_eq!(numbers, (1..=20).collect::<Vec<u64>>());
    let leader = cluster.leader(10 * SECS).await;
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 20 * SECS).await;
    for id in 2..=3 {
        assert_eq!(items(cluster.node(id)), items(cluster.node(1)));
    }
    cluster.shutdown().await;
}

/// A node restarted on its data directory recovers its log and state; a
/// whole cluster restarted continues numbering where it stopped (no reuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_nodes_recover_from_their_store() {
    let mut cluster = Cluster::start(Options::default()).await;
    let leader = cluster.leader(10 * SECS).await;
    for i in 0..5 {
        cluster.propose(leader, &format!("a{i}")).await.unwrap();
    }
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop_node(follower).await;
    for i in 0..5 {
        cluster.propose(leader, &format!("b{i}")).await.unwrap();
    }
    cluster.start_node(follower).await;
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    assert_eq!(items(cluster.node(follower)).len(), 10);

    for id in 1..=3 {
        cluster.stop_node(id).await;
    }
    for id in 1..=3 {
        cluster.start_node(id).await;
    }
    let leader = cluster.leader(10 * SECS).await;
    let n = cluster.propose(leader, "after-restart").await.unwrap();
    assert_eq!(n, 11);
    cluster.shutdown().await;
}

/// A node further behind than the kept log receives a snapshot and reports
/// that its backend must be resynchronized; its state still converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_past_the_kept_log_is_told_to_resync() {
    let mut cluster = Cluster::start(Options {
        keep_log_entries: 5,
        compaction_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let leader = cluster.leader(10 * SECS).await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    cluster.propose(leader, "first").await.unwrap();
    cluster.stop_node(lagging).await;
    for i in 0..40 {
        cluster.propose(leader, &format!("x{i}")).await.unwrap();
    }
    // Wait until the leader purged beyond what the lagging node has.
    let raft = cluster.node(leader).raft().clone();
    raft.wait(Some(10 * SECS))
        .metrics(|m| m.purged.map(|l| l.index) >= Some(20), "purged")
        .await
        .expect("leader compacts its log");
    assert!(cluster.node(leader).needs_resync().is_none());

    cluster.start_node(lagging).await;
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    let resync = cluster
        .node(lagging)
        .needs_resync()
        .expect("told to resync");
    assert!(resync.snapshot_upto >= 20, "{resync:?}");
    assert_eq!(items(cluster.node(lagging)), items(cluster.node(leader)));
    cluster.shutdown().await;
}

/// A node whose certificate comes from another CA, or that is not a member,
/// is refused: it never receives entries, the others commit without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_a_foreign_certificate_are_refused() {
    let mut cluster = Cluster::start(Options {
        nodes: 3,
        ..Options::default()
    })
    .await;
    // Replace node 3 with an impostor holding a certificate for node 3 from
    // a different CA.
    cluster.stop_node(3).await;
    std::fs::remove_dir_all(cluster.data_dir(3)).unwrap();
    let rogue_ca = tls::generate_ca().unwrap();
    let rogue = tls::issue_node_cert(&rogue_ca.key, 3).unwrap();
    let material = TlsMaterial::from_pem(&rogue_ca.cert, &rogue.cert, &rogue.key).unwrap();
    let impostor = Node::start(cluster.config(3, material), common::Seq)
        .await
        .unwrap();

    let leader = cluster.leader(10 * SECS).await;
    assert_ne!(leader, 3);
    for i in 0..3 {
        cluster.propose(leader, &format!("m{i}")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(impostor.applied_index().unwrap_or(0) < cluster.node(leader).applied_index().unwrap());
    assert!(items_of(&impostor).is_empty(), "the impostor got entries");
    impostor.shutdown().await;
    cluster.shutdown().await;
}

fn items_of(node: &Node<common::Seq>) -> Vec<(u64, String)> {
    items(node)
}

/// Large entries travel as blobs beside the log: 1 MiB entries commit
/// through 2% loss and delay (inline, each AppendEntries would have to fit
/// in one heartbeat interval), and every node applies the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_commit_through_loss_as_blobs() {
    let cluster = Cluster::start(Options {
        relay: true,
        proposal_timeout: Duration::from_secs(20),
        heartbeat: Duration::from_millis(250),
        election_timeout: (Duration::from_millis(1000), Duration::from_millis(2000)),
        ..Options::default()
    })
    .await;
    cluster.leader(10 * SECS).await;
    cluster.net.as_ref().unwrap().degrade_all(
        0.02,
        Duration::from_millis(5),
        Duration::from_millis(1),
    );
    let big: Vec<String> = (0..4).map(|i| format!("{i}").repeat(1 << 20)).collect();
    for (i, value) in big.iter().enumerate() {
        let n = cluster.propose(1 + (i as u64 % 3), value).await.unwrap();
        assert_eq!(n, i as u64 + 1);
    }
    let leader = cluster.leader(10 * SECS).await;
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 30 * SECS).await;
    for id in 1..=3 {
        let held = items(cluster.node(id));
        assert_eq!(held.len(), 4, "node {id}");
        for (i, (_, v)) in held.iter().enumerate() {
            assert!(v == &big[i], "node {id} holds other bytes for entry {i}");
        }
        // The log refers to every blob: blob collection keeps them.
        let live = cluster.node(id).blobs_in_log().unwrap();
        assert_eq!(live.len(), 4, "node {id}");
    }
    cluster.shutdown().await;
}

/// A node that was down while a large payload was pushed fetches it from a
/// peer before applying the entry; it never skips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_missed_a_blob_fetches_it_before_applying() {
    let mut cluster = Cluster::start(Options::default()).await;
    let leader = cluster.leader(10 * SECS).await;
    let down = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop_node(down).await;
    let value = "b".repeat(300 * 1024);
    cluster.propose(leader, &value).await.unwrap();
    cluster.propose(leader, "small").await.unwrap();
    let blob_dir = cluster.data_dir(down).join("blobs");
    assert_eq!(
        std::fs::read_dir(&blob_dir).unwrap().count(),
        0,
        "pushed while down?"
    );

    cluster.start_node(down).await;
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    assert_eq!(items(cluster.node(down)), items(cluster.node(leader)));
    assert_eq!(
        std::fs::read_dir(&blob_dir).unwrap().count(),
        1,
        "fetched and kept"
    );
    cluster.shutdown().await;
}

/// A payload gets time by its size: on links of 4 MiB/s an 8 MiB entry
/// takes about 2 s to reach a peer, twice the proposal timeout, and still
/// commits; the node that was down meanwhile fetches it through the same
/// slow link. (With a fixed timeout the proposal failed and the fetch was
/// retried forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entry_over_slow_links_gets_time_by_its_size() {
    let mut cluster = Cluster::start(Options {
        relay: true,
        proposal_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let leader = cluster.leader(10 * SECS).await;
    let down = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop_node(down).await;
    cluster.net.as_ref().unwrap().limit_rate_all(4 << 20);
    let value = "s".repeat(8 << 20);
    let started = std::time::Instant::now();
    cluster.propose(leader, &value).await.unwrap();
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "committed in {:?}: the link is not slow",
        started.elapsed()
    );
    cluster.propose(leader, "small").await.unwrap();

    cluster.start_node(down).await;
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 30 * SECS).await;
    assert_eq!(items(cluster.node(down)), items(cluster.node(leader)));
    cluster.shutdown().await;
}

/// Two voters without a witness: writes need both, so they stop while one
/// is down (they fail with the timeout error) and resume when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_without_a_witness_stop_writes_while_one_is_down() {
    let mut cluster = Cluster::start(Options {
        nodes: 2,
        proposal_timeout: Duration::from_millis(1500),
        ..Options::default()
    })
    .await;
    let leader = cluster.leader(10 * SECS).await;
    assert_eq!(cluster.propose(leader, "both-up").await.unwrap(), 1);
    let other = 3 - leader;
    cluster.stop_node(other).await;
    let err = cluster.propose(leader, "alone").await.unwrap_err();
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");
    cluster.start_node(other).await;
    cluster.leader(10 * SECS).await;
    let mut resumed = None;
    for _ in 0..20 {
        let leader = cluster.leader(10 * SECS).await;
        if let Ok(n) = cluster.propose(leader, "both-back").await {
            resumed = Some(n);
            break;
        }
    }
    // "alone" may commit once the peer is back (the timeout said "unknown
    // outcome", not "never"); what matters is that no number is reused.
    let n = resumed.expect("writes resume with both nodes up");
    assert!(n == 2 || n == 3, "{n}");
    cluster.shutdown().await;
}

/// §5.4.2 (Figure 8): an entry a deposed leader appended can still commit
/// after a new leader overwrote it on that node, if another node kept it and
/// wins a later election (five nodes). openraft answers such a truncated
/// write with the same `ForwardToLeader` it uses to refuse a write, so
/// treating that answer as "not taken" and proposing again could apply one
/// mutation twice. A proposal whose entry reached a leader's log resolves
/// with an error, never by being proposed a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_truncated_on_a_deposed_leader_is_not_proposed_again() {
    let cluster = Cluster::start(Options {
        relay: true,
        proposal_timeout: Duration::from_secs(30),
        // Only the isolation below changes the leader, not load.
        election_timeout: (2 * SECS, 4 * SECS),
        ..Options::default()
    })
    .await;
    let old = cluster.leader(10 * SECS).await;
    cluster.propose(old, "before").await.unwrap();
    let old = cluster.leader(10 * SECS).await;
    let last_before = cluster.node(old).raft().metrics().borrow().last_log_index;
    let net = cluster.net.as_ref().unwrap();
    net.isolate(old);

    let isolated = cluster.propose(old, "from-isolated-leader");
    let scenario = async {
        // The isolated leader appends the entry to its own log.
        cluster
            .node(old)
            .raft()
            .wait(Some(10 * SECS))
            .metrics(
                |m| m.last_log_index > last_before,
                "entry appended on the isolated leader",
            )
            .await
            .unwrap();
        let other = (1..=3).find(|id| *id != old).unwrap();
        let mut new = None;
        for _ in 0..200 {
            let l = cluster.node(other).leader();
            if l.is_some() && l != Some(old) {
                new = l;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let new = new.expect("the majority elects a new leader");
        cluster.propose(new, "from-majority").await.unwrap();
        // The old leader learns of the new term and loses its entry.
        net.heal();
        new
    };
    let (result, new) = tokio::join!(isolated, scenario);
    assert!(
        matches!(result, Err(ProposeError::Unknown(_))),
        "an entry taken by a leader was proposed again: {result:?}"
    );
    let index = cluster
        .node(new)
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    let values: Vec<String> = items(cluster.node(new))
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, vec!["before", "from-majority"]);
    cluster.shutdown().await;
}

/// A voter behind by fewer than `keep_log_entries` catches up from the log:
/// compacting the leader's log (snapshot, then purge) keeps the entries the
/// slowest voter still needs, so it is not sent a snapshot and needs no
/// resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voter_within_the_kept_log_catches_up_without_resync() {
    let cluster = Cluster::start(Options {
        relay: true,
        keep_log_entries: 1000,
        compaction_interval: Duration::from_millis(100),
        // No leader change under load while the test watches the leader.
        election_timeout: (2 * SECS, 4 * SECS),
        ..Options::default()
    })
    .await;
    let leader = cluster.leader(10 * SECS).await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    cluster.propose(leader, "first").await.unwrap();
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    // The leader knows how far the voter got (a new leader starts unknown).
    cluster
        .node(leader)
        .raft()
        .wait(Some(10 * SECS))
        .metrics(
            |m| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&lagging).copied().flatten())
                    .is_some()
            },
            "leader knows the voter's progress",
        )
        .await
        .unwrap();
    let net = cluster.net.as_ref().unwrap();
    net.isolate(lagging);
    for i in 0..30 {
        cluster.propose(leader, &format!("x{i}")).await.unwrap();
    }
    // Wait until the leader compacted (it snapshots first).
    let raft = cluster.node(leader).raft().clone();
    raft.wait(Some(10 * SECS))
        .metrics(|m| m.snapshot.is_some(), "snapshot for compaction")
        .await
        .expect("leader compacts its log");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let purged = raft.metrics().borrow().purged.map(|l| l.index);
    let has = cluster
        .node(lagging)
        .raft()
        .metrics()
        .borrow()
        .last_log_index;
    assert!(
        purged <= has,
        "purged up to {purged:?}, the isolated voter has only {has:?}"
    );

    net.heal();
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    assert_eq!(cluster.node(lagging).needs_resync(), None);
    assert_eq!(items(cluster.node(lagging)), items(cluster.node(leader)));
    cluster.shutdown().await;
}

/// A node restarted on an empty data directory (disk replaced) is not a new
/// node: it does not initialize and grants no vote until a leader has
/// brought it up to date. Here the only intact holder of a committed entry
/// is down, so no leader may be elected (the wiped node's vote would elect
/// one that lacks the entry); once that node is back the entry survives
/// and numbering continues (mission invariants 2 and 3; Raft §5.4.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_entry_survives_a_node_restarted_on_a_wiped_disk() {
    let mut cluster = Cluster::start(Options {
        relay: true,
        election_timeout: (2 * SECS, 4 * SECS),
        ..Options::default()
    })
    .await;
    let a = cluster.leader(10 * SECS).await;
    let mut others = (1..=3).filter(|id| *id != a);
    let (b, c) = (others.next().unwrap(), others.next().unwrap());
    cluster.net.as_ref().unwrap().isolate(c);
    cluster.propose(a, "committed-on-a-and-b").await.unwrap();
    // b loses its disk and comes back empty; a goes down; c returns.
    cluster.stop_node(b).await;
    std::fs::remove_dir_all(cluster.data_dir(b)).unwrap();
    cluster.start_node(b).await;
    cluster.stop_node(a).await;
    cluster.net.as_ref().unwrap().heal();
    // c lacks the entry and b votes for nobody: no leader, no write.
    tokio::time::sleep(6 * SECS).await;
    assert!(
        cluster.nodes.values().all(|n| !n.is_leader()),
        "a leader was elected without the committed entry"
    );
    cluster.start_node(a).await;
    let leader = cluster.leader(30 * SECS).await;
    let n = cluster.propose(leader, "after").await.unwrap();
    assert_eq!(n, 2, "numbering continues after the committed entry");
    let values: Vec<String> = items(cluster.node(leader))
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert!(
        values.contains(&"committed-on-a-and-b".to_string()),
        "a committed entry was lost: {values:?}"
    );
    cluster.shutdown().await;
}

/// Concurrent proposals are batched into shared log entries; each proposer
/// still gets its own entry's output (its own number), never another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_each_get_their_own_number() {
    let cluster = std::sync::Arc::new(Cluster::start(Options::default()).await);
    let leader = cluster.leader(10 * SECS).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let cluster = cluster.clone();
        let via = if i % 2 == 0 { leader } else { follower };
        tasks.push(tokio::spawn(async move {
            let value = format!("v{i}");
            let n = cluster.propose(via, &value).await.unwrap();
            (n, value)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort();
    let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (1..=60).collect::<Vec<u64>>(),
        "numbers unique and dense"
    );
    let index = cluster.node(leader).applied_index().unwrap();
    cluster.applied_everywhere(index, 10 * SECS).await;
    for id in 1..=3 {
        assert_eq!(
            items(cluster.node(id)),
            got,
            "node {id}: a proposer got another's number"
        );
    }
    // Fewer log entries than proposals: they were batched.
    assert!(index < 60, "no batching: {index} entries for 60 proposals");
}
