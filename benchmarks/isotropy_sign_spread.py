"""How much the paper's isotropy figure depends on the Gram matrix's rounding.

    python benchmarks/isotropy_sign_spread.py --checkpoint minilm/model.pt [--dict minilm/dict.txt]

``numpy.linalg.eig`` returns each eigenvector with a sign that is not a continuous function of its
input: the same E^T E summed in another order (rows chunked differently, or in reverse) differs in
its last bits, and eig's signs, and with them the paper's figure, change. This computes both figures
per frequency group with the Gram summed in row chunks of several sizes (the default, GRAM_ROWS, among
them; the largest is one product, as the authors' script) and with the rows in id order and reversed,
and prints one JSON object: every variant, and per group the range of each figure. The sign-invariant
figure moves by float rounding only; the spread of the paper's is what a reader should allow for
when comparing it with Table 23.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fairseq_defemb.analysis.isotropy as iso  # noqa: E402
from fairseq_defemb.analysis.report import model_groups, model_groups_convention  # noqa: E402
from fairseq_defemb.data.vocabulary import load_model_dictionary  # noqa: E402
from fairseq_defemb.surgery.checkpoint import read_embedding_matrix  # noqa: E402

CHUNKS = (1024, 2048, iso.GRAM_ROWS, 8192, 16384, 1 << 30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (model.pt) whose embeddings to measure")
    p.add_argument("--dict", help="its dict.txt (default: beside the checkpoint)")
    args = p.parse_args()
    dictionary = load_model_dictionary(args.dict or Path(args.checkpoint).parent / "dict.txt")
    E = read_embedding_matrix(args.checkpoint).float()
    groups = model_groups(dictionary)
    default_chunk = iso.GRAM_ROWS
    variants = []
    for chunk in CHUNKS:
        for order in ("ids", "reversed"):
            iso.GRAM_ROWS = chunk
            chosen = groups if order == "ids" else {name: ids[::-1].copy() for name, ids in groups.items()}
            report = iso.isotropy_by_group(E, chosen, model_groups_convention(dictionary))
            variants.append({"gram_rows": chunk if chunk < len(E) else "all (one product)", "row_order": order,
                             **{c: report[c] for c in iso.CONVENTIONS}})
    iso.GRAM_ROWS = default_chunk
    spread = {c: {g: [min(v[c][g] for v in variants), max(v[c][g] for v in variants)] for g in groups}
              for c in iso.CONVENTIONS}
    print(json.dumps({"checkpoint": str(args.checkpoint), "rows": len(E), "dim": E.size(1), "default_gram_rows": default_chunk,
                      "conventions": report["conventions"], "range": spread, "variants": variants}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
