//! Sorted runs: a secondary index of `(fingerprint, seq)` pairs kept as immutable sorted runs in
//! fixed-size pages, merged in the background (docs/SCALE.md). It replaces one random-key sled
//! insert per indexed entry with one run per commit: a commit of n entries writes about n / 256
//! page values and one fence record, in the commit's own atomic batch.
//!
//! Layout under three one-byte prefixes chosen by the user of the index:
//! - page: `P`‖first‖end‖page → up to [`PAGE_PAIRS`] pairs, each fingerprint‖seq (16 bytes,
//!   big-endian), sorted by (fingerprint, seq) across the whole run;
//! - fence: `F`‖first‖end → generation (1 byte)‖pair count‖last fingerprint‖the first
//!   fingerprint of each page;
//! - marker: `M`‖first‖end → "": pages of this range that have no fence are garbage (written
//!   while a merge runs, and for the inputs a finished merge replaced).
//!
//! Invariants:
//! - The fences' ranges `[first, end)` partition `[0, end of the last run)`: every commit with
//!   entries adds the run of its own range, and a merge replaces adjacent runs by one run of their
//!   union, in one atomic batch that installs the new fence and removes the old ones.
//! - A run's pages exist, complete, before its fence: a commit writes both in one batch; a merge
//!   writes its pages first (with a marker) and installs the fence last. Opening the index deletes
//!   the pages a marker names when no fence covers them, so a crash at any point leaves no
//!   garbage and never a fence without its pages.
//! - Lookups read a snapshot of the run list; a page a concurrent merge removed sends the lookup
//!   back to a fresh snapshot (the merged run holds the same pairs).
//! - Only the merger removes runs, only the writer appends them: merges never touch the tail that
//!   the writer is extending, because a merge only ever takes runs already installed.
//! - The merger applies batches but never flushes: they become durable with the writer's next
//!   commit (sled recovers a prefix of its log, each batch whole), or are cleaned at open.
//! - Runs that do not partition the log (a fence lost or changed on disk) never stop the store
//!   from opening: the index is then "broken", lookups and [`Runs::check`] report why, and
//!   `socai verify` can name the damage.

use crate::storage::StorageError;
use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BTreeSet, BinaryHeap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

/// Pairs per page (4 KiB).
pub const PAGE_PAIRS: usize = 256;
/// Runs of one generation merged into one of the next.
pub const FANOUT: usize = 8;
/// Bytes of one pair.
const PAIR: usize = 16;
/// Output pages per sled batch while a merge streams.
const MERGE_CHUNK_PAGES: usize = 256;
/// Bytes of a fence value before its page fences.
const FENCE_HEAD: usize = 17;

/// The three key prefixes of one index.
#[derive(Debug, Clone, Copy)]
pub struct Prefixes {
    pub page: u8,
    pub fence: u8,
    pub marker: u8,
}

/// One run: the pairs of the entries `[first, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMeta {
    pub first: u64,
    pub end: u64,
    /// 0 for a commit's run, g + 1 for a merge of runs of generation g.
    pub generation: u8,
    pub count: u64,
    /// The largest fingerprint in the run (0 when it is empty).
    pub last: u64,
    /// The first fingerprint of each page.
    pub fences: Vec<u64>,
}

/// A run built by [`Runs::add`], installed in memory by [`Runs::installed`] once its batch
/// is applied.
#[derive(Debug)]
pub struct NewRun(RunMeta);

type List = Arc<Vec<Arc<RunMeta>>>;

pub struct Runs {
    tree: sled::Tree,
    pre: Prefixes,
    path: PathBuf,
    list: RwLock<List>,
    /// Why the stored runs cannot be trusted, if they cannot.
    broken: RwLock<Option<String>>,
    /// Set by [`Runs::installed`], taken by the merger.
    wake: (Mutex<bool>, Condvar),
    stop: AtomicBool,
    /// Held for each whole merge, and by [`Runs::check`] (see also [`Runs::pause_merges`]).
    merging: Mutex<()>,
    /// A merge failed: none again until the store is opened again.
    merge_failed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn range_key(prefix: u8, first: u64, end: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..9].copy_from_slice(&first.to_be_bytes());
    k[9..].copy_from_slice(&end.to_be_bytes());
    k
}

fn page_key(prefix: u8, first: u64, end: u64, page: u32) -> [u8; 21] {
    let mut k = [0u8; 21];
    k[..17].copy_from_slice(&range_key(prefix, first, end));
    k[17..].copy_from_slice(&page.to_be_bytes());
    k
}

fn parse_range(k: &[u8]) -> Option<(u64, u64)> {
    Some((
        u64::from_be_bytes(k.get(1..9)?.try_into().ok()?),
        u64::from_be_bytes(k.get(9..17)?.try_into().ok()?),
    ))
}

