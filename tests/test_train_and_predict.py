"""Stock fairseq-train with --user-dir, resuming, 2-rank DDP on CPU, and defemb-predict."""
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, VENV_BIN
from doc_blocks import doc_block, quoted, run_bash, with_settings
from test_definition_cloze import batch, build_with_cfg
from tiny_corpus import DEFINITIONS, make_tiny_corpus
from tiny_models import TINY_WORDS, write_dict
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.data.vocabulary import load_model_dictionary
from fairseq_defemb.convert.fairseq_checkpoint import save_model_checkpoint
from fairseq_defemb.cli.predict import main as predict_main
from fairseq_defemb.predict import load_definition_model


def train_options(tiny_dir, family, save_dir, *extra):
    """fairseq-train's options after the corpus, --user-dir, --task and --criterion."""
    return [
        "--arch", f"defemb_{family}", "--pretrained-checkpoint", str(tiny_dir / family / "model.pt"),
        "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "256", "--cpu", "--save-dir", str(save_dir),
        "--log-format", "simple", "--log-interval", "1", "--required-batch-size-multiple", "1", "--num-workers", "0",
        "--dropout", "0", "--attention-dropout", "0", "--seed", "7", *extra,
    ]


def train_cmd(tiny_dir, family, save_dir, *extra):
    return [str(VENV_BIN / "fairseq-train"), str(tiny_dir / "corpus"), "--user-dir", str(REPO / "fairseq_defemb"),
            "--task", "definition_cloze", "--criterion", "mimic_mse", *train_options(tiny_dir, family, save_dir, *extra)]


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def train_losses(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"train_inner \| .*?loss=([0-9.]+)", log)]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_fairseq_train_runs_and_resumes(tiny_dir, tmp_path, family):
    save = tmp_path / "ckpt"
    log = run(train_cmd(tiny_dir, family, save, "--max-update", "3"))
    assert len(train_losses(log)) == 3
    assert (save / "checkpoint_last.pt").is_file()
    log = run(train_cmd(tiny_dir, family, save, "--max-update", "5"))
    assert "Loaded checkpoint" in log and "@ 3 updates" in log
    state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 5


