"""The paged KV cache of one engine replica, as vLLM V1's block pool keeps it (facts from
`v1/core/block_pool.py`, `kv_cache_manager.py`, `kv_cache_utils.py`; docs/model.md "LLM serving"):

- A request holds ceil(tokens / block_size) blocks for the tokens computed or scheduled so far;
  each step allocates only the difference (`allocate_blocks`): nothing is reserved for future output.
- Free blocks wait in a queue in eviction order, least recently used first. A finished or preempted
  request frees its blocks in reverse (the chain's tail first): blocks without a prefix key go to
  the front (reused first), blocks with one to the back, so cached prefixes live longest
  (`free_blocks`, vLLM v0.34's rule). Allocation pops the front and drops its prefix key
  (`evict_lru`).
- Prefix caching: a block that is full gets the key (prefix key, index in the request) — the chained
  block hash of vLLM, for contents the workload states are shared (a session's turns; `cache_full_blocks`).
  A new request takes the longest run of cached leading blocks, at most (tokens − 1) // block_size of
  them, since the last token is always recomputed (`match_prefix`). A cached block stays reusable
  while it is free, until popped. When two requests fill the same block at once, the first keeps the key.

Block b of slot s is row s·B + b of the block arrays; a request's block table is rq_blocks[row].
"""

from __future__ import annotations

from numba import njit

from capsim.serving.llm.plane import C_BLOCK, C_BLOCKS, C_KEY_W, C_PREFIX, I_USED_BLOCKS, MAX_SLOTS, compiled

_MIX = -7046029254386353131  # 0x9E3779B97F4A7C15 (Fibonacci hashing) as a signed 64-bit integer


@njit(cache=True, inline="always")
def prefix_key(p, slot, key, index):  # type: ignore[no-untyped-def]
    """The cache key of block `index` of prefix `key` on `slot` (one table for the whole fleet)."""
    return (key * p.cfg_i[C_KEY_W] + index) * MAX_SLOTS + slot


@njit(cache=True, inline="always")
def _home(p, key):  # type: ignore[no-untyped-def]
    h = key * _MIX
    return (h ^ (h >> 29)) & (p.ht_key.shape[0] - 1)


@compiled
def cache_lookup(p, key):  # type: ignore[no-untyped-def]
    """The block cached under `key`, or -1."""
    mask = p.ht_key.shape[0] - 1
    i = _home(p, key)
    while p.ht_key[i] != -1:
        if p.ht_key[i] == key:
            return p.ht_blk[i]
        i = (i + 1) & mask
    return -1


@compiled
def cache_insert(p, key, block):  # type: ignore[no-untyped-def]
    """Cache `block` under `key` unless the key is taken (the first block keeps it); True if cached."""
    mask = p.ht_key.shape[0] - 1
    i = _home(p, key)
    while p.ht_key[i] != -1:
        if p.ht_key[i] == key:
            return False
        i = (i + 1) & mask
    p.ht_key[i] = key
    p.ht_blk[i] = block
    p.blk_key[block] = key
    return True


@compiled
def cache_remove(p, key):  # type: ignore[no-untyped-def]
    """Drop `key` from the table (linear probing with backward-shift deletion: no tombstones)."""
    mask = p.ht_key.shape[0] - 1
    i = _home(p, key)
    while p.ht_key[i] != key:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if p.ht_key[j] == -1:
            break
        home = _home(p, p.ht_key[j])
        # move entry j into the hole at i unless its home lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            p.ht_key[i] = p.ht_key[j]
            p.ht_blk[i] = p.ht_blk[j]
            i = j
    p.ht_key[i] = -1


@compiled
def rebuild_table(p):  # type: ignore[no-untyped-def]
    """Re-insert every cached block into an emptied table (after the table was resized)."""
    for b in range(p.blk_key.shape[0]):
        key = p.blk_key[b]
        if key >= 0:
            p.blk_key[b] = -1
            cache_insert(p, key, b)


# -- the free queue -------------------------------------------------------------------------------


@compiled
def init_slot_blocks(p, s):  # type: ignore[no-untyped-def]
    """Every block of slot s free and uncached, in index order."""
    n = p.cfg_i[C_BLOCKS]
    first = s * n
    for b in range(first, first + n):
        if p.blk_key[b] >= 0:
            cache_remove(p, p.blk_key[b])
            p.blk_key[b] = -1
        p.blk_ref[b] = 0
        p.blk_prev[b] = b - 1 if b > first else -1
        p.blk_next[b] = b + 1 if b + 1 < first + n else -1
    p.free_head[s] = first
    p.free_tail[s] = first + n - 1
    p.free_n[s] = n


@njit(cache=True, inline="always")
def _unlink(p, s, b):  # type: ignore[no-untyped-def]
    prev, nxt = p.blk_prev[b], p.blk_next[b]
    if prev >= 0:
        p.blk_next[prev] = nxt
    else:
        p.free_head[s] = nxt
    if nxt >= 0:
        p.blk_prev[nxt] = prev
    else:
        p.free_tail[s] = prev
    p.blk_prev[b] = -1
    p.blk_next[b] = -1
    p.free_n[s] -= 1


