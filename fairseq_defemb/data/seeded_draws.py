"""The draws of fairseq's per-item seeding, for a whole batch at once, bit for bit.

fairseq's ``data_utils.numpy_seed(seed, epoch, index)`` re-seeds numpy's legacy generator
(``RandomState``, MT19937) for every item, and the per-item corruption then draws ``rand(n)``
and ``randint(0, K, n)`` (what ``choice(ids, n)`` draws with). Made per prompt, that is two
Python-level numpy calls, ~8.5 us, most of it ``randint``'s argument handling: at ~109 prompts
per batch, 6.4% of RoBERTa-base's GPU step (benchmarks, stage ``scale``). Here each item costs
one re-seed and one ``MT19937.random_raw`` call (the generator's raw 32-bit outputs, ~2.5 us
together) and the draws are rebuilt from those outputs with numpy over the whole batch, as
``RandomState`` builds them:

* ``rand``: each double from the next two outputs a, b: ((a >> 5) * 2**26 + (b >> 6)) / 2**53;
* ``randint(0, K)``: masked rejection on the outputs after those: v = output & mask (mask the
  smallest 2**k - 1 >= K - 1), kept when v <= K - 1, until n are kept; K = 1 draws nothing.

An item whose rejection needs more outputs than were drawn for it (at most 1/2 are rejected, so
this is rare) is drawn again the per-item way. ``tests/test_cloze_batches.py`` checks both
against ``RandomState`` for many seeds, counts and K.
"""
import numpy as np

# Outputs drawn per item for randint beyond 2n: its acceptance rate is above 1/2.
SPARE_OUTPUTS = 32


def seeded_uniform_and_integers(seeds: list[int], counts: np.ndarray, high: int) -> tuple[np.ndarray, np.ndarray]:
    """For each item i, what ``RandomState(seeds[i])`` draws with ``rand(counts[i])`` then
    ``randint(0, high, counts[i])``; both returned concatenated in item order (float64, int64)."""
    counts = np.asarray(counts, dtype=np.int64)
    if not 1 <= high <= 2 ** 32:
        raise ValueError(f"high {high}: the 32-bit legacy randint path needs 1 <= high <= 2**32")
    top = high - 1  # randint's inclusive range
    mask = (1 << top.bit_length()) - 1
    int_lengths = 2 * counts + SPARE_OUTPUTS if top else np.zeros_like(counts)
    lengths = 2 * counts + int_lengths
    starts = np.cumsum(lengths) - lengths
    bits = np.random.MT19937()
    rng = np.random.RandomState(bits)  # its seed() is the legacy seeding numpy_seed uses, on `bits`
    raw = np.empty(int(lengths.sum()), dtype=np.uint64)
    for seed, start, length in zip(seeds, starts.tolist(), lengths.tolist()):
        rng.seed(seed)
        raw[start:start + length] = bits.random_raw(length)
    owner = np.repeat(np.arange(len(counts)), lengths)
    for_rand = np.arange(len(raw)) - starts[owner] < 2 * counts[owner]  # each item's first 2n outputs
    pairs = raw[for_rand]
    uniform = ((pairs[0::2] >> 5) * 67108864.0 + (pairs[1::2] >> 6)) / 9007199254740992.0
    integers = np.zeros(int(counts.sum()), dtype=np.int64)
    if not top:
        return uniform, integers
    item = owner[~for_rand]
    values = raw[~for_rand] & np.uint64(mask)
    kept = values <= top
    rank = np.cumsum(kept)  # 1-based rank of each kept value within its item
    block_start = np.cumsum(int_lengths) - int_lengths
    rank -= np.concatenate(([0], rank))[block_start][item]
    use = kept & (rank <= counts[item])
    out_start = np.cumsum(counts) - counts
    integers[out_start[item[use]] + rank[use] - 1] = values[use].astype(np.int64)
    short = np.nonzero(np.bincount(item[use], minlength=len(counts)) < counts)[0]
    for i in short.tolist():  # ran out of spare outputs: the per-item draws
        rng.seed(seeds[i])
        rng.rand(int(counts[i]))
        integers[out_start[i]:out_start[i] + counts[i]] = rng.randint(0, high, int(counts[i]))
    return uniform, integers