@pytest.mark.slow
def test_fairseq_train_output_predicts_after_its_directory_is_renamed(tiny_dir, tmp_path):
    """make demo's case: fairseq-train writes into a temporary directory that is then
    renamed; the checkpoint predicts on the corpus where it now is."""
    work = tmp_path / ".demo-out.tmp"
    shutil.copytree(tiny_dir / "corpus", work / "corpus")
    shutil.copytree(tiny_dir / "roberta", work / "roberta")
    run(train_cmd(work, "roberta", work / "checkpoints", "--max-update", "2"))
    final = tmp_path / "demo-out"
    work.rename(final)
    out = tmp_path / "pred.pt"
    assert predict_main(["--checkpoint", str(final / "checkpoints" / "checkpoint_best.pt"),
                         "--corpus", str(final / "corpus"), "--out", str(out), "--no-progress"]) == 0
    assert len(PredictedEmbeddings.load(out).token_ids) == len(DEFINITIONS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_rank_ddp_on_cpu_matches_single_process(tiny_dir, tmp_path):
    """docs/fairseq-recipes.md's CPU block: 2 ranks on gloo see batch i each; one process with
    --update-freq 2 sees both."""
    single = train_losses(run(train_cmd(tiny_dir, "roberta", tmp_path / "single", "--max-update", "3",
                                        "--update-freq", "2")))
    work = tmp_path / "work"
    work.mkdir()
    (work / "fairseq_defemb").symlink_to(REPO / "fairseq_defemb")  # the block runs from the repository's root
    settings = {"DEFS": str(tiny_dir / "corpus"), "PORT": str(free_port()),
                "TRAIN": quoted(train_options(tiny_dir, "roberta", tmp_path / "ddp", "--max-update", "3"))}
    log = run_bash(with_settings(doc_block("ddp-cpu"), settings), work, timeout=600)
    for rank in range(2):
        # Every rank imported the plugin and built the task before joining the group.
        assert f"distributed init (rank {rank})" in log
    distributed = train_losses(log)  # rank 0's: fairseq silences the others' logging after the group forms
    assert len(single) == len(distributed) == 3
    assert distributed == pytest.approx(single, rel=1e-3)


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """Checkpoints trained a few steps in-process and saved as fairseq-train saves them."""
    save = tmp_path_factory.mktemp("trained")
    out = {}
    for family in ("roberta", "bart"):
        task, model, criterion, cfg = build_with_cfg(tiny_dir, family)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        for step in range(3):
            loss, size, _ = criterion(model, batch(task.datasets["train"], range(4 * step, 4 * step + 4)))
            optimizer.zero_grad()
            (loss / size).backward()
            optimizer.step()
        out[family] = save_model_checkpoint(model, cfg, save / f"{family}.pt")
    return out


@pytest.fixture(scope="module")
def uneven_corpus(tiny_dir, tmp_path_factory):
    """The tiny corpus with the headword 1, 2 or 3 times per prompt, so the averages differ."""
    return make_tiny_corpus(tmp_path_factory.mktemp("uneven") / "corpus", tiny_dir / "corpus" / "dict.txt",
                            variants=(1, 2, 3))


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_predict_reproduces_the_models_own_forward(trained, uneven_corpus, tmp_path, family):
    """Both averages against one forward per item by hand."""
    model, task = load_definition_model(trained[family], uneven_corpus)
    dictionary = task.source_dictionary
    token = dictionary.index("quagga")
    per_definition = {}
    for split in ("train", "valid"):
        ds = task.build_cloze_dataset(split, predict=True)
        for i in range(len(ds)):
            item = ds[i]
            if token in item["target"].tolist():
                sample = ds.collater([item])
                with torch.no_grad():
                    predicted = model(**sample["net_input"])
                per_definition.setdefault((split, item["definition"]), []).append(predicted[sample["target"] == token])
    occurrences = torch.cat([torch.cat(v) for v in per_definition.values()])
    assert len({len(torch.cat(v)) for v in per_definition.values()}) > 1
    expected = {"definitions": torch.stack([torch.cat(v).mean(0) for v in per_definition.values()]).mean(0),
                "occurrences": occurrences.mean(0)}
    assert not torch.allclose(expected["definitions"], expected["occurrences"], atol=1e-4)
    # --prediction-norm rows (the default): each row rescaled to the pretrained rows' mean norm, specials
    # and <mask> left out of the mean
    pretrained = model.target_embeddings.detach().double()
    words = [i for i in range(dictionary.nspecial, len(dictionary)) if i != dictionary.index("<mask>")]
    row_norm = pretrained[words].norm(dim=1).mean()
    for average, vector in expected.items():
        for norm in ("rows", "raw"):
            out = tmp_path / f"{average}-{norm}.pt"
            flag = [] if average == "definitions" else ["--average", average]  # definitions is the default
            flag += ([] if norm == "rows" else ["--prediction-norm", norm]) + ["--prediction-mean", "raw"]
            assert predict_main(["--checkpoint", str(trained[family]), "--corpus", str(uneven_corpus),
                                 "--out", str(out), "--no-progress", "--max-tokens", "64", *flag]) == 0
            result = PredictedEmbeddings.load(out)
            row = result.token_ids.tolist().index(token)
            want = vector if norm == "raw" else (vector.double() * row_norm / vector.double().norm()).float()
            torch.testing.assert_close(result.embeddings[row], want, atol=1e-5, rtol=1e-4)
            assert result.num_definitions[row].item() == len(per_definition)
            assert result.extra["coverage"]["average"] == average
            assert result.extra["coverage"]["prediction_norm"] == norm
    assert result.embedding_dim == 32 and result.dictionary_size == len(dictionary)
    # Only headword tokens get a prediction.
    assert set(result.token_ids.tolist()) == {dictionary.index(w) for w in DEFINITIONS}


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_prediction_mean_centres_on_the_reference_tokens(trained, uneven_corpus, tmp_path, family):
    """--prediction-mean rows (the default): every row at the rows' mean norm, minus the mean of the
    valid split's rows predicted the same way (the tiny corpus has fewer than 300 tokens there: all of
    them are the reference), plus the pretrained rows' mean, then at the rows' mean norm again."""
    from fairseq_defemb.predict import REFERENCE_TOKENS

    common = ["--checkpoint", str(trained[family]), "--corpus", str(uneven_corpus), "--no-progress"]
    paths = {name: tmp_path / f"{name}.pt" for name in ("centred", "uncentred", "reference")}
    assert predict_main([*common, "--out", str(paths["centred"])]) == 0
    assert predict_main([*common, "--out", str(paths["uncentred"]), "--prediction-mean", "raw"]) == 0
    assert predict_main([*common, "--out", str(paths["reference"]), "--prediction-mean", "raw", "--splits", "valid"]) == 0
    centred, uncentred, reference = (PredictedEmbeddings.load(paths[n]) for n in ("centred", "uncentred", "reference"))
    assert len(reference.token_ids) < REFERENCE_TOKENS
    model, task = load_definition_model(trained[family], uneven_corpus)
    dictionary = task.source_dictionary
    pretrained = model.target_embeddings.detach().double()
    words = [i for i in range(dictionary.nspecial, len(dictionary)) if i != dictionary.index("<mask>")]
    row_norm = pretrained[words].norm(dim=1).mean()
    shifted = uncentred.embeddings.double() - reference.embeddings.double().mean(0) + pretrained[words].mean(0)
    want = shifted * row_norm / shifted.norm(dim=1, keepdim=True)
    assert torch.equal(centred.token_ids, uncentred.token_ids)
    torch.testing.assert_close(centred.embeddings.double(), want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(centred.embeddings, uncentred.embeddings, atol=1e-3)
    assert centred.extra["coverage"]["prediction_mean"] == "rows"
    assert uncentred.extra["coverage"]["prediction_mean"] == "raw"


def test_centring_without_reference_prompts_is_refused(trained, uneven_corpus, tmp_path, capsys):
    """A corpus whose metadata lists no valid or train prompt has no token to centre on: exit 2 naming
    the corpus and --prediction-mean raw, nothing written; raw predictions still work."""
    corpus = tmp_path / "corpus"
    shutil.copytree(uneven_corpus, corpus)
    metadata = json.loads((corpus / "corpus.json").read_text())
    metadata["splits"] = {"train": 0, "valid": 0}
    (corpus / "corpus.json").write_text(json.dumps(metadata))
    common = ["--checkpoint", str(trained["roberta"]), "--corpus", str(corpus), "--no-progress"]
    assert predict_main([*common, "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert str(corpus) in err and "--prediction-mean raw" in err and not (tmp_path / "x.pt").exists()
    assert predict_main([*common, "--out", str(tmp_path / "x.pt"), "--prediction-mean", "raw"]) == 0


def test_predict_rejects_an_unknown_average(trained, tmp_path, capsys):
    from fairseq_defemb.predict import predict_embeddings

    with pytest.raises(SystemExit):
        predict_main(["--checkpoint", str(trained["roberta"]), "--corpus", "c", "--out", "o", "--average", "tokens"])
    assert "invalid choice: 'tokens'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--average tokens: must be one of definitions, occurrences"):
        predict_embeddings(trained["roberta"], "c", tmp_path / "o.pt", average="tokens")


def test_predict_refuses_a_corpus_of_another_dictionary(tiny_dir, trained, tmp_path, capsys):
    other = write_dict(tmp_path / "dict.txt", list(reversed(TINY_WORDS)))
    make_tiny_corpus(tmp_path / "corpus", other)
    code = predict_main(["--checkpoint", str(trained["roberta"]), "--corpus", str(tmp_path / "corpus"),
                         "--out", str(tmp_path / "x.pt"), "--no-progress"])
    assert code == 2 and "not the dictionary" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_predict_only_requested_ids(tiny_dir, trained, tmp_path, family):
    """--token-ids keeps exactly those ids, with the vectors and counts of the unrestricted run."""
    d = load_model_dictionary(tiny_dir / "corpus" / "dict.txt")
    wanted = {d.index("okapi"), d.index("emu")}
    every, some = tmp_path / "every.pt", tmp_path / "some.pt"
    common = ["--checkpoint", str(trained[family]), "--corpus", str(tiny_dir / "corpus"), "--no-progress"]
    assert predict_main([*common, "--out", str(every)]) == 0
    assert predict_main([*common, "--out", str(some), "--token-ids", ",".join(map(str, wanted))]) == 0
    every, some = PredictedEmbeddings.load(every), PredictedEmbeddings.load(some)
    assert set(some.token_ids.tolist()) == wanted
    rows = [every.token_ids.tolist().index(t) for t in some.token_ids.tolist()]
    torch.testing.assert_close(some.embeddings, every.embeddings[rows])
    assert torch.equal(some.num_definitions, every.num_definitions[rows])


def train_elsewhere(root, family):
    """A checkpoint trained one step on ``root/corpus`` from ``root/<family>/model.pt``."""
    from tiny_models import make_tiny_checkpoint

    make_tiny_checkpoint(root / family, family)
    make_tiny_corpus(root / "corpus", root / family / "dict.txt")
    task, model, criterion, cfg = build_with_cfg(root, family)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss, size, _ = criterion(model, batch(task.datasets["train"], range(4)))
    (loss / size).backward()
    optimizer.step()
    return save_model_checkpoint(model, cfg, root / "checkpoint.pt")


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_predict_on_a_copy_of_the_corpus_after_the_original_is_gone(tmp_path, family):
    """the task is set up from --corpus; the recorded corpus and pretrained paths are not read."""
    trained_at = tmp_path / "cluster"
    checkpoint = train_elsewhere(trained_at, family)
    moved = tmp_path / "laptop"
    moved.mkdir()
    shutil.copytree(trained_at / "corpus", moved / "corpus")
    shutil.copyfile(checkpoint, moved / "checkpoint.pt")
    before = tmp_path / "before.pt"
    common = ["--checkpoint", str(moved / "checkpoint.pt"), "--corpus", str(moved / "corpus"), "--no-progress"]
    assert predict_main([*common, "--out", str(before)]) == 0
    shutil.rmtree(trained_at)
    after = tmp_path / "after.pt"
    assert predict_main([*common, "--out", str(after)]) == 0
    before, after = PredictedEmbeddings.load(before), PredictedEmbeddings.load(after)
    assert torch.equal(before.token_ids, after.token_ids) and torch.equal(before.embeddings, after.embeddings)
    assert after.extra["corpus"] == str(moved / "corpus")


def test_predict_reads_the_given_corpus_not_the_recorded_one(tmp_path):
    """another corpus of the same dictionary at the recorded path is not read."""
    checkpoint = train_elsewhere(tmp_path / "run", "roberta")
    shutil.copytree(tmp_path / "run" / "corpus", tmp_path / "given")
    shutil.rmtree(tmp_path / "run" / "corpus")
    few = {w: DEFINITIONS[w] for w in ("cat", "dog", "owl", "emu", "gnu")}
    make_tiny_corpus(tmp_path / "run" / "corpus", tmp_path / "run" / "roberta" / "dict.txt", valid=1, definitions=few)
    out = tmp_path / "defemb.pt"
    assert predict_main(["--checkpoint", str(checkpoint), "--corpus", str(tmp_path / "given"), "--out", str(out),
                         "--no-progress"]) == 0
    d = load_model_dictionary(tmp_path / "given" / "dict.txt")
    assert set(PredictedEmbeddings.load(out).token_ids.tolist()) == {d.index(w) for w in DEFINITIONS}


def test_recipes_add_their_encoder_options_to_encoder_only_models():
    """The recommended recipe trains an encoder's top four layers only (measured on an encoder) and the
    paper's updates RoBERTa's embeddings (frozen for BART): neither option reaches a BART's training."""
    from fairseq_defemb.recipes import PAPER, RECOMMENDED, Budget, training_options

    float32 = Budget(mixed_precision=False)
    for arch in ("defemb_roberta", "defemb_roberta_base", "defemb_roberta_large"):
        assert training_options(RECOMMENDED, float32, arch=arch)[-2:] == ["--train-layers", "4"]
        assert training_options(PAPER, float32, arch=arch)[-1] == "--update-embeddings"
    for arch in ("defemb_bart", "defemb_bart_base", "defemb_bart_large"):
        for recipe in (RECOMMENDED, PAPER):
            options = training_options(recipe, float32, arch=arch)
            assert options[:2] == ["--arch", arch] and options[-len(recipe.train):] == list(recipe.train)
            assert "--train-layers" not in options and "--update-embeddings" not in options


def test_budgets_train_in_mixed_precision_where_the_device_runs_bfloat16(monkeypatch):
    """A budget's training takes --bf16-autocast where the device has bfloat16 in hardware (this
    machine's CPU flags decide it, as /proc/cpuinfo lists them), never when the budget says float32."""
    import fairseq_defemb.recipes as recipes

    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), None) if Path("/proc/cpuinfo").is_file() else None
    if flags is not None:
        assert recipes.bf16_is_native("cpu") == bool({"avx512_bf16", "amx_tile"} & set(flags))
    for native in (True, False):
        monkeypatch.setattr(recipes, "bf16_is_native", lambda device="cpu", native=native: native)
        for recipe in (recipes.RECOMMENDED, recipes.PAPER):
            options = recipes.training_options(recipe, recipes.Budget(), arch="defemb_bart")
            assert ("--bf16-autocast" in options) == native
            assert "--bf16-autocast" not in recipes.training_options(
                recipe, recipes.Budget(mixed_precision=False), arch="defemb_bart")


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["inverse_sqrt", "linear"])
def test_budget_schedules_are_what_fairseq_train_runs(tiny_dir, tmp_path, schedule):
    """A Budget's schedule as fairseq-train runs it: after the warm-up, the inverse square root of
    Table 12, or a straight line that reaches 0 at the last update."""
    from fairseq_defemb.recipes import PAPER, Budget, training_options

    budget = Budget(updates=5, lr=1e-3, warmup=1, max_tokens=256, schedule=schedule)
    log = run([str(VENV_BIN / "fairseq-train"), str(tiny_dir / "corpus"), "--user-dir", str(REPO / "fairseq_defemb"),
               *training_options(PAPER, budget, arch="defemb_roberta", seed=7), "--pretrained-checkpoint",
               str(tiny_dir / "roberta" / "model.pt"), "--cpu", "--save-dir", str(tmp_path), "--no-save",
               "--log-format", "simple", "--log-interval", "1", "--required-batch-size-multiple", "1",
               "--num-workers", "0", "--disable-validation"])
    lrs = [float(x) for x in re.findall(r"train_inner \| .*?num_updates=\d+, lr=([0-9.e-]+)", log)]
    expected = [1e-3 * (1 - (u - 1) / 4) if schedule == "linear" else 1e-3 * u ** -0.5 for u in range(1, 6)]
    assert lrs == pytest.approx(expected, abs=1e-9)
