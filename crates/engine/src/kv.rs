//! Block pool for the paged KV cache, with prefix caching.
//!
//! Invariants (checked by `check_invariants`, exercised by tests):
//! - Every block is either *used* (`ref_count > 0`, not on the free list) or
//!   *free* (`ref_count == 0`, on the free list exactly once).
//! - A block has a `key` iff the `cached` map points to it under that key's
//!   hash. Cached blocks are full and immutable: only the sequence that filled
//!   them wrote them, and they are shared read-only afterwards.
//! - The free list is doubly linked through block indices. Uncached free
//!   blocks sit at the head, cached ones are appended at the tail when
//!   released, so allocation takes plain blocks first and then evicts the
//!   least recently released cached block (LRU).
//!
//! - A block's key chains every token before it back to a root, the
//!   sequence's `CacheSalt`: sequences of different salts never share a
//!   block, so a tenant cannot learn from a cache hit what another sent.
//!
//! Complexity: allocate, retain, release, evict are O(1); a prefix lookup is
//! one expected-O(1) hash probe per block. Nothing here allocates per call
//! except `allocate_n`'s result vector.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::error::EngineError;

const NIL: u32 = u32::MAX;

pub type BlockId = u32;

/// Identity of a full block's content: the chain hash of every token up to
/// its end, plus the parent hash and own tokens to rule out collisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockKey {
    pub hash: u64,
    pub parent: u64,
    pub tokens: Box<[u32]>,
}

impl BlockKey {
    pub fn new(parent: u64, tokens: &[u32]) -> Self {
        BlockKey { hash: chain_hash(parent, tokens), parent, tokens: tokens.into() }
    }
}

/// The root of a sequence's chain of block hashes: which prefix-cache
/// entries it may reuse and which it publishes to. The worker salts with
/// the tenant, as vLLM's `cache_salt` does, so that a cache hit (and the
/// `cached_tokens` it reports) never tells a tenant what another one sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheSalt(u64);

impl CacheSalt {
    /// Shared by every sequence added without a salt (`Engine::add_sequence`).
    pub const NONE: CacheSalt = CacheSalt(0);

    /// The salt of `name`. Distinct names give distinct roots up to 64-bit
    /// hash collisions, which only a 2^64 preimage search could aim at one.
    pub fn new(name: &str) -> Self {
        let mut h = std::hash::DefaultHasher::new();
        "reservoir cache salt".hash(&mut h);
        name.hash(&mut h);
        CacheSalt(h.finish())
    }

    /// The parent hash of a sequence's first block.
    pub fn root(self) -> u64 {
        self.0
    }
}

