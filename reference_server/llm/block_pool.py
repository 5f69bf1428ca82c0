"""The KV block pool of the reference LLM server: which blocks a sequence holds, the free queue in
LRU order and the prefix cache — the rules of the simulator's pool (capsim/serving/llm/kvcache.py;
docs/model.md "LLM serving"), which are vLLM V1's (`v1/core/block_pool.py`, `kv_cache_manager.py`):

- A sequence holds ceil(tokens / block_size) blocks for the tokens computed or scheduled so far;
  each step allocates only the difference (`allocate`): nothing is reserved for future output.
- Free blocks wait in a queue in eviction order, least recently used first. A finished or
  preempted sequence frees its blocks tail first: a block without a prefix hash goes to the front
  (reused first), one with a hash to the back (`free`, vLLM v0.34). Allocation pops the front and
  drops that block's hash (its contents are about to be overwritten).
- Prefix caching: a block that is full gets the chained hash of its contents,
  hash(parent block's hash, its tokens) — vLLM's `hash_block_tokens` without extra keys; when two
  sequences fill blocks of equal contents, the first keeps the hash. A new sequence takes the
  longest run of cached leading blocks, at most (tokens − 1) // block_size of them (the last token
  is always recomputed: `match_prefix`). A cached block is reusable while it is free, until popped.

Pure Python, no torch: the scheduler's tests run it without a model. Where the simulator keys a
block by the workload's prefix key, the server hashes the tokens: the same rule on real contents.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(eq=False)
class SeqBlocks:
    """A sequence's side of the pool: its block table and how many of its leading blocks are hashed."""

    table: list[int] = field(default_factory=list)
    hashed: int = 0  # leading blocks whose hash has been set (or found taken)
    hashes: list[int] = field(default_factory=list)  # chained hashes of its full blocks, in order


class BlockPool:
    """`num_blocks` blocks of `block_size` token slots (see the module docstring)."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.ref = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.cached: dict[int, int] = {}  # hash -> block
        self.free_queue: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.used = 0

    @property
    def free(self) -> int:
        """Blocks in the free queue (cached or not)."""
        return len(self.free_queue)

    @property
    def usage(self) -> float:
        """Fraction of blocks held by sequences (vllm:kv_cache_usage_perc)."""
        return self.used / self.num_blocks

    def _chain(self, seq: SeqBlocks, tokens: list[int], full: int) -> None:
        """Extend the sequence's chained block hashes to its first `full` blocks."""
        bs = self.block_size
        for i in range(len(seq.hashes), full):
            parent = seq.hashes[i - 1] if i else None
            seq.hashes.append(hash((parent, tuple(tokens[i * bs : (i + 1) * bs]))))

    def match_prefix(self, seq: SeqBlocks, tokens: list[int]) -> list[int]:
        """The cached blocks that hold the sequence's leading tokens (it holds none yet): the longest
        run, at most (len(tokens) − 1) // block_size. Not taken yet (`allocate` takes them)."""
        if not self.prefix_caching:
            return []
        limit = (len(tokens) - 1) // self.block_size
        self._chain(seq, tokens, limit)
        hits: list[int] = []
        for h in seq.hashes[:limit]:
            b = self.cached.get(h)
            if b is None:
                break
            hits.append(b)
        return hits

    def allocate(self, seq: SeqBlocks, tokens: list[int], computed: int, new_tokens: int,
                 hits: list[int] | None = None) -> bool:  # fmt: skip
        """Give the sequence the blocks for `new_tokens` beyond `computed` — after taking its prefix
        hits (`match_prefix`; then `computed` is len(hits) × block_size) — if enough are free (cached
        free blocks count, and hit blocks nobody holds leave the free queue). False, nothing changed, if not."""
        hits = hits or []
        held = len(hits) if hits else len(seq.table)
        need = -(-(computed + new_tokens) // self.block_size) - held
        idle_hits = sum(1 for b in hits if self.ref[b] == 0)
        if need + idle_hits > self.free:
            return False
        for b in hits:
            if self.ref[b] == 0:
                del self.free_queue[b]
                self.used += 1
            self.ref[b] += 1
        if hits:
            seq.table = list(hits)
            seq.hashed = len(hits)
        for _ in range(need):
            seq.table.append(self._evict_lru())
        self.used += max(need, 0)
        self._cache_full_blocks(seq, tokens, computed + new_tokens)
        return True

    def _evict_lru(self) -> int:
        b, _ = self.free_queue.popitem(last=False)
        h = self.block_hash[b]
        if h is not None:
            del self.cached[h]
            self.block_hash[b] = None
        self.ref[b] = 1
        return b

    def _cache_full_blocks(self, seq: SeqBlocks, tokens: list[int], upto: int) -> None:
        """Hash every block of the sequence that its first `upto` tokens fill (the first keeps a hash)."""
        if not self.prefix_caching:
            return
        full = upto // self.block_size
        self._chain(seq, tokens, full)
        for i in range(seq.hashed, full):
            h, b = seq.hashes[i], seq.table[i]
            if h not in self.cached and self.block_hash[b] is None:
                self.cached[h] = b
                self.block_hash[b] = h
        seq.hashed = max(seq.hashed, full)

    def free_seq(self, seq: SeqBlocks) -> None:
        """Release the sequence's blocks, tail first (hashed ones to the back of the free queue)."""
        for b in reversed(seq.table):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.used -= 1
                self.free_queue[b] = None
                if self.block_hash[b] is None:
                    self.free_queue.move_to_end(b, last=False)
        seq.table = []
        seq.hashed = 0
