"""Makes fairseq's ``--no-repeat-ngram-size`` work where fairseq 0.12 silently ignores it.

Why this module exists: ``fairseq.ngram_repeat_block.NGramRepeatBlock`` bans repeated
n-grams with a CUDA extension (``fairseq.ngram_repeat_block_cuda``) and falls back to
the Python method ``_no_repeat_ngram`` whenever the extension is not built or the
generation runs on CPU. The ``ve-fairseq`` wheel never builds the extension, so here
the fallback runs on CPU *and* on GPU. In fairseq 0.12 that fallback compares the last
``n - 1`` entries of the whole token buffer (``bsz * beam x max_len + 2``, padding past
``step``) with the earlier ``(n - 1)``-grams, instead of the last ``n - 1`` tokens
generated: the padding never matches, nothing is ever banned, and the flag does nothing
(github.com/facebookresearch/fairseq/issues/4709 and /5206). The paper's summarization pipeline (fairseq's BART
CNN/DM recipe) generates with ``--no-repeat-ngram-size 3``.

What it does: on import of the plugin (``--user-dir fairseq_defemb``), if the installed
fairseq is a 0.12 release and its fallback shows the bug on a probe, the fallback method
is replaced by :func:`_no_repeat_ngram` (the name is fairseq's, so TorchScript
can still script the generator), which bans exactly what the CUDA kernel bans
(every token that would complete an n-gram already present in ``tokens[:, :step + 1]``,
the initial ``</s>`` included), vectorised. Nothing else in fairseq changes; the first
generation that uses it logs so once. The extension, when a build has it and generation runs on GPU, never calls
the fallback, so it is unaffected either way.

When to delete it: when the pinned fairseq's fallback passes the probe (a fixed release,
or a build whose fallback bans correctly). :func:`apply` then leaves fairseq alone, and
``tests/test_ngram_blocking.py`` says so.
"""
import logging
import math

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

AFFECTED_RELEASES = "0.12."
_announced = False


def _no_repeat_ngram(self, tokens: Tensor, lprobs: Tensor, bsz: int, beam_size: int, step: int) -> Tensor:
    """``NGramRepeatBlock._no_repeat_ngram`` as the CUDA kernel computes it.

    ``tokens`` (bsz * beam x buffer) holds the hypotheses up to position ``step``; every
    earlier n-gram whose first ``n - 1`` tokens equal the last ``n - 1`` generated ones
    bans its last token in that row of ``lprobs`` (in place, and returned).
    """
    n = self.no_repeat_ngram_size
    if not torch.jit.is_scripting():
        announce(n)
    if step + 2 - n <= 0:
        return lprobs
    generated = tokens[:, : step + 1]
    ngrams = generated.unfold(1, n, 1)  # rows x (step + 2 - n) x n, every complete n-gram
    last = generated[:, step + 2 - n :].unsqueeze(1)
    hits = (ngrams[:, :, : n - 1] == last).all(dim=2).nonzero()
    banned = ngrams[hits[:, 0], hits[:, 1], n - 1]
    lprobs[hits[:, 0], banned] = -math.inf
    return lprobs


def announce(n: int) -> None:
    """Log, once per process, that a generation bans n-grams with this module's fix."""
    global _announced
    if _announced:
        return
    _announced = True
    import fairseq
    from fairseq import ngram_repeat_block

    logger.info(
        f"--no-repeat-ngram-size {n}: fairseq {fairseq.__version__}'s fallback (CUDA extension built: "
        f"{ngram_repeat_block.EXTENSION_BUILT}) reads the padding and bans nothing, so fairseq_defemb's fixed "
        "NGramRepeatBlock._no_repeat_ngram bans the repeats (fairseq_defemb/ngram_blocking.py)"
    )


def fallback_is_buggy(method) -> bool:
    """Does ``method`` (a ``_no_repeat_ngram``) miss a repeat a padded buffer makes obvious?

    Row ``</s> 7 8 7`` at step 3, then padding: with n = 2 the bigram ``7 8`` exists, so
    8 must be banned after the last 7.
    """
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    tokens = torch.tensor([[2, 7, 8, 7, 1, 1, 1, 1]])
    lprobs = method(NGramRepeatBlock(2, use_extension=False), tokens, torch.zeros(1, 10), 1, 1, 3)
    return not bool(torch.isinf(lprobs[0, 8]))


def apply() -> bool:
    """Replace fairseq's fallback if this fairseq is the affected one; return whether it was."""
    import fairseq
    from fairseq import ngram_repeat_block

    block = ngram_repeat_block.NGramRepeatBlock
    if block._no_repeat_ngram is _no_repeat_ngram:
        return True
    if not fallback_is_buggy(block._no_repeat_ngram):
        return False
    if not fairseq.__version__.startswith(AFFECTED_RELEASES):
        logger.warning(
            f"fairseq {fairseq.__version__}: --no-repeat-ngram-size bans nothing without the CUDA extension "
            f"(NGramRepeatBlock._no_repeat_ngram reads the padding), and fairseq_defemb's fix is written for "
            f"{AFFECTED_RELEASES}x only: left alone; generate with the extension built or without the flag"
        )
        return False
    block._no_repeat_ngram = _no_repeat_ngram
    return True
