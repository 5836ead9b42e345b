//! The log's collector against a real witness (its HTTP routes on loopback, its state files):
//! it gets the cosignature of the latest checkpoint, gets it again after a restart of the log
//! (the witness already holds that size), stores the lines of several witnesses for one size
//! without losing any, and reports a fork of its key at the same size.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socai_chain::cosign::{Cosigner, line_key, note_body};
use socai_store::{DataDir, Ledger, LedgerConfig, SledStorage};
use socai_witness::{Collector, Witness, WitnessBoard, WitnessTarget};

const PATIENCE: Duration = Duration::from_secs(30);

fn events(n: usize, seed: u64) -> Vec<socai_model::Event> {
    socai_sim::Generator::new(socai_sim::SimConfig {
        seed,
        provinces: 2,
        communes_per_province: 2,
        procedures_per_agency: 3,
        ..Default::default()
    })
    .take(n)
    .collect()
}

/// A ledger of `n` events (from `seed`) with a signed checkpoint, in `dir` (already initialised).
fn ledger(dir: &Path, n: usize, seed: u64) -> Ledger<SledStorage> {
    let mut l = DataDir::new(dir)
        .open_ledger(LedgerConfig::default())
        .unwrap();
    l.append_batch(&events(n, seed), "2026-12-02T00:00:00Z")
        .unwrap();
    l.checkpoint().unwrap();
    l
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A witness named `name` following `log_vkey`, served on loopback: its target for a log.
async fn witness(dir: &Path, name: &str, log_vkey: &str) -> WitnessTarget {
    let vkey = socai_witness::witness::init(dir, name).unwrap();
    let log = socai_chain::CheckpointVerifier::from_vkey(log_vkey).unwrap();
    let w = Arc::new(Witness::open(dir, vec![log]).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, w.router()).await });
    WitnessTarget::parse(&format!("http://{addr}/={vkey}")).unwrap()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosignatures_are_fetched_again_after_a_restart_and_a_same_size_fork_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let log_vkey = DataDir::new(&a_dir).init("log.example").unwrap();
    // The fork: the same keys, other events.
    copy_dir(&a_dir, &b_dir);
    drop(ledger(&a_dir, 40, 1));
    // The same log as it will be after a crash that lost its cosignature lines (they reach the
    // disk with the writer's next commit): a copy taken before any was stored.
    let a2_dir = tmp.path().join("a2");
    copy_dir(&a_dir, &a2_dir);
    let a = DataDir::new(&a_dir)
        .open_ledger(LedgerConfig::default())
        .unwrap();
    let size = a
        .reader()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .checkpoint
        .size;
    let w1 = witness(&tmp.path().join("w1"), "w1.example", &log_vkey).await;
    let w2 = witness(&tmp.path().join("w2"), "w2.example", &log_vkey).await;

    // Both witnesses cosign; both lines are kept for the one size.
    let board = Arc::new(WitnessBoard::default());
    let collector =
        Collector::start(a.reader(), vec![w1.clone(), w2.clone()], board.clone()).unwrap();
    until("both cosignatures", || {
        board
            .reports()
            .iter()
            .all(|r| r.cosigned_size == Some(size))
    })
    .await;
    let lines = a.reader().storage().cosignatures(size).unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let note = a.reader().latest_checkpoint().unwrap().unwrap().note;
    let body = note_body(&note).unwrap();
    for w in [&w1, &w2] {
        assert_eq!(
            lines
                .iter()
                .filter(|l| w.verifier.verify_line(body, l).unwrap().is_some())
                .count(),
            1,
            "{lines:?}"
        );
    }
    drop(collector);

    // A restart keeps what was stored: the board knows it before any request.
    let board = Arc::new(WitnessBoard::default());
    let collector = Collector::start(a.reader(), vec![w1.clone()], board.clone()).unwrap();
    assert_eq!(board.reports()[0].cosigned_size, Some(size));
    drop(collector);
    drop(a);

    // The log restarted without its lines (a crash before they reached the disk): the witness
    // holds this size already (409 to `old 0`), and the collector still gets its cosignature.
    let a2 = DataDir::new(&a2_dir)
        .open_ledger(LedgerConfig::default())
        .unwrap();
    assert!(a2.reader().storage().cosignatures(size).unwrap().is_empty());
    // Nothing to seed the board from. (Checked with w1 as a following witness, without a URL:
    // the collector sends nothing, so no cosignature can arrive before the assertion.)
    let following = WitnessTarget {
        url: None,
        ..w1.clone()
    };
    let board = Arc::new(WitnessBoard::default());
    drop(Collector::start(a2.reader(), vec![following], board.clone()).unwrap());
    assert_eq!(board.reports()[0].cosigned_size, None);
    let board = Arc::new(WitnessBoard::default());
    let collector = Collector::start(a2.reader(), vec![w1.clone()], board.clone()).unwrap();
    until("the cosignature after a restart", || {
        board.reports()[0].cosigned_size == Some(size)
    })
    .await;
    assert!(board.reports()[0].error.is_none());
    assert_eq!(a2.reader().storage().cosignatures(size).unwrap().len(), 1);
    drop(collector);
    drop(a2);

    // The fork of the same size: named as a fork, nothing stored.
    let b = ledger(&b_dir, 40, 2);
    let forked = b.reader().latest_checkpoint().unwrap().unwrap().checkpoint;
    assert_eq!(forked.size, size);
    let board = Arc::new(WitnessBoard::default());
    let _collector = Collector::start(b.reader(), vec![w1], board.clone()).unwrap();
    until("the fork reported", || board.reports()[0].error.is_some()).await;
    let error = board.reports()[0].error.clone().unwrap();
    assert!(error.contains("another root for size 40"), "{error}");
    assert_eq!(board.reports()[0].cosigned_size, None);
    assert!(b.reader().storage().cosignatures(size).unwrap().is_empty());
}

/// Many followers storing their lines for the same size at once lose none (compare-and-swap).
#[test]
fn concurrent_stores_for_one_size_lose_no_line() {
    let tmp = tempfile::tempdir().unwrap();
    DataDir::new(tmp.path()).init("log.example").unwrap();
    let l = ledger(tmp.path(), 5, 1);
    let storage = l.reader().storage().clone();
    let cosigners: Vec<Cosigner> = (0..8)
        .map(|i| Cosigner::generate(&format!("w{i}.example")).unwrap().0)
        .collect();
    for size in 1..=20u64 {
        std::thread::scope(|s| {
            for c in &cosigners {
                let storage = storage.clone();
                s.spawn(move || {
                    let line = c.cosign("log.example\n1\nAAAA\n", size);
                    storage.add_cosignatures(size, &[line]).unwrap();
                });
            }
        });
        let held = storage.cosignatures(size).unwrap();
        let keys: std::collections::HashSet<_> = held.iter().filter_map(|l| line_key(l)).collect();
        assert_eq!(keys.len(), cosigners.len(), "size {size}: {held:?}");
    }
    // A witness's newer line replaces its older one for the same size.
    let again = cosigners[0].cosign("log.example\n1\nAAAA\n", 99);
    storage
        .add_cosignatures(1, std::slice::from_ref(&again))
        .unwrap();
    let held = storage.cosignatures(1).unwrap();
    assert_eq!(held.len(), cosigners.len());
    assert!(held.contains(&again.trim_end().to_owned()));
}
