"""defemb-analyze end to end on a small fairseq-like checkpoint, plus its subcommands."""
import json

import numpy as np
import pytest
import torch

from fairseq_defemb.analysis.report import analyze_matrices, read_lines
from fairseq_defemb.analysis.rouge import signature
from fairseq_defemb.cli.analyze import main as cli_main
from fairseq_defemb.analysis.frequency_groups import frequency_groups
from fairseq_defemb.analysis.isotropy import isotropy
from fairseq_defemb.analysis.neighbours import max_difference
from fairseq_defemb.data.vocabulary import load_model_dictionary


def _checkpoint(path, W):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"encoder.embed_tokens.weight": W, "decoder.embed_tokens.weight": W,
                          "decoder.output_projection.weight": W}, "cfg": None}, path)


@pytest.fixture
def setup(tmp_path):
    from tiny_models import write_dict

    words = [str(n) for n in range(1, 40)] + ["cat", "dog", "quagga", "okapi"] + [f"w{i}" for i in range(100)]
    write_dict(tmp_path / "dict.txt", words)
    n = len(words) + 5
    rng = np.random.default_rng(0)
    W = torch.tensor(rng.normal(size=(n, 16)), dtype=torch.float32)
    W[4:43, 0] = torch.arange(1, 40, dtype=torch.float32) * 3  # numbers laid out by value along axis 0
    after = W.clone()
    after[-30:] += 0.5  # fine-tuning moved the rare rows only
    _checkpoint(tmp_path / "A" / "model.pt", W)
    _checkpoint(tmp_path / "B" / "model.pt", after)
    return tmp_path, W, after


def test_analyze_cli_end_to_end(setup):
    tmp_path, W, after = setup
    np.save(tmp_path / "extra.npy", (W * 2).numpy())
    out = tmp_path / "report"
    argv = ["--checkpoint", str(tmp_path / "A" / "model.pt"), "--compare", str(tmp_path / "B" / "model.pt"),
            "--embeddings", f"doubled={tmp_path / 'extra.npy'}", "--dict", str(tmp_path / "dict.txt"),
            "--neighbours-of", "quagga", "7", "--metric", "euclidean", "--out", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["matrices"]) == ["A", "B", "doubled"]
    assert report["numeric_tokens"] == 39
    groups = frequency_groups(len(W), 4, len(W) - 1)
    for convention in ("paper", "sign_invariant"):
        for g, ids in groups.items():
            assert report["matrices"]["A"]["isotropy"][convention][g] == pytest.approx(
                isotropy(W[ids].numpy(), convention), rel=1e-6)
        assert report["matrices"]["doubled"]["isotropy"][convention]["all"] < report["matrices"]["A"]["isotropy"][convention]["all"]
    assert (report["matrices"]["doubled"]["isotropy"]["sign_invariant"]["all"]
            < 1e-10 * report["matrices"]["A"]["isotropy"]["sign_invariant"]["all"])
    assert "specials:4+<mask> excluded" in report["matrices"]["A"]["isotropy"]["conventions"]["paper"]
    ids = np.arange(4, 43)
    assert report["matrices"]["A"]["max_difference"] == pytest.approx(max_difference(W.numpy(), ids, ids - 3.0))
    assert report["matrices"]["A"]["neighbours"]["7"][:2] in (["6", "8"], ["8", "6"])  # laid out by value
    assert report["drift"]["frequent"] == {"mean_l2": 0.0, "mean_cosine": pytest.approx(1.0)}
    assert report["drift"]["rare"]["mean_l2"] == pytest.approx(2.0, rel=1e-5)  # 0.5 * sqrt(16)
    summary = (out / "summary.md").read_text()
    assert "| embeddings | I(E) convention | Frequent | Medium | Rare | All | Max Difference |" in summary
    assert "| doubled | paper (eig's signs) |" in summary and "| doubled | sign-invariant (both signs) |" in summary
    assert "`I(E)|solver:numpy.linalg.eig(float64 Gram, 1 thread)|dirs:one-per-eigvec(eig sign)|" in summary
    assert (out / "projection.png").read_bytes()[:4] == b"\x89PNG"
    # --out is never half-written: an existing report is refused without --overwrite
    assert cli_main(argv) == 2
    assert cli_main(argv + ["--overwrite"]) == 0


