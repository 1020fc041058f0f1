"""A closed-form W: fairseq_defemb.fit, defemb-fit, --projection-init least-squares and
--mask-headword-everywhere, on the tiny RoBERTa and BART."""
import json
import logging

import numpy as np
import pytest
import torch

from fairseq_defemb.cli.fit import main as fit_main
from fairseq_defemb.cli.predict import main as predict_main
from fairseq_defemb.data.cloze_dataset import DefinitionClozeDataset
from fairseq_defemb.data.corpus_format import CorpusWriter, load_split, write_metadata
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.data.headword import echo_positions
from fairseq_defemb.data.vocabulary import load_model_dictionary
from fairseq_defemb.fit import LAMBDA_GRID, build_definition_model, fit_projection, read_states, sample_prompts
from fairseq_defemb.predict import predict_with_model
from test_definition_cloze import build_with_cfg
from tiny_corpus import DEFINITIONS, prompt_and_spans


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_fitted_w_is_numpys_ridge_solution_on_the_same_states(tiny_dir, family):
    model, task, _ = build_definition_model(pretrained_checkpoint=tiny_dir / family / "model.pt",
                                            corpus=tiny_dir / "corpus")
    report = fit_projection(model, task, samples=40, lam=0.3, seed=3, positions="every")
    train = task.build_cloze_dataset("train", predict=True)
    prompts = sample_prompts(train, 40, 3)
    read = read_states(model, train, prompts, max_tokens=64)
    x = read.states.double().numpy()
    y = model.target_embeddings[read.targets].double().numpy()
    # The ridge problem as an ordinary least-squares one: [X; sqrt(lam) I] B = [Y; 0].
    augmented = np.vstack([x, np.sqrt(0.3) * np.eye(x.shape[1])])
    expected, *_ = np.linalg.lstsq(augmented, np.vstack([y, np.zeros((x.shape[1], y.shape[1]))]), rcond=None)
    np.testing.assert_allclose(model.projection.weight.detach().double().numpy(), expected.T, rtol=1e-4, atol=1e-5)
    assert report["lambda"] == 0.3 and report["lambda_source"] == "given"
    assert report["fit"]["prompts"] == 40 and report["fit"]["states"] == len(read.targets)
    # The states are what the model reads: its forward is W applied to them.
    sample = train.collater([train[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**sample["net_input"]),
                                   model.read_states(**sample["net_input"]) @ model.projection.weight.T)


def test_lambda_is_the_grid_value_with_the_lowest_validation_loss(tiny_dir):
    model, task, _ = build_definition_model(pretrained_checkpoint=tiny_dir / "roberta" / "model.pt",
                                            corpus=tiny_dir / "corpus")
    report = fit_projection(model, task, samples=None)
    losses = report["lambda_grid_valid_loss"]
    assert report["lambda_source"] == "valid" and list(losses) == [repr(v) for v in LAMBDA_GRID]
    assert losses[repr(report["lambda"])] == min(losses.values())
    assert report["valid"]["fitted_W"]["loss"] == pytest.approx(min(losses.values()), rel=1e-5)
    # The trivial baselines sit beside it: the fit beats the mean target row and the random W.
    valid = report["valid"]
    assert valid["fitted_W"]["loss"] < valid["mean_row"]["loss"] < valid["random_W"]["loss"]


def valid_loss(task, model, criterion) -> float:
    """The loss fairseq-train's first validation reports: summed over the valid split, per definition."""
    model.eval()
    dataset = task.datasets["valid"]
    total, size = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), 2):
            loss, sample_size, _ = criterion(model, dataset.collater([dataset[i] for i in range(start, min(start + 2, len(dataset)))]))
            total, size = total + float(loss), size + sample_size
    return total / size


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_warm_start_starts_below_the_random_w(tiny_dir, family, caplog):
    # fairseq-train seeds torch before building the model; both builds start from the same random W
    torch.manual_seed(5)
    task, model, criterion, _ = build_with_cfg(tiny_dir, family, ["--seed", "5", "--projection-init", "random"])
    random_loss = valid_loss(task, model, criterion)
    torch.manual_seed(5)
    with caplog.at_level(logging.INFO):
        task, model, criterion, _ = build_with_cfg(tiny_dir, family, ["--seed", "5", "--projection-init", "least-squares"])
    warm_loss = valid_loss(task, model, criterion)
    assert warm_loss < random_loss
    report = task.projection_init_report
    # The logged numbers are the first validation's: same corruption, same definitions, same W.
    assert report["valid"]["read_as"] == "trained"
    assert report["valid"]["fitted_W"]["loss"] == pytest.approx(warm_loss, rel=1e-4)
    assert report["valid"]["random_W"]["loss"] == pytest.approx(random_loss, rel=1e-4)
    assert f"fitted W {report['valid']['fitted_W']['loss']:.4f}" in caplog.text
    # Training goes on from there: nothing the fit's pass cached refuses autograd.
    model.train()
    train = task.datasets["train"]
    loss, _, _ = criterion(model, train.collater([train[i] for i in range(4)]))
    loss.backward()
    assert model.projection.weight.grad is not None


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_warm_start_from_a_fit_checkpoint_is_the_least_squares_warm_start(tiny_dir, tmp_path, family, caplog):
    """--projection-init-from fit.pt (defemb-fit's W, the training prompts not read again) starts
    training where --projection-init least-squares with the same prompts, seed and lambda does,
    and logs the same scores, the mean target row of the fit included."""
    assert fit_main(["--pretrained-checkpoint", str(tiny_dir / family / "model.pt"), "--corpus", str(tiny_dir / "corpus"),
                     "--out", str(tmp_path / "fit.pt"), "--samples", "30", "--lambda", "0.5", "--seed", "5",
                     "--projection-input", "state", "--no-progress"]) == 0
    torch.manual_seed(5)
    task, fitted, _, _ = build_with_cfg(tiny_dir, family, ["--seed", "5", "--projection-init", "least-squares",
                                                          "--projection-init-samples", "30",
                                                          "--projection-init-lambda", "0.5"])
    torch.manual_seed(5)
    # defemb-fit's main configured logging (no propagation to the root): listen on the task's logger
    task_logger = logging.getLogger("fairseq_defemb.tasks.definition_cloze")
    task_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=task_logger.name):
            loaded_task, loaded, _, _ = build_with_cfg(tiny_dir, family, ["--seed", "5", "--projection-init-from",
                                                                         str(tmp_path / "fit.pt")])
    finally:
        task_logger.removeHandler(caplog.handler)
    torch.testing.assert_close(loaded.projection.weight, fitted.projection.weight, rtol=1e-5, atol=1e-6)
    valid, loaded_valid = task.projection_init_report["valid"], loaded_task.projection_init_report["valid"]
    assert loaded_valid["read_as"] == "trained" and loaded_valid["states"] == valid["states"]
    for key in ("mean_row", "random_W", "fitted_W"):
        assert loaded_valid[key]["loss"] == pytest.approx(valid[key]["loss"], rel=1e-5), key
    assert loaded_task.projection_init_report["fit"]["lambda"] == 0.5
    assert f"mean target row {valid['mean_row']['loss']:.4f}" in caplog.text and "W loaded" in caplog.text


