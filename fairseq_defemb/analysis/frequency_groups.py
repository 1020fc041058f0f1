"""Frequency groups of the paper (Section 4, Table 23): by dictionary order.

fairseq dictionaries list symbols by descending pretraining count, so the first 30%
of the (non-special) ids are the frequent group, the next 50% medium, the last 20%
rare. Special symbols (<s>, <pad>, </s>, <unk>, <mask>) belong to no group.
"""
import numpy as np

GROUP_SHARES = (("frequent", 0.3), ("medium", 0.5), ("rare", 0.2))


def frequency_groups(num_embeddings: int, num_special: int = 4, mask_id: int | None = None) -> dict[str, np.ndarray]:
    """Ids of each frequency group for an embedding matrix of ``num_embeddings`` rows.

    ``num_special`` leading ids are fairseq's specials; ``mask_id`` (usually the last
    row, appended by the pretraining task) is excluded too.
    """
    ids = np.arange(num_special, num_embeddings)
    if mask_id is not None:
        ids = ids[ids != mask_id]
    n = len(ids)
    first = int(round(GROUP_SHARES[0][1] * n))
    second = first + int(round(GROUP_SHARES[1][1] * n))
    return {"frequent": ids[:first], "medium": ids[first:second], "rare": ids[second:], "all": ids}


def groups_convention(num_special: int = 4, mask_excluded: bool = True) -> str:
    """How ``frequency_groups`` formed its groups, for an isotropy figure's signature."""
    shares = "/".join(f"{share * 100:.0f}" for _, share in GROUP_SHARES)
    return f"groups:{shares} by index|specials:{num_special}{'+<mask>' if mask_excluded else ''} excluded"