@njit(cache=True, inline="always")
def _push_back(p, s, b):  # type: ignore[no-untyped-def]
    tail = p.free_tail[s]
    p.blk_prev[b] = tail
    p.blk_next[b] = -1
    if tail >= 0:
        p.blk_next[tail] = b
    else:
        p.free_head[s] = b
    p.free_tail[s] = b
    p.free_n[s] += 1


@njit(cache=True, inline="always")
def _push_front(p, s, b):  # type: ignore[no-untyped-def]
    head = p.free_head[s]
    p.blk_next[b] = head
    p.blk_prev[b] = -1
    if head >= 0:
        p.blk_prev[head] = b
    else:
        p.free_tail[s] = b
    p.free_head[s] = b
    p.free_n[s] += 1


@compiled
def evict_lru(p, s):  # type: ignore[no-untyped-def]
    """Take the front of slot s's free queue (the least recently used free block) for a new use;
    its prefix-cache key, if any, is dropped: its contents are about to be overwritten."""
    b = p.free_head[s]
    _unlink(p, s, b)
    if p.blk_key[b] >= 0:
        cache_remove(p, p.blk_key[b])
        p.blk_key[b] = -1
    p.blk_ref[b] = 1
    return b


@compiled
def free_blocks(p, s, row):  # type: ignore[no-untyped-def]
    """Release the request's blocks, tail first: a block nobody else holds goes back to the free
    queue, at the front if it has no prefix key (reused first), at the back if it has one."""
    for i in range(p.rq_nblocks[row] - 1, -1, -1):
        b = p.rq_blocks[row, i]
        p.blk_ref[b] -= 1
        if p.blk_ref[b] == 0:
            p.ints[I_USED_BLOCKS] -= 1
            if p.blk_key[b] >= 0:
                _push_back(p, s, b)
            else:
                _push_front(p, s, b)
    p.rq_nblocks[row] = 0
    p.rq_cached[row] = 0


# -- requests' blocks -------------------------------------------------------------------------------


@compiled
def match_prefix(p, s, row):  # type: ignore[no-untyped-def]
    """How many leading blocks of the request (not yet holding any) are cached on slot s: the
    longest run, at most (tokens − 1) // block_size. Their ids go to rq_blocks[row, :hits]; they are
    not taken yet (`allocate_blocks` takes them)."""
    if p.cfg_i[C_PREFIX] == 0:
        return 0
    tokens = p.rq_prompt[row] + p.rq_generated[row]
    limit = (tokens - 1) // p.cfg_i[C_BLOCK]
    hits = 0
    while hits < limit:
        b = cache_lookup(p, prefix_key(p, s, p.rq_key[row], hits))
        if b < 0:
            break
        p.rq_blocks[row, hits] = b
        hits += 1
    return hits


@compiled
def allocate_blocks(p, s, row, hits, new_tokens):  # type: ignore[no-untyped-def]
    """Give the request the blocks for `new_tokens` more tokens beyond its computed ones — after
    taking its `hits` prefix-cache blocks (from `match_prefix`; 0 when it already holds blocks) — if
    slot s has enough free blocks (cached free blocks count, and so do hit blocks nobody holds,
    which leave the free queue). False, and nothing changed, if not."""
    block = p.cfg_i[C_BLOCK]
    if hits == 0 and p.rq_computed[row] + new_tokens <= p.rq_nblocks[row] * block:
        # the common case, a decode inside its last block: no block to take (the rule below with
        # need = 0), only a block it fills to key; checked without a division, as this runs per token
        tokens = p.rq_computed[row] + new_tokens
        if (p.rq_cached[row] + 1) * block <= tokens:
            cache_full_blocks(p, s, row, tokens)
        return True
    held = p.rq_nblocks[row] if hits == 0 else hits
    computed = p.rq_computed[row] if hits == 0 else hits * block
    need = (computed + new_tokens + block - 1) // block - held
    idle_hits = 0
    for i in range(hits):
        idle_hits += p.blk_ref[p.rq_blocks[row, i]] == 0
    if need + idle_hits > p.free_n[s]:
        return False
    for i in range(hits):
        b = p.rq_blocks[row, i]
        if p.blk_ref[b] == 0:
            _unlink(p, s, b)
            p.ints[I_USED_BLOCKS] += 1
        p.blk_ref[b] += 1
    if hits > 0:
        p.rq_nblocks[row] = hits
        p.rq_cached[row] = hits
        p.rq_computed[row] = hits * block
    for _ in range(need):
        p.rq_blocks[row, p.rq_nblocks[row]] = evict_lru(p, s)
        p.rq_nblocks[row] += 1
    p.ints[I_USED_BLOCKS] += need
    cache_full_blocks(p, s, row, computed + new_tokens)
    return True


@compiled
def cache_full_blocks(p, s, row, tokens):  # type: ignore[no-untyped-def]
    """Give the prefix-cache key to every block of the request that `tokens` fill and has none yet."""
    if p.cfg_i[C_PREFIX] == 0:
        return
    full = tokens // p.cfg_i[C_BLOCK]
    for i in range(p.rq_cached[row], full):
        cache_insert(p, prefix_key(p, s, p.rq_key[row], i), p.rq_blocks[row, i])
    if full > p.rq_cached[row]:
        p.rq_cached[row] = full