def test_projection_init_from_refuses_another_model_and_two_inits(tiny_dir, tmp_path):
    assert fit_main(["--pretrained-checkpoint", str(tiny_dir / "roberta" / "model.pt"), "--corpus",
                     str(tiny_dir / "corpus"), "--out", str(tmp_path / "fit.pt"), "--samples", "10", "--lambda", "1",
                     "--no-progress"]) == 0
    with pytest.raises(ValueError, match="another pretrained checkpoint"):
        build_with_cfg(tiny_dir, "bart", ["--projection-init-from", str(tmp_path / "fit.pt")])
    with pytest.raises(ValueError, match="give one"):
        build_with_cfg(tiny_dir, "roberta", ["--projection-init", "least-squares", "--projection-init-from",
                                             str(tmp_path / "fit.pt")])
    with pytest.raises(FileNotFoundError, match="defemb-fit"):
        build_with_cfg(tiny_dir, "roberta", ["--projection-init-from", str(tmp_path / "missing.pt")])


def test_least_squares_needs_the_pretrained_model(tiny_dir):
    from fairseq import options

    with pytest.raises(ValueError, match="--pretrained-checkpoint"):
        args = options.parse_args_and_arch(options.get_training_parser(), [
            str(tiny_dir / "corpus"), "--task", "definition_cloze", "--criterion", "mimic_mse",
            "--arch", "defemb_roberta_base", "--projection-init", "least-squares", "--cpu"])
        from fairseq import tasks
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf

        cfg = convert_namespace_to_omegaconf(args)
        tasks.setup_task(cfg.task).build_model(cfg.model)