def test_analyze_rejects_mismatched_dictionary(setup, tmp_path, capsys):
    root, W, _ = setup
    _checkpoint(root / "C" / "model.pt", W[:-3])
    assert cli_main(["--checkpoint", str(root / "C" / "model.pt"), "--dict", str(root / "dict.txt"),
                     "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "embedding rows" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_analyze_matrices_in_process_refuses_numerics_for_undecoded_gpt2_ids(tmp_path):
    from tiny_models import write_dict

    write_dict(tmp_path / "dict.txt", [str(i) for i in range(200, 400)])  # GPT-2-style ids, no encoder.json
    d = load_model_dictionary(tmp_path / "dict.txt")
    E = np.random.default_rng(0).normal(size=(len(d), 8)).astype(np.float32)
    report = analyze_matrices({"E": E}, d, progress=False)
    assert report["numeric_tokens"] is None and "max_difference" not in report["matrices"]["E"]
    assert 0 < report["matrices"]["E"]["isotropy"]["paper"]["all"] <= 1


def test_help_lists_the_modes(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    text = capsys.readouterr().out
    for word in ("--checkpoint", "--compare", "--neighbours-of", "--gpt2-encoder-json", "rouge", "significance"):
        assert word in text


def test_rouge_and_significance_subcommands(tmp_path, capsys):
    (tmp_path / "ref.txt").write_text("the cat sat on the mat .\na dog barked at night .\n")
    (tmp_path / "h1.txt").write_text("the cat sat on the mat .\na dog barked at night .\n")
    (tmp_path / "h0.txt").write_text("a cat is on a mat .\nthe dog slept .\n")
    assert cli_main(["rouge", "--hyp", str(tmp_path / "h1.txt"), "--ref", str(tmp_path / "ref.txt")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["rouge-score"]["rouge1"] == pytest.approx(100.0) and scores["ROUGE-1.5.5"]["rouge1"] == 100.0
    assert scores["ROUGE-1.5.5"]["signature"] == signature("sacrerouge") and scores["pairs"] == 2
    assert scores["rouge-score"]["signature"] == signature("rouge-score")
    assert cli_main(["significance", "--ref", str(tmp_path / "ref.txt"), "--baseline", f"{tmp_path / 'h0.txt'}",
                     "--system", f"{tmp_path / 'h1.txt'}"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rouge1"]["p_value"] == 0.0 and result["rouge1"]["pool_size"] == 2
    assert result["rouge1"]["signature"] == signature("sacrerouge") + "|per-summary F1"
    assert cli_main(["significance", "--scorer", "rouge-score", "--stemming", "--ref", str(tmp_path / "ref.txt"),
                     "--baseline", f"{tmp_path / 'h0.txt'}", "--system", f"{tmp_path / 'h1.txt'}"]) == 0
    assert json.loads(capsys.readouterr().out)["rougeL"]["signature"] == signature("rouge-score", stemming=True) + "|per-summary F1"
    (tmp_path / "gold").write_text("1\n0\n1\n1\n")
    (tmp_path / "p0").write_text("1\n1\n0\n1\n")
    (tmp_path / "p1").write_text("1\n0\n1\n1\n")
    assert cli_main(["significance", "--metric", "accuracy", "--ref", str(tmp_path / "gold"),
                     "--baseline", f"{tmp_path / 'p0'},{tmp_path / 'p0'}", "--system", f"{tmp_path / 'p1'},{tmp_path / 'p1'}"]) == 0
    result = json.loads(capsys.readouterr().out)["accuracy"]
    assert result["baseline_mean"] == 0.5 and result["system_mean"] == 1.0 and result["pool_size"] == 8


def test_output_files_are_read_on_newlines_only_and_counts_checked(tmp_path, capsys):
    """U+2028, U+0085, form feed, vertical tab and a lone CR inside a summary stay inside it (str.splitlines()
    would break there and shift every later hypothesis); CRLF endings lose their CR."""
    refs = ["the cat sat on the mat .", "a dog barked at night .", "rain fell all day ."]
    hyps = ["the cat\u2028sat on the mat .", "a dog\x85barked\x0cat\x0bnight\r.", "rain fell all day ."]
    (tmp_path / "ref.txt").write_text("\r\n".join(refs) + "\r\n", newline="")
    (tmp_path / "hyp.txt").write_text("\n".join(hyps), newline="")  # no final newline
    assert read_lines(tmp_path / "hyp.txt") == hyps and read_lines(tmp_path / "ref.txt") == refs
    assert cli_main(["rouge", "--hyp", str(tmp_path / "hyp.txt"), "--ref", str(tmp_path / "ref.txt")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["pairs"] == 3 and scores["ROUGE-1.5.5"]["rouge1"] == 100.0 and scores["rouge-score"]["rouge1"] == 100.0
    (tmp_path / "short.txt").write_text("the cat sat on the mat .\n\n")  # an empty last hypothesis still counts
    assert read_lines(tmp_path / "short.txt") == ["the cat sat on the mat .", ""]
    for argv in (["rouge", "--hyp", str(tmp_path / "short.txt")],
                 ["significance", "--baseline", str(tmp_path / "hyp.txt"), "--system", str(tmp_path / "short.txt")],
                 ["significance", "--metric", "accuracy", "--baseline", str(tmp_path / "short.txt"),
                  "--system", str(tmp_path / "short.txt")]):
        assert cli_main([*argv, "--ref", str(tmp_path / "ref.txt")]) == 2
        assert f"{tmp_path / 'short.txt'} has 2 lines but {tmp_path / 'ref.txt'} has 3" in capsys.readouterr().err
    (tmp_path / "latin1.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: line 2: not UTF-8"):
        read_lines(tmp_path / "latin1.txt")


def test_neighbours_of_a_plain_word_finds_the_models_own_form(tmp_path):
    """GPT-2 ' everlasting', WordPiece '##ing' and plain words resolve to the model's word-initial piece."""
    from fairseq_defemb.analysis.neighbours import token_surfaces, word_initial_pieces
    from fairseq_defemb.analysis.report import find_token
    from tiny_models import write_dict

    write_dict(tmp_path / "dict.txt", ["##cat", "cat", "Dog", "##ing", "ever"])
    dictionary = load_model_dictionary(tmp_path / "dict.txt")
    surfaces, initial = token_surfaces(dictionary), word_initial_pieces(dictionary)
    cat, piece = dictionary.index("cat"), dictionary.index("##ing")
    for query in ("cat", " cat", "\u0120cat", "##cat"):
        assert find_token(query if query != "##cat" else "##cat", dictionary, surfaces, initial) == (
            dictionary.index("##cat") if query == "##cat" else cat)
    assert find_token("ing", dictionary, surfaces, initial) == piece  # only a continuation piece exists
    with pytest.raises(ValueError, match="the model has 'Dog'"):
        find_token("dog", dictionary, surfaces, initial)


def test_neighbours_of_is_checked_before_the_work(setup):
    tmp_path, _, _ = setup
    out = tmp_path / "report"
    with pytest.raises(ValueError, match="no token of this model spells 'zebra'"):
        from fairseq_defemb.analysis.report import analyze_checkpoints

        analyze_checkpoints(tmp_path / "A" / "model.pt", out, dict_path=tmp_path / "dict.txt", neighbours_of=["zebra"])
    assert not out.exists()
    (out).mkdir()
    assert cli_main(["--checkpoint", str(tmp_path / "A" / "model.pt"), "--dict", str(tmp_path / "dict.txt"),
                     "--out", str(out)]) == 2  # exists: refused before reading anything


def test_neighbours_of_on_gpt2_ids_prefers_the_leading_space_piece(tmp_path):
    from conftest import REPO
    from fairseq_defemb.analysis.neighbours import token_surfaces, word_initial_pieces
    from fairseq_defemb.analysis.report import find_token

    encoder_json = REPO / ".cache" / "gpt2" / "encoder.json"
    encoder = json.loads(encoder_json.read_text())
    ids = [encoder["cat"], encoder["\u0120cat"], encoder["\u0120everlasting"]]
    (tmp_path / "dict.txt").write_text("".join(f"{i} {10 - n}\n" for n, i in enumerate(ids)))
    dictionary = load_model_dictionary(tmp_path / "dict.txt")
    surfaces, initial = token_surfaces(dictionary, encoder_json), word_initial_pieces(dictionary, encoder_json)
    assert find_token(" cat", dictionary, surfaces, initial) == dictionary.index(str(encoder["\u0120cat"]))
    assert find_token("everlasting", dictionary, surfaces, initial) == dictionary.index(str(encoder["\u0120everlasting"]))


def test_a_fine_tuned_checkpoint_without_the_mask_row_is_compared(setup):
    """fairseq's translation task drops <mask> on load: the fine-tuned matrix has one row fewer."""
    tmp_path, W, after = setup
    _checkpoint(tmp_path / "T" / "model.pt", after[:-1].clone())
    from fairseq_defemb.analysis.report import analyze_checkpoints

    report = analyze_checkpoints(tmp_path / "A" / "model.pt", tmp_path / "r", dict_path=tmp_path / "dict.txt",
                                 compare=tmp_path / "T" / "model.pt", progress=False)
    assert "no <mask> row" in report["notes"][0] and "drift" in report