fn be(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

/// Pair `i` of a page whose length was checked ([`pairs_in`]).
fn pair_at(page: &[u8], i: usize) -> (u64, u64) {
    let p = &page[i * PAIR..i * PAIR + PAIR];
    (be(&p[..8]), be(&p[8..]))
}

/// The number of pairs in a page: it must hold at least one, whole.
fn pairs_in(page: &[u8], what: impl Fn() -> String) -> Result<usize, StorageError> {
    if page.is_empty() || !page.len().is_multiple_of(PAIR) {
        return Err(StorageError::Corrupt(format!(
            "{}: a page of {} bytes (not whole pairs); run `socai verify`",
            what(),
            page.len()
        )));
    }
    Ok(page.len() / PAIR)
}

fn encode_fence(meta: &RunMeta) -> Vec<u8> {
    let mut v = Vec::with_capacity(FENCE_HEAD + meta.fences.len() * 8);
    v.push(meta.generation);
    v.extend_from_slice(&meta.count.to_be_bytes());
    v.extend_from_slice(&meta.last.to_be_bytes());
    for f in &meta.fences {
        v.extend_from_slice(&f.to_be_bytes());
    }
    v
}

/// Pages of sorted pairs and their fences.
fn paginate(pairs: &[(u64, u64)]) -> (Vec<Vec<u8>>, Vec<u64>) {
    let mut pages = Vec::with_capacity(pairs.len().div_ceil(PAGE_PAIRS));
    let mut fences = Vec::with_capacity(pages.capacity());
    for chunk in pairs.chunks(PAGE_PAIRS) {
        fences.push(chunk[0].0);
        let mut page = Vec::with_capacity(chunk.len() * PAIR);
        for (fp, seq) in chunk {
            page.extend_from_slice(&fp.to_be_bytes());
            page.extend_from_slice(&seq.to_be_bytes());
        }
        pages.push(page);
    }
    (pages, fences)
}

impl Runs {
    /// Opens the index held in `tree` under `pre`: deletes what an interrupted merge left and
    /// loads the fences. Runs that do not partition `[0, end)` leave the index broken (see
    /// [`Runs::broken`]), not the open failed.
    pub fn open(tree: sled::Tree, pre: Prefixes, path: PathBuf) -> Result<Runs, StorageError> {
        let runs = Runs {
            tree,
            pre,
            path,
            list: RwLock::new(Arc::new(Vec::new())),
            broken: RwLock::new(None),
            wake: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
            merging: Mutex::new(()),
            merge_failed: AtomicBool::new(false),
        };
        runs.reload()?;
        Ok(runs)
    }

    /// Reads the runs from the tree again (after [`Runs::open`], or after keys were changed
    /// under it, as by a migration).
    pub fn reload(&self) -> Result<(), StorageError> {
        self.collect_garbage()?;
        let (list, broken) = match self.load_list() {
            Ok(list) => (list, None),
            Err(StorageError::Corrupt(why)) => (Vec::new(), Some(why)),
            Err(e) => return Err(e),
        };
        *self.list.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(list.into_iter().map(Arc::new).collect());
        self.set_broken(broken);
        Ok(())
    }

    /// Marks the index broken (lookups and checks answer `why`), or whole again.
    pub fn set_broken(&self, why: Option<String>) {
        *self.broken.write().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// No merge is running and the index is not marked broken (state that reopening the store
    /// would lose): the store may be reopened now.
    pub fn is_idle(&self) -> bool {
        // A failed merge is not retried until the store is opened by a new process.
        self.broken().is_none()
            && !self.merge_failed.load(Ordering::Acquire)
            && !matches!(
                self.merging.try_lock(),
                Err(std::sync::TryLockError::WouldBlock)
            )
    }

    /// Why the index cannot be used, if it cannot.
    pub fn broken(&self) -> Option<String> {
        self.broken
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn check_whole(&self) -> Result<(), StorageError> {
        match self.broken() {
            Some(why) => Err(StorageError::Corrupt(why)),
            None => Ok(()),
        }
    }

    /// The runs the tree's fences name, checked to follow each other from entry 0.
    fn load_list(&self) -> Result<Vec<RunMeta>, StorageError> {
        let mut list: Vec<RunMeta> = Vec::new();
        for r in self.tree.scan_prefix([self.pre.fence]) {
            let (k, v) = r.map_err(|e| self.err(e))?;
            let (first, end) = parse_range(&k)
                .ok_or_else(|| StorageError::Corrupt("an index fence key is truncated".into()))?;
            let bad = || {
                StorageError::Corrupt(format!(
                    "the fence of index run [{first}, {end}) is malformed"
                ))
            };
            if k.len() != 17 || v.len() < FENCE_HEAD || !(v.len() - FENCE_HEAD).is_multiple_of(8) {
                return Err(bad());
            }
            let count = be(&v[1..9]);
            let fences: Vec<u64> = v[FENCE_HEAD..].chunks_exact(8).map(be).collect();
            if fences.len() as u64 != count.div_ceil(PAGE_PAIRS as u64) {
                return Err(bad());
            }
            let expected = list.last().map_or(0, |r| r.end);
            if first != expected || end <= first {
                return Err(StorageError::Corrupt(format!(
                    "index runs do not follow each other: run [{first}, {end}) after entry {}",
                    expected as i64 - 1
                )));
            }
            list.push(RunMeta {
                first,
                end,
                generation: v[0],
                count,
                last: be(&v[9..17]),
                fences,
            });
        }
        Ok(list)
    }

    fn err(&self, e: sled::Error) -> StorageError {
        StorageError::Engine {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Deletes the pages every marker names that no fence covers, then the markers.
    fn collect_garbage(&self) -> Result<(), StorageError> {
        let markers: Vec<sled::IVec> = self
            .tree
            .scan_prefix([self.pre.marker])
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for marker in markers {
            if let Some((first, end)) = parse_range(&marker).filter(|_| marker.len() == 17) {
                let fenced = self
                    .tree
                    .contains_key(range_key(self.pre.fence, first, end))
                    .map_err(|e| self.err(e))?;
                if !fenced {
                    self.delete_pages(first, end, false)?;
                }
            }
            self.tree.remove(&marker).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Deletes the pages of `[first, end)`; with `stoppable`, leaves the rest (still marked)
    /// once the merger is told to stop.
    fn delete_pages(&self, first: u64, end: u64, stoppable: bool) -> Result<(), StorageError> {
        loop {
            if stoppable && self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let keys: Vec<sled::IVec> = self
                .tree
                .scan_prefix(range_key(self.pre.page, first, end))
                .keys()
                .take(1024)
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut b = sled::Batch::default();
            for k in keys {
                b.remove(k);
            }
            self.tree.apply_batch(b).map_err(|e| self.err(e))?;
        }
    }

    /// Deletes every key of this index (pages, fences, markers), forgets its runs and clears
    /// a broken mark (a rebuild follows).
    pub fn clear(&self) -> Result<(), StorageError> {
        let _merging = lock(&self.merging);
        for prefix in [self.pre.page, self.pre.marker, self.pre.fence] {
            loop {
                let keys: Vec<sled::IVec> = self
                    .tree
                    .scan_prefix([prefix])
                    .keys()
                    .take(1024)
                    .collect::<Result<_, _>>()
                    .map_err(|e| self.err(e))?;
                if keys.is_empty() {
                    break;
                }
                let mut b = sled::Batch::default();
                for k in keys {
                    b.remove(k);
                }
                self.tree.apply_batch(b).map_err(|e| self.err(e))?;
            }
        }
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Vec::new());
        self.set_broken(None);
        Ok(())
    }

    /// Holds off merges while the guard lives (tests that change the index's keys directly).
    #[doc(hidden)]
    pub fn pause_merges(&self) -> MutexGuard<'_, ()> {
        lock(&self.merging)
    }

    /// One past the last seq the runs cover (0 when there is none).
    pub fn end(&self) -> u64 {
        self.snapshot().last().map_or(0, |r| r.end)
    }

    /// The runs as they are now.
    pub fn snapshot(&self) -> List {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes the run of the entries `[first, end)` into `batch` (the commit's own): its pairs
    /// sorted into pages, and its fence. [`Runs::installed`] makes it visible once `batch` is
    /// applied.
    pub fn add(
        &self,
        batch: &mut sled::Batch,
        first: u64,
        end: u64,
        mut pairs: Vec<(u64, u64)>,
    ) -> NewRun {
        pairs.sort_unstable();
        let (pages, fences) = paginate(&pairs);
        for (i, page) in pages.into_iter().enumerate() {
            batch.insert(&page_key(self.pre.page, first, end, i as u32)[..], page);
        }
        let meta = RunMeta {
            first,
            end,
            generation: 0,
            count: pairs.len() as u64,
            last: pairs.last().map_or(0, |p| p.0),
            fences,
        };
        batch.insert(
            &range_key(self.pre.fence, first, end)[..],
            encode_fence(&meta),
        );
        NewRun(meta)
    }

    /// Makes a run written by [`Runs::add`] visible, once its batch is applied, and wakes the
    /// merger. A broken index stays broken (the run is stored, not listed).
    pub fn installed(&self, run: NewRun) {
        {
            let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
            if self.broken().is_some() || list.last().map_or(0, |r| r.end) != run.0.first {
                if self.broken().is_none() {
                    self.set_broken(Some(format!(
                        "index run [{}, {}) does not follow the runs listed, which end at entry {}",
                        run.0.first,
                        run.0.end,
                        list.last().map_or(0, |r| r.end) as i64 - 1
                    )));
                }
                return;
            }
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(list.iter().cloned());
            next.push(Arc::new(run.0));
            *list = Arc::new(next);
        }
        *lock(&self.wake.0) = true;
        self.wake.1.notify_one();
    }

    /// The seqs of every pair with fingerprint `fp`, ascending.
    pub fn lookup(&self, fp: u64) -> Result<Vec<u64>, StorageError> {
        self.lookup_range(fp, fp)
    }

    /// The seqs of every pair with a fingerprint in `lo..=hi`, ascending.
    pub fn lookup_range(&self, lo: u64, hi: u64) -> Result<Vec<u64>, StorageError> {
        self.check_whole()?;
        for _ in 0..16 {
            let list = self.snapshot();
            if let Some(mut seqs) = self.lookup_in(&list, lo, hi)? {
                seqs.sort_unstable();
                return Ok(seqs);
            }
        }
        Err(StorageError::Corrupt(
            "an index page is missing (the runs changed 16 times during one lookup); run `socai verify`".into(),
        ))
    }

    /// `None` when a page is gone (a merge replaced its run since `list` was taken).
    fn lookup_in(
        &self,
        list: &[Arc<RunMeta>],
        lo: u64,
        hi: u64,
    ) -> Result<Option<Vec<u64>>, StorageError> {
        let mut seqs = Vec::new();
        for run in list {
            if run.count == 0 || hi < run.fences[0] || lo > run.last {
                continue;
            }
            let mut p = run.fences.partition_point(|&f| f < lo).saturating_sub(1);
            while p < run.fences.len() && run.fences[p] <= hi {
                let key = page_key(self.pre.page, run.first, run.end, p as u32);
                let Some(page) = self.tree.get(key).map_err(|e| self.err(e))? else {
                    return Ok(None);
                };
                let n = pairs_in(&page, || {
                    format!("index run [{}, {}) page {p}", run.first, run.end)
                })?;
                let start = partition(&page, n, |(f, _)| f < lo);
                for i in start..n {
                    let (f, seq) = pair_at(&page, i);
                    if f > hi {
                        break;
                    }
                    seqs.push(seq);
                }
                p += 1;
            }
        }
        Ok(Some(seqs))
    }

    /// Every pair, run by run, checking the structure of what the tree holds on the way: the
    /// runs follow each other, each run's pages exist and hold its count, each page starts at
    /// its fence, pairs are sorted, their seqs lie in the run's range, and no page belongs to no
    /// run. `each` gets every pair. Merges wait meanwhile.
    pub fn check(&self, mut each: impl FnMut(u64, u64)) -> Result<(), StorageError> {
        self.check_whole()?;
        let _merging = lock(&self.merging);
        // What the tree holds, not the list in memory: this is what a restart would read.
        let list = self.load_list()?;
        for run in list.iter() {
            let what = |why: String| {
                StorageError::Corrupt(format!("index run [{}, {}): {why}", run.first, run.end))
            };
            let mut count = 0u64;
            let mut last: Option<(u64, u64)> = None;
            for (i, r) in self
                .tree
                .scan_prefix(range_key(self.pre.page, run.first, run.end))
                .enumerate()
            {
                let (k, page) = r.map_err(|e| self.err(e))?;
                let index = k
                    .get(17..21)
                    .filter(|_| k.len() == 21)
                    .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                    .ok_or_else(|| what("a page key is malformed".into()))?;
                if index as usize != i || i >= run.fences.len() {
                    return Err(what(format!("page {index} is not named by its fence")));
                }
                let n = pairs_in(&page, || {
                    format!("index run [{}, {}) page {index}", run.first, run.end)
                })?;
                for j in 0..n {
                    let pair = pair_at(&page, j);
                    if j == 0 && pair.0 != run.fences[i] {
                        return Err(what(format!("page {index} does not start at its fence")));
                    }
                    if last.is_some_and(|l| l >= pair) {
                        return Err(what(format!("page {index} is out of order")));
                    }
                    if !(run.first..run.end).contains(&pair.1) {
                        return Err(what(format!(
                            "page {index} names entry {} outside the run",
                            pair.1
                        )));
                    }
                    last = Some(pair);
                    count += 1;
                    each(pair.0, pair.1);
                }
            }
            if count != run.count || last.map_or(0, |l| l.0) != run.last {
                return Err(what(format!(
                    "holds {count} pairs up to fingerprint {:016x}, its fence says {} up to {:016x}",
                    last.map_or(0, |l| l.0),
                    run.count,
                    run.last
                )));
            }
        }
        // Pages of no run: a merge that failed leaves its output marked until the next open.
        let listed: BTreeSet<(u64, u64)> = list.iter().map(|r| (r.first, r.end)).collect();
        let marked: BTreeSet<(u64, u64)> = self
            .tree
            .scan_prefix([self.pre.marker])
            .keys()
            .filter_map(|k| k.ok().and_then(|k| parse_range(&k)))
            .collect();
        let mut orphans = 0u64;
        for k in self.tree.scan_prefix([self.pre.page]).keys() {
            let k = k.map_err(|e| self.err(e))?;
            let range = parse_range(&k);
            if !range.is_some_and(|r| listed.contains(&r) || marked.contains(&r)) {
                orphans += 1;
            }
        }
        if orphans > 0 {
            return Err(StorageError::Corrupt(format!(
                "{orphans} index pages belong to no run"
            )));
        }
        Ok(())
    }

    /// Every listed run's fingerprints, in chunks of about `chunk` (the new-id filter's fill:
    /// it must see every pair). Merges go on meanwhile: a run whose pages a merge removed is read
    /// again from a fresh list, from the merged run (a fingerprint given twice is harmless to a
    /// filter). `each` returns `false` to stop early, and then so does this (`Ok(false)`).
    pub fn fingerprints(
        &self,
        chunk: usize,
        mut each: impl FnMut(&[u64]) -> bool,
    ) -> Result<bool, StorageError> {
        let chunk = chunk.max(1);
        // Every pair of the entries below `done` has been given.
        let mut done = 0u64;
        for _ in 0..1000 {
            self.check_whole()?;
            let list = self.snapshot();
            let mut complete = true;
            let from = done;
            for run in list.iter().filter(|r| r.end > from) {
                let mut buf = Vec::with_capacity(chunk);
                let mut count = 0u64;
                for page in self
                    .tree
                    .scan_prefix(range_key(self.pre.page, run.first, run.end))
                    .values()
                {
                    let page = page.map_err(|e| self.err(e))?;
                    for j in
                        0..pairs_in(&page, || format!("index run [{}, {})", run.first, run.end))?
                    {
                        buf.push(pair_at(&page, j).0);
                        count += 1;
                        if buf.len() >= chunk {
                            if !each(&buf) {
                                return Ok(false);
                            }
                            buf.clear();
                        }
                    }
                }
                if !buf.is_empty() && !each(&buf) {
                    return Ok(false);
                }
                if count != run.count {
                    // Merged away while it was read: a fresh list holds what it became. A run
                    // still listed that holds other than its count is damaged.
                    if self.snapshot().iter().any(|r| Arc::ptr_eq(r, run)) {
                        return Err(StorageError::Corrupt(format!(
                            "index run [{}, {}) holds {count} pairs, its fence says {}; run \
                             `socai verify`",
                            run.first, run.end, run.count
                        )));
                    }
                    complete = false;
                    break;
                }
                done = run.end;
            }
            if complete {
                return Ok(true);
            }
        }
        Err(StorageError::Corrupt(
            "an index run kept changing while it was read (1000 times); run `socai verify`".into(),
        ))
    }

    /// Every pair, in (fingerprint, seq) order across all runs (one page per run in memory), so
    /// that the pairs sharing a fingerprint come together. `each` returns `false` to stop.
    /// Merges wait meanwhile.
    pub fn in_fingerprint_order(
        &self,
        mut each: impl FnMut(u64, u64) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        self.check_whole()?;
        let _merging = lock(&self.merging);
        let list = self.snapshot();
        for pair in self.merged(&list)? {
            let (fp, seq) = pair?;
            if !each(fp, seq)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The pairs of `runs` in (fingerprint, seq) order: a k-way merge holding one page per run.
    fn merged<'a>(&'a self, runs: &'a [Arc<RunMeta>]) -> Result<Merged<'a>, StorageError> {
        let mut merged = Merged {
            runs: self,
            list: runs,
            sources: runs
                .iter()
                .map(|r| {
                    self.tree
                        .scan_prefix(range_key(self.pre.page, r.first, r.end))
                })
                .collect(),
            current: Vec::with_capacity(runs.len()),
            heap: BinaryHeap::new(),
        };
        for s in 0..runs.len() {
            merged.current.push((sled::IVec::default(), 0, 0));
            merged.next_page(s)?;
        }
        Ok(merged)
    }

    /// The first window of [`FANOUT`] adjacent runs of one generation, if any.
    fn window(list: &[Arc<RunMeta>]) -> Option<usize> {
        (0..list.len().saturating_sub(FANOUT - 1)).find(|&i| {
            list[i..i + FANOUT]
                .iter()
                .all(|r| r.generation == list[i].generation)
        })
    }

    /// Merges one window of runs, if there is one; `Ok(false)` when there was nothing to merge
    /// (or the merger was told to stop, or an earlier merge failed). A merge that fails deletes
    /// what it wrote, and no merge runs again until the store is opened again.
    pub fn merge_step(&self) -> Result<bool, StorageError> {
        let _merging = lock(&self.merging);
        if self.merge_failed.load(Ordering::Acquire) || self.broken().is_some() {
            return Ok(false);
        }
        let list = self.snapshot();
        let Some(i) = Self::window(&list) else {
            return Ok(false);
        };
        let inputs = &list[i..i + FANOUT];
        let (first, end) = (inputs[0].first, inputs[FANOUT - 1].end);
        match self.merge(inputs) {
            Ok(Some(merged)) => {
                self.retire(inputs, merged);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                self.merge_failed.store(true, Ordering::Release);
                // What it wrote goes (also at the next open, through the marker).
                let _ = self.delete_pages(first, end, false);
                let _ = self.tree.remove(range_key(self.pre.marker, first, end));
                Err(e)
            }
        }
    }

    /// Writes the merge of `inputs` and installs it; `None` if told to stop first.
    fn merge(&self, inputs: &[Arc<RunMeta>]) -> Result<Option<RunMeta>, StorageError> {
        let (first, end) = (inputs[0].first, inputs[FANOUT - 1].end);
        let generation = inputs[0].generation.saturating_add(1);
        // Stream the inputs' pairs in order into the output's pages.
        let pairs = self.merged(inputs)?;
        let marker = range_key(self.pre.marker, first, end);
        let mut batch = sled::Batch::default();
        batch.insert(&marker[..], &[][..]);
        let mut page = Vec::with_capacity(PAGE_PAIRS * PAIR);
        let (mut fences, mut count, mut last) = (Vec::new(), 0u64, 0u64);
        let mut in_batch = 0usize;
        for pair in pairs {
            let pair = pair?;
            if page.is_empty() {
                fences.push(pair.0);
            }
            page.extend_from_slice(&pair.0.to_be_bytes());
            page.extend_from_slice(&pair.1.to_be_bytes());
            (count, last) = (count + 1, pair.0);
            if page.len() == PAGE_PAIRS * PAIR {
                let k = page_key(self.pre.page, first, end, fences.len() as u32 - 1);
                let full = std::mem::replace(&mut page, Vec::with_capacity(PAGE_PAIRS * PAIR));
                batch.insert(&k[..], full);
                in_batch += 1;
                if in_batch == MERGE_CHUNK_PAGES {
                    self.tree
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(|e| self.err(e))?;
                    in_batch = 0;
                    if self.stop.load(Ordering::Acquire) {
                        // The marker, applied with the first pages, lets the next open delete
                        // what was written.
                        return Ok(None);
                    }
                }
            }
        }
        if !page.is_empty() {
            let k = page_key(self.pre.page, first, end, fences.len() as u32 - 1);
            batch.insert(&k[..], page);
        }
        let expected: u64 = inputs.iter().map(|r| r.count).sum();
        if count != expected {
            return Err(StorageError::Corrupt(format!(
                "merging index runs [{first}, {end}): read {count} pairs, their fences say {expected}; run `socai verify`"
            )));
        }
        let merged = RunMeta {
            first,
            end,
            generation,
            count,
            last,
            fences,
        };
        // Install: the new fence in, the inputs' fences out, their pages marked as garbage.
        batch.insert(
            &range_key(self.pre.fence, first, end)[..],
            encode_fence(&merged),
        );
        batch.remove(&marker[..]);
        for r in inputs {
            batch.remove(&range_key(self.pre.fence, r.first, r.end)[..]);
            batch.insert(&range_key(self.pre.marker, r.first, r.end)[..], &[][..]);
        }
        self.tree.apply_batch(batch).map_err(|e| self.err(e))?;
        Ok(Some(merged))
    }

    /// After a merge is installed: lists it in place of its inputs and deletes their pages (a
    /// lookup that still holds the old list retries). Failures here leave marked garbage for
    /// the next open.
    fn retire(&self, inputs: &[Arc<RunMeta>], merged: RunMeta) {
        {
            let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
            let at = list
                .iter()
                .position(|r| r.first == merged.first)
                .expect("the merged runs are still listed: only the merger removes runs");
            let mut next: Vec<Arc<RunMeta>> = list.iter().cloned().collect();
            next.splice(at..at + FANOUT, [Arc::new(merged)]);
            *list = Arc::new(next);
        }
        for r in inputs {
            let done = self.delete_pages(r.first, r.end, true).and_then(|()| {
                if self.stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                self.tree
                    .remove(range_key(self.pre.marker, r.first, r.end))
                    .map(|_| ())
                    .map_err(|e| self.err(e))
            });
            if let Err(e) = done {
                tracing::warn!(error = %e, "deleting merged index pages failed; the next open deletes them");
                return;
            }
        }
    }

    /// Merges until no window is left (tests and benches).
    pub fn merge_all(&self) -> Result<(), StorageError> {
        while self.merge_step()? {}
        Ok(())
    }

    /// The merger's loop: merges whenever a run is installed, until [`Runs::stop`].
    pub fn run_merger(&self) {
        loop {
            {
                let mut woken = lock(&self.wake.0);
                while !*woken && !self.stop.load(Ordering::Acquire) {
                    woken = self
                        .wake
                        .1
                        .wait_timeout(woken, std::time::Duration::from_secs(1))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                *woken = false;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            // Told to stop between merges (the store is being reopened or closed): none begun.
            while !self.stop.load(Ordering::Acquire) {
                match self.merge_step() {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "merging index runs failed; lookups still work (each reads one page per run), merges resume when the store is opened again; run `socai verify`");
                        break;
                    }
                }
            }
        }
    }

    /// Tells the merger to stop: it leaves after the page batch it is writing.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _woken = lock(&self.wake.0);
        self.wake.1.notify_all();
    }
}

/// Pairs of several runs in (fingerprint, seq) order ([`Runs::merged`]).
struct Merged<'a> {
    runs: &'a Runs,
    list: &'a [Arc<RunMeta>],
    sources: Vec<sled::Iter>,
    /// Each source's current page, its pair count and the next pair's index.
    current: Vec<(sled::IVec, usize, usize)>,
    heap: BinaryHeap<Reverse<((u64, u64), usize)>>,
}

impl Merged<'_> {
    /// Loads source `s`'s next page, if it has one, and queues its first pair.
    fn next_page(&mut self, s: usize) -> Result<(), StorageError> {
        let Some(page) = self.sources[s].next() else {
            return Ok(());
        };
        let page = page.map_err(|e| self.runs.err(e))?.1;
        let run = &self.list[s];
        let n = pairs_in(&page, || format!("index run [{}, {})", run.first, run.end))?;
        self.heap.push(Reverse((pair_at(&page, 0), s)));
        self.current[s] = (page, n, 0);
        Ok(())
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<(u64, u64), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut top = self.heap.peek_mut()?;
        let Reverse((pair, s)) = *top;
        let (page, n, at) = &mut self.current[s];
        *at += 1;
        if *at < *n {
            // The source's next pair takes the top's place: one sift down when `top` drops,
            // where a pop and a push would sift twice.
            *top = Reverse((pair_at(page, *at), s));
        } else {
            PeekMut::pop(top);
            if let Err(e) = self.next_page(s) {
                return Some(Err(e));
            }
        }
        Some(Ok(pair))
    }
}

/// The first index in `0..n` of `page` whose pair does not satisfy `pred` (pairs sorted).
fn partition(page: &[u8], n: usize, pred: impl Fn((u64, u64)) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(pair_at(page, mid)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const PRE: Prefixes = Prefixes {
        page: b'r',
        fence: b'R',
        marker: b'w',
    };

    fn open(dir: &std::path::Path) -> (sled::Db, Runs) {
        // sled releases the lock of a dropped store from a background thread.
        let mut tries = 0;
        let db = loop {
            // As the store opens sled: no background flusher (dropping the Db flushes). With
            // it, two of these tests once hung in sled (io threads, the flusher and an insert
            // waiting on each other; sled #1308, #1412).
            match sled::Config::new().path(dir).flush_every_ms(None).open() {
                Ok(db) => break db,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("sled: {e}"),
            }
        };
        let tree = db.open_tree("t").expect("tree");
        let runs = Runs::open(tree, PRE, dir.to_path_buf()).expect("runs");
        (db, runs)
    }

    fn commit(runs: &Runs, first: u64, pairs: Vec<(u64, u64)>, n: u64) {
        let mut b = sled::Batch::default();
        let run = runs.add(&mut b, first, first + n, pairs);
        runs.tree.apply_batch(b).expect("batch");
        runs.installed(run);
    }

    /// Commits of `sizes` entries; entry seq gets fingerprint `fps[seq % fps.len()]` (few
    /// distinct values: many collisions, pairs straddling pages).
    fn fill(runs: &Runs, sizes: &[u64], fps: &[u64], model: &mut BTreeMap<u64, Vec<u64>>) {
        let mut seq = runs.end();
        for &n in sizes {
            let pairs: Vec<(u64, u64)> = (seq..seq + n)
                .map(|s| (fps[s as usize % fps.len()], s))
                .collect();
            for &(fp, s) in &pairs {
                model.entry(fp).or_default().push(s);
            }
            commit(runs, seq, pairs, n);
            seq += n;
        }
    }

    fn assert_matches(runs: &Runs, model: &BTreeMap<u64, Vec<u64>>, fps: &[u64]) {
        for fp in fps.iter().chain([&u64::MAX, &0, &12345]) {
            let want = model.get(fp).cloned().unwrap_or_default();
            assert_eq!(runs.lookup(*fp).expect("lookup"), want, "fingerprint {fp}");
        }
        // A range: every pair whose fingerprint lies in it.
        for w in fps.windows(2) {
            let (lo, hi) = (w[0].min(w[1]), w[0].max(w[1]));
            let mut want: Vec<u64> = model.range(lo..=hi).flat_map(|(_, s)| s.clone()).collect();
            want.sort_unstable();
            assert_eq!(
                runs.lookup_range(lo, hi).expect("lookup"),
                want,
                "{lo}..={hi}"
            );
        }
        let mut ordered = Vec::new();
        runs.in_fingerprint_order(|fp, seq| {
            ordered.push((fp, seq));
            Ok(true)
        })
        .expect("in order");
        assert!(
            ordered.windows(2).all(|w| w[0] < w[1]),
            "in (fingerprint, seq) order"
        );
        let mut all = Vec::new();
        runs.check(|fp, seq| all.push((fp, seq))).expect("check");
        assert_eq!(ordered.len(), all.len());
        all.sort_unstable();
        let mut want: Vec<(u64, u64)> = model
            .iter()
            .flat_map(|(fp, seqs)| seqs.iter().map(|s| (*fp, *s)))
            .collect();
        want.sort_unstable();
        assert_eq!(all, want);
        let mut given = Vec::new();
        let whole = runs
            .fingerprints(100, |fps| {
                given.extend_from_slice(fps);
                true
            })
            .expect("fingerprints");
        assert!(whole);
        given.sort_unstable();
        let want: Vec<u64> = want.iter().map(|&(fp, _)| fp).collect();
        assert_eq!(given, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Lookups and the full scan agree with a plain map through commits, merges, and a
        /// reopen.
        #[test]
        fn runs_agree_with_a_map_through_merges_and_reopen(
            sizes in proptest::collection::vec(1u64..700, 1..40),
            fps in proptest::collection::vec(any::<u64>(), 1..30),
            merge_every in 1usize..12,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut model = BTreeMap::new();
            {
                let (_db, runs) = open(dir.path());
                for (i, chunk) in sizes.chunks(merge_every).enumerate() {
                    fill(&runs, chunk, &fps, &mut model);
                    if i % 2 == 0 {
                        runs.merge_all().expect("merge");
                    }
                }
                assert_matches(&runs, &model, &fps);
                for w in runs.snapshot().windows(2) {
                    prop_assert_eq!(w[0].end, w[1].first);
                }
            }
            let (_db, runs) = open(dir.path());
            assert_matches(&runs, &model, &fps);
            runs.merge_all().expect("merge");
            prop_assert!(Runs::window(&runs.snapshot()).is_none());
            assert_matches(&runs, &model, &fps);
        }
    }

    #[test]
    fn merges_keep_few_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, runs) = open(dir.path());
        let mut model = BTreeMap::new();
        let fps: Vec<u64> = (0..1000).map(|i| i * 7919).collect();
        for _ in 0..600 {
            fill(&runs, &[50], &fps, &mut model);
            runs.merge_all().expect("merge");
        }
        // 600 commits in base 8: 1130 → 1 + 1 + 3 + 0 runs.
        assert_eq!(runs.snapshot().len(), 5);
        assert_matches(&runs, &model, &fps[..20]);
    }

    #[test]
    fn an_interrupted_merge_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut model = BTreeMap::new();
        let fps: Vec<u64> = (0..5000).collect();
        {
            let (_db, runs) = open(dir.path());
            // Each commit fills many pages, so a merge writes more than one page batch.
            fill(&runs, &[40_000; FANOUT], &fps, &mut model);
            // The merger is told to stop: it leaves after its first page batch, with the marker.
            runs.stop.store(true, Ordering::Release);
            assert!(!runs.merge_step().expect("merge"));
            let pages = runs.tree.scan_prefix([PRE.page]).count();
            assert!(
                pages > FANOUT * 40_000 / PAGE_PAIRS,
                "the merge wrote pages"
            );
            assert_eq!(runs.tree.scan_prefix([PRE.marker]).count(), 1);
        }
        let (_db, runs) = open(dir.path());
        assert_eq!(runs.tree.scan_prefix([PRE.marker]).count(), 0);
        assert_eq!(runs.snapshot().len(), FANOUT);
        assert_matches(&runs, &model, &fps[..50]);
        runs.merge_all().expect("merge");
        assert_eq!(runs.snapshot().len(), 1);
        assert_matches(&runs, &model, &fps[..50]);
    }

    #[test]
    fn a_run_short_of_its_fence_is_named_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, runs) = open(dir.path());
        let fps: Vec<u64> = (0..5000).collect();
        fill(
            &runs,
            &[3 * PAGE_PAIRS as u64, 10],
            &fps,
            &mut BTreeMap::new(),
        );
        let (page, _) = runs
            .tree
            .scan_prefix([PRE.page])
            .nth(1)
            .expect("a second page")
            .expect("page");
        runs.tree.remove(page).expect("remove");
        let mut calls = 0;
        let err = runs
            .fingerprints(1 << 20, |_| {
                calls += 1;
                true
            })
            .expect_err("a page is gone");
        assert!(err.to_string().contains("its fence says"), "{err}");
        // Read once, not again and again waiting for a merge that is not coming.
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_lookup_during_merges_sees_every_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, runs) = open(dir.path());
        let runs = Arc::new(runs);
        let mut model = BTreeMap::new();
        let fps: Vec<u64> = (0..300).collect();
        fill(&runs, &[997; 40], &fps, &mut model);
        let merger = {
            let runs = runs.clone();
            std::thread::spawn(move || runs.merge_all())
        };
        while !merger.is_finished() {
            for fp in [0u64, 150, 299] {
                assert_eq!(runs.lookup(fp).expect("lookup"), model[&fp]);
            }
        }
        merger.join().expect("merger").expect("merge");
        assert_matches(&runs, &model, &fps);
    }
}