@pytest.mark.parametrize("family,projection_input", [("roberta", "state"), ("roberta", "state+prompt-mean"),
                                                    ("bart", "state+prompt-mean")])
def test_training_free_checkpoint_predicts_what_the_fitted_model_does(tiny_dir, tmp_path, family, projection_input,
                                                                       capsys):
    out = tmp_path / "fit.pt"
    assert fit_main(["--pretrained-checkpoint", str(tiny_dir / family / "model.pt"), "--corpus", str(tiny_dir / "corpus"),
                     "--out", str(out), "--samples", "30", "--lambda", "0.5", "--projection-input", projection_input,
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "fit.json").read_text())
    assert json.loads(printed.splitlines()[0])["fit"] == report["fit"] and "fitted W" in printed
    assert predict_main(["--checkpoint", str(out), "--corpus", str(tiny_dir / "corpus"), "--out",
                         str(tmp_path / "defemb.pt"), "--no-progress"]) == 0
    predicted = PredictedEmbeddings.load(tmp_path / "defemb.pt")
    # The same fit in memory, predicted without a checkpoint in between.
    model, task, _ = build_definition_model(pretrained_checkpoint=tiny_dir / family / "model.pt",
                                            corpus=tiny_dir / "corpus", projection_input=projection_input)
    fit_projection(model, task, samples=30, lam=0.5)
    ids, vectors, _ = predict_with_model(model.eval(), task, progress=False)
    assert torch.equal(ids, predicted.token_ids)
    torch.testing.assert_close(predicted.embeddings, vectors, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_prompt_mean_input_is_the_state_beside_the_mean_of_its_prompt(tiny_dir, family):
    """--projection-input state+prompt-mean: W reads h_{g(k)} (as Eq. 4 reads it) and the mean of the
    last layer (BART: the encoder's output) over its own prompt, padding left out."""
    kwargs = dict(pretrained_checkpoint=tiny_dir / family / "model.pt", corpus=tiny_dir / "corpus")
    both, task, _ = build_definition_model(**kwargs, projection_input="state+prompt-mean")
    state, _, _ = build_definition_model(**kwargs, projection_input="state")
    dim = state.projection.in_features
    assert both.projection.in_features == 2 * dim  # the tiny models' encoder and decoder are as wide
    train = task.build_cloze_dataset("train", predict=True)
    lengths = np.array([train.size(i) for i in range(len(train))])
    # items of different lengths, so the batch is padded
    sample = train.collater([train[i] for i in [int(np.argmin(lengths)), int(np.argmax(lengths)), 0, 1]])
    net_input = sample["net_input"]
    pad = task.source_dictionary.pad()
    assert net_input["src_tokens"].eq(pad).any()
    both.eval(), state.eval()
    with torch.no_grad():
        read = both.read_states(**net_input)
        torch.testing.assert_close(read[:, :dim], state.read_states(**net_input))
        rows = net_input["predict_mask"].nonzero()[:, 0]
        for i, row in enumerate(rows.tolist()):
            tokens = net_input["src_tokens"][row]
            tokens = tokens[tokens.ne(pad)][None]  # the prompt alone, no padding
            if family == "roberta":
                hidden = both.encoder.extract_features(tokens)[0][0]
            else:
                hidden = both.encoder(tokens, src_lengths=torch.tensor([tokens.size(1)]))["encoder_out"][0][:, 0]
            torch.testing.assert_close(read[i, dim:], hidden.mean(0), rtol=1e-4, atol=1e-5)


def test_a_fit_warm_starts_only_a_model_reading_what_it_was_fitted_on(tiny_dir, tmp_path):
    # defemb-fit's default is the reading whose fitted W alone measured best (docs/definition-model.md)
    from fairseq_defemb.cli.fit import build_parser

    defaults = build_parser().parse_args(["--pretrained-checkpoint", "m", "--corpus", "c", "--out", "o"])
    assert defaults.projection_input == "state+prompt-mean"
    assert fit_main(["--pretrained-checkpoint", str(tiny_dir / "roberta" / "model.pt"), "--corpus",
                     str(tiny_dir / "corpus"), "--out", str(tmp_path / "fit.pt"), "--samples", "10", "--lambda", "1",
                     "--no-progress"]) == 0
    # ... and its rows are not centred (centring did not help a fitted W alone), while a trained model's are
    from fairseq_defemb.predict import load_definition_model, prediction_mean_of

    assert prediction_mean_of(load_definition_model(tmp_path / "fit.pt", tiny_dir / "corpus")[1]) == "raw"
    assert build_with_cfg(tiny_dir, "roberta")[3].task.prediction_mean == "rows"
    with pytest.raises(ValueError, match="another --projection-input"):
        build_with_cfg(tiny_dir, "roberta", ["--projection-init-from", str(tmp_path / "fit.pt")])
    task, model, _, _ = build_with_cfg(tiny_dir, "roberta", ["--projection-init-from", str(tmp_path / "fit.pt"),
                                                            "--projection-input", "state+prompt-mean"])
    fitted = torch.load(tmp_path / "fit.pt", weights_only=False)["model"]["projection.weight"]
    assert torch.equal(model.projection.weight.detach(), fitted)


def test_fit_refuses_to_overwrite_its_input(tiny_dir, capsys):
    source = tiny_dir / "roberta" / "model.pt"
    before = source.read_bytes()
    assert fit_main(["--pretrained-checkpoint", str(source), "--corpus", str(tiny_dir / "corpus"),
                     "--out", str(source), "--no-progress"]) == 2
    assert "not the input" in capsys.readouterr().err and source.read_bytes() == before


def test_fit_names_a_checkpoint_that_is_neither_roberta_nor_bart(tiny_dir, tmp_path, capsys):
    odd = tmp_path / "odd.pt"
    torch.save({"model": {"layer.weight": torch.zeros(2)}}, odd)
    assert fit_main(["--pretrained-checkpoint", str(odd), "--corpus", str(tiny_dir / "corpus"),
                     "--out", str(tmp_path / "fit.pt"), "--no-progress"]) == 2
    assert "neither a fairseq RoBERTa" in capsys.readouterr().err and not (tmp_path / "fit.pt").exists()


def test_held_out_tokens_stay_out_of_the_fit(tiny_dir):
    model, task, _ = build_definition_model(pretrained_checkpoint=tiny_dir / "roberta" / "model.pt",
                                            corpus=tiny_dir / "corpus")
    dictionary = task.source_dictionary
    held = {dictionary.index("cat"), dictionary.index("fox")}
    train = task.build_cloze_dataset("train", predict=True)
    prompts = sample_prompts(train, None, 1, exclude_token_ids=held)
    defines_held = [any(t in held for s, e in train.corpus.spans_of(i).tolist() for t in train.corpus.prompts[i][s:e].tolist())
                    for i in range(len(train.corpus))]
    assert 0 < sum(defines_held) and prompts.tolist() == [i for i, hit in enumerate(defines_held) if not hit]
    report = fit_projection(model, task, samples=None, lam=1.0, exclude_token_ids=held)
    assert report["fit"]["prompts"] == len(prompts)


def test_read_states_say_where_each_row_was_read(tiny_dir):
    # examples/fit_gap.py tells a headword's own position from a piece of another variant by it
    model, task, _ = build_definition_model(pretrained_checkpoint=tiny_dir / "roberta" / "model.pt",
                                            corpus=tiny_dir / "corpus")
    train = task.build_cloze_dataset("train", predict=True)
    read = read_states(model, train, None, max_tokens=64)
    prompts = read.definitions.numpy()
    assert len(np.unique(prompts)) > 1
    expected = {(int(p), int(k)) for p, k, _ in train.occurrences}
    assert set(zip(prompts.tolist(), read.positions.tolist())) == expected and len(read.positions) == len(expected)
    for prompt, position, target in zip(prompts, read.positions.tolist(), read.targets.tolist()):
        assert int(train.corpus.prompts[int(prompt)][position]) == target
    # items: only the occurrences asked for (here each prompt's first headword subword), still one row each
    first = np.nonzero(np.r_[True, train.occurrences[1:, 0] != train.occurrences[:-1, 0]])[0]
    some = read_states(model, train, None, items=first, max_tokens=64)
    assert sorted(zip(some.definitions.tolist(), some.positions.tolist())) == \
        sorted((int(p), int(k)) for p, k, _ in train.occurrences[first])


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_a_prompt_longer_than_the_models_positions_is_left_out_and_counted(tiny_dir, tmp_path, family):
    """The tiny models read 64 positions; a 100-token prompt would index past their position table."""
    d = load_model_dictionary(tiny_dir / "roberta" / "dict.txt")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "dict.txt").write_bytes((tiny_dir / "roberta" / "dict.txt").read_bytes())
    rows = [prompt_and_spans(d, w, text) for w, text in DEFINITIONS.items()]
    long_ids, long_spans = rows[0]
    long_prompt = (list(long_ids[:-1]) + [d.index("large")] * 100 + [d.eos()], long_spans)
    for split, prompts in (("train", [*rows, long_prompt]), ("valid", rows)):
        writer = CorpusWriter(corpus, split, len(d))
        for prompt, spans in prompts:
            writer.add(prompt, spans)
        writer.finalize()
    write_metadata(corpus, corpus / "dict.txt", {"train": len(rows) + 1, "valid": len(rows)})
    model, task, _ = build_definition_model(pretrained_checkpoint=tiny_dir / family / "model.pt", corpus=corpus)
    report = fit_projection(model, task, samples=None, lam=0.5, positions="every")
    assert report["fit"]["too_long_for_the_model"] > 0 and report["fit"]["prompts"] == len(rows)


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_headword_positions_fit_one_whole_token_row_per_prompt(tiny_dir, family):
    model, task, _ = build_definition_model(pretrained_checkpoint=tiny_dir / family / "model.pt",
                                            corpus=tiny_dir / "corpus")
    report = fit_projection(model, task, samples=None, lam=0.5, positions="headword")
    train = task.build_cloze_dataset("train", predict=True)
    spans = [train.corpus.spans_of(i).tolist() for i in range(len(train.corpus))]
    headwords = [i for i, s in enumerate(spans) if s[0][1] - s[0][0] == 1]
    assert headwords
    assert report["positions"] == "headword" and report["fit"]["prompts"] == len(headwords)
    assert report["fit"]["states"] == len(headwords)  # one row per prompt: the headword alone
    # W is the ridge solution on exactly those rows of the every-position read
    every = read_states(model, train, np.array(headwords), max_tokens=64)
    first = torch.tensor([spans[p][0][0] if family == "roberta" else 1 for p in every.definitions.tolist()])
    keep = every.positions == first
    assert int(keep.sum()) == len(headwords) < len(keep)  # the other variants' rows are left out
    for p, t in zip(every.definitions[keep].tolist(), every.targets[keep].tolist()):
        assert t == int(train.corpus.prompts[p][spans[p][0][0]])  # the headword's own id
    x = every.states[keep].double()
    y = model.target_embeddings[every.targets[keep]].double()
    expected = torch.linalg.solve(x.T @ x + 0.5 * torch.eye(x.size(1), dtype=torch.float64), x.T @ y).T
    torch.testing.assert_close(model.projection.weight.detach().double(), expected, rtol=1e-4, atol=1e-5)