/// Hash of (parent hash, block tokens): equal iff the whole prefix is equal
/// (up to 64-bit collisions, which `BlockKey` equality then rejects).
pub fn chain_hash(parent: u64, tokens: &[u32]) -> u64 {
    // DefaultHasher::new() uses fixed keys: stable within a process, which is
    // all an in-memory cache needs.
    let mut h = std::hash::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

#[derive(Debug, Clone)]
struct Meta {
    ref_count: u32,
    prev: u32,
    next: u32,
    key: Option<BlockKey>,
}

#[derive(Debug)]
pub struct BlockPool {
    blocks: Vec<Meta>,
    head: u32,
    tail: u32,
    n_free: usize,
    cached: HashMap<u64, BlockId>,
}

impl BlockPool {
    pub fn new(n_blocks: usize) -> Self {
        let n = n_blocks.min(NIL as usize - 1);
        let blocks = (0..n)
            .map(|i| Meta {
                ref_count: 0,
                prev: if i == 0 { NIL } else { i as u32 - 1 },
                next: if i + 1 == n { NIL } else { i as u32 + 1 },
                key: None,
            })
            .collect();
        BlockPool {
            blocks,
            head: if n == 0 { NIL } else { 0 },
            tail: if n == 0 { NIL } else { n as u32 - 1 },
            n_free: n,
            cached: HashMap::new(),
        }
    }

    pub fn n_total(&self) -> usize {
        self.blocks.len()
    }
    pub fn n_free(&self) -> usize {
        self.n_free
    }
    /// Blocks holding reusable prefix content (used or free).
    pub fn n_cached(&self) -> usize {
        self.cached.len()
    }
    pub fn ref_count(&self, b: BlockId) -> u32 {
        self.blocks.get(b as usize).map_or(0, |m| m.ref_count)
    }

    fn unlink(&mut self, b: BlockId) {
        let (prev, next) = (self.blocks[b as usize].prev, self.blocks[b as usize].next);
        match prev {
            NIL => self.head = next,
            p => self.blocks[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.blocks[n as usize].prev = prev,
        }
        self.blocks[b as usize].prev = NIL;
        self.blocks[b as usize].next = NIL;
        self.n_free -= 1;
    }

    fn push_head(&mut self, b: BlockId) {
        self.blocks[b as usize].prev = NIL;
        self.blocks[b as usize].next = self.head;
        match self.head {
            NIL => self.tail = b,
            h => self.blocks[h as usize].prev = b,
        }
        self.head = b;
        self.n_free += 1;
    }

    fn push_tail(&mut self, b: BlockId) {
        self.blocks[b as usize].next = NIL;
        self.blocks[b as usize].prev = self.tail;
        match self.tail {
            NIL => self.head = b,
            t => self.blocks[t as usize].next = b,
        }
        self.tail = b;
        self.n_free += 1;
    }

    /// Takes `n` blocks or none: an `Err` leaves the pool untouched.
    pub fn allocate_n(&mut self, n: usize) -> Result<Vec<BlockId>, EngineError> {
        if n > self.n_free {
            return Err(EngineError::OutOfBlocks { needed: n, free: self.n_free });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let b = self.head;
            self.unlink(b);
            // Reusing a cached block evicts its content.
            if let Some(k) = self.blocks[b as usize].key.take() {
                self.cached.remove(&k.hash);
            }
            self.blocks[b as usize].ref_count = 1;
            out.push(b);
        }
        Ok(out)
    }

    /// Adds a reference (a prefix-cache hit may revive a free cached block).
    pub fn retain(&mut self, b: BlockId) -> Result<(), EngineError> {
        if b as usize >= self.blocks.len() {
            return Err(EngineError::InvalidArgument(format!("block {b} out of range")));
        }
        if self.blocks[b as usize].ref_count == 0 {
            self.unlink(b);
        }
        self.blocks[b as usize].ref_count += 1;
        Ok(())
    }

    /// Drops a reference; at zero the block becomes free (cached content kept).
    /// Releasing a free or unknown block is an error and changes nothing.
    pub fn release(&mut self, b: BlockId) -> Result<(), EngineError> {
        let Some(m) = self.blocks.get_mut(b as usize).filter(|m| m.ref_count > 0) else {
            return Err(EngineError::InvalidArgument(format!("release of free or unknown block {b}")));
        };
        m.ref_count -= 1;
        if m.ref_count == 0 {
            if m.key.is_some() {
                self.push_tail(b);
            } else {
                self.push_head(b);
            }
        }
        Ok(())
    }

    /// The cached block holding exactly this content, if any.
    pub fn lookup(&self, key: &BlockKey) -> Option<BlockId> {
        let &b = self.cached.get(&key.hash)?;
        (self.blocks[b as usize].key.as_ref() == Some(key)).then_some(b)
    }

    /// Publishes a used, full block's content for reuse. A no-op when that
    /// content is already cached elsewhere or the block already has a key.
    pub fn register(&mut self, b: BlockId, key: BlockKey) {
        if self.blocks[b as usize].key.is_some() || self.cached.contains_key(&key.hash) {
            return;
        }
        self.cached.insert(key.hash, b);
        self.blocks[b as usize].key = Some(key);
    }

    /// Verifies every invariant in the header; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = vec![false; self.blocks.len()];
        let (mut cur, mut prev, mut count) = (self.head, NIL, 0usize);
        let mut seen_cached = false;
        while cur != NIL {
            let m = self.blocks.get(cur as usize).ok_or("free list index out of range")?;
            if seen[cur as usize] {
                return Err(format!("block {cur} twice on free list"));
            }
            seen[cur as usize] = true;
            if m.ref_count != 0 {
                return Err(format!("block {cur} on free list with ref {}", m.ref_count));
            }
            if m.prev != prev {
                return Err(format!("block {cur}: bad prev link"));
            }
            if m.key.is_some() {
                seen_cached = true;
            } else if seen_cached {
                // Uncached blocks enter at the head, cached at the tail, and
                // eviction only removes keys from the head: order must hold.
                return Err(format!("uncached free block {cur} after a cached one"));
            }
            count += 1;
            prev = cur;
            cur = m.next;
        }
        if prev != self.tail {
            return Err("tail mismatch".into());
        }
        if count != self.n_free {
            return Err(format!("free count {} but {count} on list", self.n_free));
        }
        for (i, m) in self.blocks.iter().enumerate() {
            if m.ref_count == 0 && !seen[i] {
                return Err(format!("block {i} unreferenced but not free"));
            }
            if let Some(k) = &m.key
                && self.cached.get(&k.hash) != Some(&(i as u32))
            {
                return Err(format!("block {i} key not in map"));
            }
        }
        for (h, &b) in &self.cached {
            if self.blocks[b as usize].key.as_ref().map(|k| k.hash) != Some(*h) {
                return Err(format!("map entry for block {b} stale"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn allocate_release_roundtrip() {
        let mut p = BlockPool::new(4);
        let a = p.allocate_n(3).unwrap();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(p.n_free(), 1);
        p.check_invariants().unwrap();
        assert_eq!(p.allocate_n(2), Err(EngineError::OutOfBlocks { needed: 2, free: 1 }));
        p.check_invariants().unwrap();
        assert_eq!(p.n_free(), 1);
        p.retain(a[1]).unwrap();
        p.release(a[1]).unwrap();
        assert_eq!(p.ref_count(a[1]), 1);
        for b in a {
            p.release(b).unwrap();
        }
        assert_eq!(p.n_free(), 4);
        assert!(p.release(0).is_err(), "double release");
        assert!(p.release(99).is_err() && p.retain(99).is_err());
        p.check_invariants().unwrap();
    }

    #[test]
    fn cached_blocks_are_evicted_lru_after_plain_ones() {
        let mut p = BlockPool::new(3);
        let a = p.allocate_n(3).unwrap();
        let (k0, k1) = (BlockKey::new(0, &[1, 2]), BlockKey::new(7, &[3, 4]));
        p.register(a[0], k0.clone());
        p.register(a[1], k1.clone());
        p.release(a[0]).unwrap(); // cached, released first: evicted first
        p.release(a[1]).unwrap(); // cached
        p.release(a[2]).unwrap(); // plain: handed out first
        p.check_invariants().unwrap();
        assert_eq!(p.lookup(&k0), Some(a[0]));
        assert_eq!(p.allocate_n(1).unwrap(), vec![a[2]]);
        assert_eq!(p.allocate_n(1).unwrap(), vec![a[0]]);
        assert_eq!(p.lookup(&k0), None, "evicted");
        assert_eq!(p.lookup(&k1), Some(a[1]));
        p.retain(a[1]).unwrap(); // hit on a free cached block revives it
        assert_eq!(p.n_free(), 0);
        p.check_invariants().unwrap();
        // Same hash but different content is not a hit.
        let fake = BlockKey { hash: k1.hash, parent: 1, tokens: k1.tokens.clone() };
        assert_eq!(p.lookup(&fake), None);
    }

    proptest! {
        #[test]
        fn random_operations_keep_invariants(ops in proptest::collection::vec((0u8..4, 0usize..8), 1..200)) {
            let mut p = BlockPool::new(6);
            let mut held: Vec<BlockId> = Vec::new();
            for (op, arg) in ops {
                match op {
                    0 => {
                        let free = p.n_free();
                        match p.allocate_n(arg % 4) {
                            Ok(v) => held.extend(v),
                            Err(_) => prop_assert_eq!(p.n_free(), free),
                        }
                    }
                    1 if !held.is_empty() => {
                        let b = held.swap_remove(arg % held.len());
                        p.release(b).unwrap();
                    }
                    2 if !held.is_empty() => {
                        let b = held[arg % held.len()];
                        p.register(b, BlockKey::new(arg as u64, &[b]));
                    }
                    3 => {
                        if let Some(b) = p.lookup(&BlockKey::new(arg as u64, &[arg as u32 % 6])) {
                            p.retain(b).unwrap();
                            held.push(b);
                        }
                    }
                    _ => {}
                }
                prop_assert_eq!(p.check_invariants(), Ok(()));
                prop_assert_eq!(p.n_total() - p.n_free(), {
                    let mut u = held.clone(); u.sort(); u.dedup(); u.len()
                });
            }
        }
    }
}
