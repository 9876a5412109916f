//! Byte-pair merging of one pre-tokenized piece.
//!
//! BPE's rule: while some adjacent pair of symbols has a merge, merge the
//! pair of lowest rank, the leftmost on ties. Rescanning every pair after
//! each merge and removing from a `Vec` costs O(n^2) per piece, and a piece
//! can be a whole prompt (a run of letters without spaces is one piece): a
//! tenant could buy minutes of CPU with one request.
//!
//! Here the symbols form a linked list and the candidate merges sit in a
//! min-heap keyed by (rank, position of the left symbol). A merge changes
//! only the pairs on either side of it, so it pushes at most two new
//! candidates; candidates made stale by earlier merges are not removed but
//! skipped when popped (lazy invalidation, as in HF `tokenizers`' word.rs).
//!
//! Complexity: at most (n - 1) + 2 x merges <= 3n candidates are pushed, so
//! at most 3n are popped, each O(log n): O(n log n) per piece of n symbols.
//!
//! Exactness: positions are the symbols' original indices and merging keeps
//! the left symbol's index, so list order is index order and "leftmost" is
//! "smallest index". A popped candidate is applied only if the pair now at
//! its position still has a merge of its rank; as each rank belongs to one
//! pair, that is the pair it was pushed for. Every current pair with a merge
//! has a candidate in the heap (pushed when the pair formed), so the smallest
//! valid candidate is exactly the pair the quadratic rule picks. The test
//! module keeps that quadratic rule as the reference.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// (left id, right id) -> (rank, merged id). Ranks are distinct per pair.
pub(crate) type MergeMap = HashMap<(u32, u32), (u32, u32)>;

const NIL: usize = usize::MAX;

/// Merges `symbols` in place; returns how many candidates were popped (the
/// work done, each pop O(log n)), which is at most 3 x `symbols.len()`.
pub(crate) fn merge(symbols: &mut Vec<u32>, merges: &MergeMap) -> usize {
    let n = symbols.len();
    if n < 2 {
        return 0;
    }
    let ids = symbols;
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
    let mut next: Vec<usize> = (0..n).map(|i| if i + 1 == n { NIL } else { i + 1 }).collect();
    let mut alive = vec![true; n];
    let rank_of = |ids: &[u32], left: usize, right: usize| merges.get(&(ids[left], ids[right])).map(|&(r, _)| r);
    let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::with_capacity(n);
    for i in 0..n - 1 {
        if let Some(rank) = rank_of(ids, i, i + 1) {
            heap.push(Reverse((rank, i)));
        }
    }
    let mut pops = 0;
    while let Some(Reverse((rank, i))) = heap.pop() {
        pops += 1;
        let j = next[i];
        if !alive[i] || j == NIL {
            continue;
        }
        let Some(&(now_rank, merged)) = merges.get(&(ids[i], ids[j])) else { continue };
        if now_rank != rank {
            continue; // stale: the pair at i changed since this was pushed
        }
        ids[i] = merged;
        alive[j] = false;
        let k = next[j];
        next[i] = k;
        if k != NIL {
            prev[k] = i;
            if let Some(r) = rank_of(ids, i, k) {
                heap.push(Reverse((r, i)));
            }
        }
        let p = prev[i];
        if p != NIL
            && let Some(r) = rank_of(ids, p, i)
        {
            heap.push(Reverse((r, p)));
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i != NIL {
        out.push(ids[i]);
        i = next[i];
    }
    *ids = out;
    pops
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The quadratic rule, as the engine had it: rescan every pair, merge
    /// the lowest (rank, index), remove from the vector. The reference.
    fn reference(mut syms: Vec<u32>, merges: &MergeMap) -> Vec<u32> {
        loop {
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| merges.get(&(w[0], w[1])).map(|&(r, m)| (r, i, m)))
                .min();
            let Some((_, i, merged)) = best else { break };
            syms[i] = merged;
            syms.remove(i + 1);
        }
        syms
    }

    /// A random merge table over ids 0..base, each merge making a new id;
    /// several pairs may merge into the same id (as "a bc" and "ab c" do).
    fn merge_table(base: u32, pairs: &[(u32, u32, bool)]) -> MergeMap {
        let mut map = MergeMap::new();
        let mut next_id = base;
        for (rank, &(a, b, reuse)) in pairs.iter().enumerate() {
            let (a, b) = (a % next_id, b % next_id);
            let merged = if reuse && next_id > base {
                next_id - 1
            } else {
                next_id += 1;
                next_id - 1
            };
            map.entry((a, b)).or_insert((rank as u32, merged));
        }
        map
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn the_heap_merge_gives_the_quadratic_rules_ids(
            syms in proptest::collection::vec(0u32..4, 0..40),
            pairs in proptest::collection::vec((0u32..12, 0u32..12, any::<bool>()), 0..24),
        ) {
            let merges = merge_table(4, &pairs);
            let mut fast = syms.clone();
            let pops = merge(&mut fast, &merges);
            prop_assert_eq!(&fast, &reference(syms.clone(), &merges));
            prop_assert!(pops <= 3 * syms.len());
        }
    }

    #[test]
    fn a_long_run_costs_a_linear_number_of_heap_pops() {
        // Ids 0 = "a", 1 = "aa", 2 = "aaaa", ... : every pair of equal ids merges,
        // the worst case for the quadratic rule (n/2 merges of rank 0 first).
        let merges: MergeMap = (0..8).map(|k| ((k, k), (k, k + 1))).collect();
        let n = 256 * 1024;
        let mut syms = vec![0u32; n];
        let pops = merge(&mut syms, &merges);
        assert_eq!(syms, vec![8u32; n / 256], "runs of 256 merge into one id each");
        assert!(pops <= 3 * n, "{pops} pops for {n} symbols");
        // The quadratic rule scans ~n pairs for each of its n - 1 merges: ~6.9e10 here.
    }

    #[test]
    fn short_inputs_need_no_work() {
        let merges: MergeMap = [((0, 0), (0, 1))].into_iter().collect();
        for syms in [vec![], vec![0]] {
            let mut s = syms.clone();
            assert_eq!(merge(&mut s, &merges), 0);
            assert_eq!(s, syms);
        }
    }
}