# -- --mask-headword-everywhere ---------------------------------------------------------

def test_echo_positions_are_the_headword_ids_outside_the_spans():
    prompt = np.array([0, 7, 8, 5, 7, 9, 8, 7, 2])
    assert echo_positions(prompt, np.array([[1, 3]])).tolist() == [4, 6, 7]
    assert echo_positions(prompt, np.array([[1, 3], [4, 5]])).tolist() == [6, 7]
    assert echo_positions(prompt, np.array([[5, 6]])).tolist() == []


def write_echo_corpus(out, dict_path, with_tiny_definitions: bool):
    """``<s> emu is emu is a large emu bird </s>``, a prompt whose definition names its headword, in
    both splits; with the tiny corpus's definitions in train too, so a fitted W sees many targets."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "dict.txt").write_bytes(dict_path.read_bytes())
    d = load_model_dictionary(out / "dict.txt")
    ids = [d.bos(), d.index("emu"), d.index("is"), d.index("emu"), d.index("is"), d.index("a"), d.index("large"),
           d.index("emu"), d.index("bird"), d.eos()]
    others = [prompt_and_spans(d, w, text) for w, text in DEFINITIONS.items()] if with_tiny_definitions else []
    for split, rows in (("train", [*others, (ids, [(1, 2), (3, 4)])]), ("valid", [(ids, [(1, 2), (3, 4)])])):
        writer = CorpusWriter(out, split, len(d))
        for prompt, spans in rows:
            writer.add(prompt, spans)
        writer.finalize()
    write_metadata(out, out / "dict.txt", {"train": len(others) + 1, "valid": 1})
    return out, d, ids


@pytest.fixture(scope="module")
def echo_corpus(tiny_dir, tmp_path_factory):
    return write_echo_corpus(tmp_path_factory.mktemp("echo"), tiny_dir / "roberta" / "dict.txt", False)


@pytest.mark.parametrize("corruption,predict", [("bert", True), ("bert", False), ("sentinel", True)])
def test_mask_headword_everywhere_hides_the_definitions_copy(echo_corpus, corruption, predict):
    out, d, ids = echo_corpus
    mask = d.index("<mask>")

    def items(everywhere):
        ds = DefinitionClozeDataset(load_split(out, "train"), d.pad(), d.eos(), mask, np.arange(4, len(d) - 1),
                                    corruption=corruption, predict=predict, mask_headword_everywhere=everywhere)
        return [ds[i] for i in range(len(ds))]

    for plain, hidden in zip(items(False), items(True)):
        assert torch.equal(plain["target"], hidden["target"])
        assert d.index("emu") in plain["source"].tolist()[5:]  # the copy is visible by default
        changed = (plain["source"] != hidden["source"]).nonzero().flatten().tolist()
        # Only the definition's "emu" changes, to <mask> (one-subword spans keep positions as sentinels).
        assert changed == [7]
        assert hidden["source"][changed].tolist() == [mask]


def test_predict_masks_the_headword_everywhere_as_fitted_or_when_asked(tiny_dir, tmp_path, capsys):
    out, d, _ = write_echo_corpus(tmp_path / "echo", tiny_dir / "roberta" / "dict.txt", True)
    common = ["--pretrained-checkpoint", str(tiny_dir / "roberta" / "model.pt"), "--corpus", str(out),
              "--lambda", "1", "--no-progress"]
    assert fit_main([*common, "--out", str(tmp_path / "plain.pt")]) == 0
    assert fit_main([*common, "--out", str(tmp_path / "hidden.pt"), "--mask-headword-everywhere"]) == 0
    assert json.loads((tmp_path / "hidden.json").read_text())["mask_headword_everywhere"] is True

    def emu(checkpoint, *extra):
        capsys.readouterr()
        assert predict_main(["--checkpoint", str(tmp_path / checkpoint), "--corpus", str(out), "--splits", "train",
                             "--out", str(tmp_path / "e.pt"), "--no-progress", *extra]) == 0
        flag = json.loads(capsys.readouterr().out.splitlines()[0])["mask_headword_everywhere"]
        result = PredictedEmbeddings.load(tmp_path / "e.pt")
        return flag, result.embeddings[result.token_ids.tolist().index(d.index("emu"))]

    plain_flag, plain = emu("plain.pt")
    asked_flag, asked = emu("plain.pt", "--mask-headword-everywhere")
    stored_flag, _ = emu("hidden.pt")
    assert (plain_flag, asked_flag, stored_flag) == (False, True, True)
    assert not torch.allclose(plain, asked)  # the definition's "emu" was visible, then hidden


def test_read_inputs_reads_what_the_library_reads(tiny_dir):
    """examples/read_inputs.py's rows `state` and `state+prompt-mean` are the columns of its one pass
    that the library's two readings (--projection-input) compute."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from read_inputs import EveryLayer, columns, inputs

    kwargs = dict(pretrained_checkpoint=tiny_dir / "roberta" / "model.pt", corpus=tiny_dir / "corpus")
    both, task, _ = build_definition_model(**kwargs, projection_input="state+prompt-mean")
    reader = EveryLayer(both)
    train = task.build_cloze_dataset("train", predict=True)
    net_input = train.collater([train[i] for i in range(6)])["net_input"]
    both.eval(), reader.eval()
    with torch.no_grad():
        every = reader.read_states(**net_input)
        library = both.read_states(**net_input)
    named = inputs(reader.blocks - 2)
    width = reader.width
    torch.testing.assert_close(columns(every, "state+prompt-mean", named["state+prompt-mean"], width), library)
    torch.testing.assert_close(columns(every, "state", named["state"], width), library[:, :width])
    assert every.shape[1] == width * reader.blocks
