"""The definition_cloze task, the defemb models and the mimic_mse criterion."""
import numpy as np
import pytest
import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from fairseq_defemb.data.cloze_dataset import DefinitionClozeDataset
from fairseq_defemb.data.corpus_format import CorpusWriter, load_split, write_metadata
from fairseq_defemb.criterions.mimic_mse import mimic_loss_terms
from fairseq_defemb.data.vocabulary import load_model_dictionary


def training_args(tiny_dir, family, extra=()):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, [
        str(tiny_dir / "corpus"), "--task", "definition_cloze", "--criterion", "mimic_mse",
        "--arch", f"defemb_{family}", "--pretrained-checkpoint", str(tiny_dir / family / "model.pt"),
        "--dropout", "0", "--attention-dropout", "0", "--cpu", *extra,
    ])


def build_with_cfg(tiny_dir, family, extra=()):
    """Task, model, criterion and cfg exactly as fairseq-train builds them from its command line."""
    cfg = convert_namespace_to_omegaconf(training_args(tiny_dir, family, extra))
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    for split in ("train", "valid"):
        task.load_dataset(split)
    return task, model, task.build_criterion(cfg.criterion), cfg


def build(tiny_dir, family, extra=()):
    return build_with_cfg(tiny_dir, family, extra)[:3]


def batch(dataset, indices):
    return dataset.collater([dataset[i] for i in indices])


# -- corruption -----------------------------------------------------------------

def test_bert_corruption_proportions(tmp_path, tiny_dir):
    dictionary = load_model_dictionary(tiny_dir / "roberta" / "dict.txt")
    (tmp_path / "dict.txt").write_bytes((tiny_dir / "roberta" / "dict.txt").read_bytes())
    writer = CorpusWriter(tmp_path, "train", len(dictionary))
    word = dictionary.index("quagga")
    prompt = [dictionary.bos()] + [word] * 200 + [dictionary.eos()]
    for _ in range(50):
        writer.add(prompt, [(1, 201)])
    writer.finalize()
    write_metadata(tmp_path, tmp_path / "dict.txt", {"train": 50})
    random_ids = np.arange(dictionary.nspecial, len(dictionary) - 1)
    ds = DefinitionClozeDataset(load_split(tmp_path, "train"), dictionary.pad(), dictionary.eos(),
                                dictionary.index("<mask>"), random_ids, corruption="bert")
    sources = torch.cat([ds[i]["source"][1:-1] for i in range(len(ds))])
    masked = (sources == dictionary.index("<mask>")).float().mean().item()
    unchanged = (sources == word).float().mean().item()
    # Random draws hit the headword itself 1/len(random_ids) of the time.
    randomised = 1 - masked - unchanged
    assert masked == pytest.approx(0.5, abs=0.02)
    assert randomised == pytest.approx(0.25 * (1 - 1 / len(random_ids)), abs=0.02)
    assert unchanged == pytest.approx(0.25, abs=0.02)
    # Deterministic per (seed, epoch, index); a new epoch redraws.
    assert torch.equal(ds[3]["source"], ds[3]["source"])
    first = ds[3]["source"].clone()
    ds.set_epoch(2)
    assert not torch.equal(first, ds[3]["source"])


def test_bert_prediction_masks_one_token_at_a_time(tiny_dir):
    task, model, _ = build(tiny_dir, "roberta")
    ds = task.build_cloze_dataset("valid", predict=True)
    mask = task.mask_idx
    total = sum(int((ds.corpus.spans_of(i)[:, 1] - ds.corpus.spans_of(i)[:, 0]).sum()) for i in range(len(ds.corpus)))
    assert len(ds) == total
    for i in range(len(ds)):
        item = ds[i]
        assert (item["source"] == mask).sum() == 1
        assert item["source"][item["positions"]].item() == mask
        assert item["target"].item() == ds.corpus.prompts[item["definition"]][item["positions"]].item()


def test_sentinel_alignment_is_the_preceding_token(tiny_dir):
    task, model, _ = build(tiny_dir, "bart")
    assert task.corruption == "sentinel"
    ds = task.datasets["train"]
    for i in range(len(ds)):
        item = ds[i]
        prompt, spans = ds.corpus.prompts[i].long(), ds.corpus.spans_of(i)
        # Encoder input: every variant span collapsed to one <mask>.
        assert (item["source"] == task.mask_idx).sum() == len(spans)
        assert len(item["source"]) == len(prompt) - int((spans[:, 1] - spans[:, 0] - 1).sum())
        # Targets are the headword subwords in order of occurrence...
        expected = torch.cat([prompt[s:e] for s, e in spans.tolist()])
        assert torch.equal(item["target"], expected)
        # ...and the decoder input at g(k) is the token preceding p_k in y.
        y = torch.cat([item["prev_output_tokens"][1:], torch.tensor([task.dictionary.eos()])])
        assert torch.equal(y[item["positions"]], item["target"])


def test_bart_teacher_forced_pass_equals_prefix_decoding(tiny_dir):
    """One teacher-forced pass gives, at g(k), the state of decoding the prefix up to p_k."""
    task, model, _ = build(tiny_dir, "bart")
    model.eval()
    ds = task.datasets["valid"]
    sample = batch(ds, [0])
    net = sample["net_input"]
    with torch.no_grad():
        batched = model(**net)
        encoder_out = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
        for j, t in enumerate(torch.nonzero(net["predict_mask"][0]).flatten().tolist()):
            prefix = net["prev_output_tokens"][:, : t + 1]
            hidden, _ = model.decoder.extract_features(prefix, encoder_out=encoder_out)
            torch.testing.assert_close(batched[j], model.projection(hidden[0, -1]), atol=1e-5, rtol=1e-5)


def test_roberta_reads_the_masked_position(tiny_dir):
    task, model, _ = build(tiny_dir, "roberta")
    model.eval()
    sample = batch(task.build_cloze_dataset("valid", predict=True), [0, 1, 2])
    with torch.no_grad():
        predicted = model(**sample["net_input"])
        hidden, _ = model.encoder.extract_features(sample["net_input"]["src_tokens"])
    rows, cols = torch.nonzero(sample["net_input"]["predict_mask"], as_tuple=True)
    torch.testing.assert_close(predicted, hidden[rows, cols] @ model.projection.weight.T)


@pytest.mark.parametrize("normalize_before", [False, True])
def test_roberta_reads_the_last_layer_only_where_predicted(tiny_dir, tmp_path, normalize_before):
    """The last layer runs queries only at predict_mask: equal to the full forward, for post- and
    pre-LN encoders, padded batches and rows reading several positions, and in training its gradients."""
    from tiny_corpus import make_tiny_corpus
    from tiny_models import ARCH_ARGS

    from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model, save_model_checkpoint

    (tmp_path / "roberta").mkdir()
    (tmp_path / "roberta" / "dict.txt").write_bytes((tiny_dir / "roberta" / "dict.txt").read_bytes())
    pretraining_task, arch, dims = ARCH_ARGS["roberta"]
    torch.manual_seed(0)
    _, pretrained, cfg = build_pretraining_model(
        tmp_path / "roberta", pretraining_task, arch, dims + (["--encoder-normalize-before"] if normalize_before else []))
    save_model_checkpoint(pretrained, cfg, tmp_path / "roberta" / "model.pt")
    make_tiny_corpus(tmp_path / "corpus", tmp_path / "roberta" / "dict.txt")
    task, model, _ = build(tmp_path, "roberta")
    assert model.encoder.sentence_encoder.layers[-1].normalize_before == normalize_before
    model.eval()
    for dataset in (task.build_cloze_dataset("train", predict=True), task.datasets["train"]):
        sample = batch(dataset, range(len(dataset)))
        net = sample["net_input"]
        assert net["src_tokens"].eq(task.dictionary.pad()).any()
        with torch.no_grad():
            hidden, _ = model.encoder.extract_features(net["src_tokens"])
            torch.testing.assert_close(model(**net), model.projection(hidden[net["predict_mask"]]), atol=1e-5, rtol=1e-5)
    assert net["predict_mask"].sum(1).max() > 1
    # Training reads the same way: with dropout off, the loss's gradients are the full forward's.
    model.train()
    for module in model.modules():
        if hasattr(module, "p") and "Dropout" in type(module).__name__:
            module.p = 0.0
    target = torch.randn(int(net["predict_mask"].sum()), model.projection.weight.shape[0])
    rows = []
    hook = model.encoder.sentence_encoder.layers[-1].fc1.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[:2]))
    model(**net)
    hook.remove()
    assert rows == [(int(net["predict_mask"].sum(1).max()), len(net["src_tokens"]))]  # queries only where read
    grads = []
    for read in (lambda: model(**net), lambda: model.projection(model.encoder.extract_features(net["src_tokens"])[0][net["predict_mask"]])):
        model.zero_grad()
        (read() - target).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "encoder.sentence_encoder.layers.0.fc1.weight" in grads[0]
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], atol=1e-4, rtol=1e-4, msg=key)


# -- model construction ---------------------------------------------------------

def test_pretrained_weights_loaded_and_embeddings_frozen(tiny_dir):
    from fairseq import checkpoint_utils

    _, model, _ = build(tiny_dir, "bart")
    state = checkpoint_utils.load_checkpoint_to_cpu(str(tiny_dir / "bart" / "model.pt"))["model"]
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert torch.equal(model.target_embeddings, state["encoder.embed_tokens.weight"])
    assert not model.embed_tokens.weight.requires_grad
    assert model.projection.weight.requires_grad and model.projection.bias is None
    assert model.projection.weight.shape == (32, 32)
    _, unfrozen, _ = build(tiny_dir, "roberta", ["--update-embeddings"])
    assert unfrozen.embed_tokens.weight.requires_grad


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_train_layers_trains_w_and_the_top_layers_only(tiny_dir, family):
    """--train-layers N: gradients reach W and the top N layers of the stack W reads, nothing under
    them (BART's encoder included); 0 trains W alone; an N past the stack trains every layer of it (the
    embeddings still frozen); a negative N and --update-embeddings are refused."""
    task, model, criterion = build(tiny_dir, family, ["--train-layers", "1"])
    stack = "encoder.sentence_encoder.layers" if family == "roberta" else "decoder.layers"
    top = f"{stack}.{len(model.read_stack()[0]) - 1}."
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "projection.weight" in trained and any(n.startswith(top) for n in trained)
    assert all(n == "projection.weight" or n.startswith(top) for n in trained), sorted(trained)
    model.train()
    loss, _, _ = criterion(model, batch(task.dataset("train"), range(4)))
    loss.backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == trained
    _, w_alone, _ = build(tiny_dir, family, ["--train-layers", "0"])
    assert [n for n, p in w_alone.named_parameters() if p.requires_grad] == ["projection.weight"]
    _, whole_stack, _ = build(tiny_dir, family, ["--train-layers", "3"])
    _, two, _ = build(tiny_dir, family, ["--train-layers", "2"])
    deep = {n for n, p in whole_stack.named_parameters() if p.requires_grad}
    assert deep == {n for n, p in two.named_parameters() if p.requires_grad}
    assert {f"{stack}.0.", f"{stack}.1."} <= {n[:len(stack) + 3] for n in deep}
    assert not whole_stack.embed_tokens.weight.requires_grad
    with pytest.raises(ValueError, match="give 0"):
        build(tiny_dir, family, ["--train-layers", "-1"])
    with pytest.raises(ValueError, match="drop --update-embeddings"):
        build(tiny_dir, family, ["--train-layers", "1", "--update-embeddings"])


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_bf16_autocast_runs_the_stack_in_bfloat16_and_the_rest_in_float32(tiny_dir, family):
    """--bf16-autocast: the stack's products run in bfloat16 (its states differ from float32's, within
    bfloat16's precision) and reach W and the loss as float32; the weights and their gradients stay
    float32; with fairseq's --fp16 (a half-precision model already) it is refused."""
    task, model, criterion = build(tiny_dir, family)
    _, mixed, _ = build(tiny_dir, family, ["--bf16-autocast"])
    mixed.load_state_dict(model.state_dict())
    sample = batch(task.dataset("train"), range(4))
    model.eval(), mixed.eval()
    exact, approx = model.read_states(**sample["net_input"]), mixed.read_states(**sample["net_input"])
    assert approx.dtype == torch.float32 and not torch.equal(exact, approx)
    assert ((approx - exact).norm() / exact.norm()).item() < 0.03
    mixed.train()
    criterion(mixed, sample)[0].backward()
    grads = {n: p.grad for n, p in mixed.named_parameters() if p.requires_grad}
    assert grads["projection.weight"] is not None
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    assert all(g.dtype == torch.float32 for g in grads.values() if g is not None)
    with pytest.raises(ValueError, match="drop --fp16"):
        build(tiny_dir, family, ["--bf16-autocast", "--fp16"])


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_normal_projection_init_is_the_authors_w(tiny_dir, family):
    """--projection-init normal: W ~ N(0, 1/h_s) (the authors' linear W), reproducible from fairseq's seed;
    --projection-init random: nn.Linear's uniform init (std 1/sqrt(3 h_s))."""
    draws = []
    for _ in range(2):
        torch.manual_seed(5)
        draws.append(build(tiny_dir, family, ["--projection-init", "normal"])[1].projection.weight.detach())
    torch.manual_seed(5)
    uniform = build(tiny_dir, family, ["--projection-init", "random"])[1].projection.weight.detach()
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], uniform)
    h_s = draws[0].shape[1]  # 32: 1,024 draws, so the sample std is within ~10% of the true one
    assert draws[0].std().item() == pytest.approx(h_s ** -0.5, rel=0.1)
    assert uniform.abs().max().item() <= h_s ** -0.5 < draws[0].abs().max().item()


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_default_training_starts_from_the_least_squares_w(tiny_dir, family, tmp_path):
    """With no W option, a fresh run's W is the ridge fit on the headword reads of the frozen model
    (fairseq_defemb.fit with the task's defaults); a run that resumes fits nothing."""
    from fairseq_defemb.fit import fit_projection

    save = ["--save-dir", str(tmp_path)]
    task, model, _ = build(tiny_dir, family, save)
    assert task.projection_init_report["positions"] == "headword" and task.projection_init_report["lambda_source"] == "valid"
    reference_task, reference, _ = build(tiny_dir, family, [*save, "--projection-init", "random"])
    assert not torch.equal(model.projection.weight, reference.projection.weight)
    fit_projection(reference, reference_task, samples=10000, seed=1, valid_as_trained=True, positions="headword")
    assert torch.equal(model.projection.weight, reference.projection.weight)
    torch.save({}, tmp_path / "checkpoint_last.pt")  # fairseq-train would resume from it
    task, _, _ = build(tiny_dir, family, save)
    assert task.projection_init_report is None and task.resumes_from() == tmp_path / "checkpoint_last.pt"


@pytest.mark.parametrize("arch,family", [("defemb_bart_large", "bart"), ("defemb_roberta_base", "roberta")])
def test_named_arch_must_match_checkpoint(tiny_dir, arch, family):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(tiny_dir / "corpus"), "--task", "definition_cloze", "--criterion", "mimic_mse", "--arch", arch,
        "--pretrained-checkpoint", str(tiny_dir / family / "model.pt"), "--cpu"])
    with pytest.raises(ValueError, match=f"{arch} does not match .*encoder_layers: checkpoint 2"):
        tasks.setup_task(args).build_model(args)


def test_missing_checkpoint_names_the_file(tiny_dir):
    with pytest.raises(FileNotFoundError, match="nowhere/model.pt"):
        parser = options.get_training_parser()
        args = options.parse_args_and_arch(parser, [
            str(tiny_dir / "corpus"), "--task", "definition_cloze", "--arch", "defemb_roberta",
            "--pretrained-checkpoint", "nowhere/model.pt", "--cpu"])
        tasks.setup_task(args).build_model(args)


def cloze_args(tiny_dir, *extra):
    return options.parse_args_and_arch(options.get_training_parser(), [
        str(tiny_dir / "corpus"), "--task", "definition_cloze", "--criterion", "mimic_mse",
        "--arch", "defemb_roberta", "--cpu", *extra])


def test_no_pretrained_checkpoint_is_an_error_naming_the_option_and_file(tiny_dir):
    """no silent random start."""
    args = cloze_args(tiny_dir)
    with pytest.raises(ValueError, match=r"needs --pretrained-checkpoint PATH.*bart\.large/model\.pt.*"
                       + str(tiny_dir / "corpus" / "dict.txt") + r".*--from-scratch"):
        tasks.setup_task(args).build_model(args)
    both = cloze_args(tiny_dir, "--from-scratch", "--pretrained-checkpoint", str(tiny_dir / "roberta" / "model.pt"))
    with pytest.raises(ValueError, match="exclude each other"):
        tasks.setup_task(both).build_model(both)


def test_from_scratch_builds_a_random_network_on_request(tiny_dir):
    cfg = convert_namespace_to_omegaconf(cloze_args(tiny_dir, "--from-scratch"))
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    pretrained = torch.load(tiny_dir / "roberta" / "model.pt", weights_only=True)["model"]
    weights = model.embed_tokens.weight.detach()
    assert torch.equal(model.target_embeddings, weights)
    assert not torch.equal(weights, pretrained["encoder.sentence_encoder.embed_tokens.weight"])


def test_dictionary_mismatch_is_refused(tiny_dir, tmp_path):
    from tiny_corpus import make_tiny_corpus
    from tiny_models import TINY_WORDS, write_dict

    # Same size, different order: only the hash can tell.
    other = write_dict(tmp_path / "dict.txt", list(reversed(TINY_WORDS)))
    make_tiny_corpus(tmp_path / "corpus", other)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(tmp_path / "corpus"), "--task", "definition_cloze", "--arch", "defemb_roberta",
        "--pretrained-checkpoint", str(tiny_dir / "roberta" / "model.pt"), "--cpu"])
    with pytest.raises(ValueError, match="differs from .*Rebuild the corpus"):
        tasks.setup_task(args).build_model(args)
    # A corpus for a vocabulary of another size.
    small = write_dict(tmp_path / "small.txt", TINY_WORDS[:-3])
    make_tiny_corpus(tmp_path / "small_corpus", small)
    args.data = str(tmp_path / "small_corpus")
    with pytest.raises(ValueError, match="another vocabulary"):
        tasks.setup_task(args).build_model(args)


# -- loss -----------------------------------------------------------------------

def test_loss_matches_hand_computation():
    predicted = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    rows = torch.tensor([0, 0, 1])
    # definition 0: (1 + 4) / 2 = 2.5; definition 1: (4 + 4) / 1 = 8
    assert mimic_loss_terms(predicted, target, rows, 2).tolist() == [2.5, 8.0]


def test_criterion_on_a_batch_matches_eq5(tiny_dir):
    task, model, criterion = build(tiny_dir, "roberta")
    sample = batch(task.datasets["train"], list(range(6)))
    loss, sample_size, log = criterion(model, sample)
    predicted = model(**sample["net_input"]).detach()
    target = model.target_embeddings[sample["target"]]
    expected = 0.0
    for row in range(sample["nsentences"]):
        sel = sample["target_row"] == row
        expected += ((predicted[sel] - target[sel]) ** 2).sum(-1).mean().item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert sample_size == 6 and log["nmasked"] == sample["target"].numel()
    assert log["mimic"].item() == pytest.approx(expected, rel=1e-5)


def test_retrieval_term_adds_a_per_definition_infonce(tiny_dir):
    """--retrieval-weight w: per definition, Eq. 5 plus w times the mean over its masked subwords of
    -log softmax(cos(W h, E) / t)[true row], computed here row by row; the log's mimic stays Eq. 5."""
    weight, temperature = 0.7, 0.1
    task, model, criterion = build(tiny_dir, "roberta", ["--retrieval-weight", str(weight),
                                                         "--retrieval-temperature", str(temperature)])
    sample = batch(task.datasets["train"], list(range(6)))
    loss, _, log = criterion(model, sample)
    predicted = model(**sample["net_input"]).detach()
    rows = model.target_embeddings
    eq5 = retrieval = 0.0
    for row in range(sample["nsentences"]):
        sel = sample["target_row"] == row
        eq5 += ((predicted[sel] - rows[sample["target"][sel]]) ** 2).sum(-1).mean().item()
        terms = []
        for vector, target in zip(predicted[sel], sample["target"][sel]):
            cosines = torch.stack([torch.nn.functional.cosine_similarity(vector, r, dim=0) for r in rows]) / temperature
            terms.append((torch.logsumexp(cosines, 0) - cosines[target]).item())
        retrieval += sum(terms) / len(terms)
    assert loss.item() == pytest.approx(eq5 + weight * retrieval, rel=1e-4)
    assert log["mimic"].item() == pytest.approx(eq5, rel=1e-5)
    # the criterion keeps the matrix's unit rows between steps: a matrix changed in place is read anew
    with torch.no_grad():
        model.target_embeddings.copy_(model.target_embeddings.flip(0))
    changed = criterion(model, sample)[0].item()
    assert changed != pytest.approx(loss.item(), rel=1e-4)
    assert changed == pytest.approx(type(criterion)(task, weight, temperature)(model, sample)[0].item(), rel=1e-6)
    with pytest.raises(ValueError, match="--retrieval-weight -1.0 must be >= 0"):
        build(tiny_dir, "roberta", ["--retrieval-weight", "-1"])


def test_one_step_changes_w_and_not_the_frozen_embeddings(tiny_dir):
    task, model, criterion = build(tiny_dir, "bart")
    w0, e0 = model.projection.weight.detach().clone(), model.embed_tokens.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss, _, _ = criterion(model, batch(task.datasets["train"], [0, 1, 2, 3]))
    assert loss.requires_grad
    loss.backward()
    optimizer.step()
    assert not torch.equal(w0, model.projection.weight)
    assert torch.equal(e0, model.embed_tokens.weight)


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_training_lowers_validation_loss(tiny_dir, family):
    torch.manual_seed(0)
    task, model, criterion = build(tiny_dir, family, ["--projection-init", "random"])
    valid = batch(task.datasets["valid"], range(len(task.datasets["valid"])))
    train = task.datasets["train"]

    def valid_loss():
        model.eval()
        with torch.no_grad():
            loss, size, _ = criterion(model, valid)
        model.train()
        return loss.item() / size

    before = valid_loss()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for step in range(40):
        loss, size, _ = criterion(model, batch(train, [(4 * step + k) % len(train) for k in range(8)]))
        optimizer.zero_grad()
        (loss / size).backward()
        optimizer.step()
    assert valid_loss() < 0.7 * before


@pytest.mark.parametrize("plugin", ["import fairseq, fairseq_defemb", "import fairseq_defemb; fairseq_defemb.register()",
                                    "import fairseq_defemb; fairseq_defemb.allow_fairseq_checkpoints()"])
def test_plugin_makes_checkpoints_loadable(tiny_dir, plugin):
    """torch >= 2.6 refuses fairseq's pickled Namespace until the plugin allow-lists it: loading the
    plugin does (importing the package once fairseq is loaded, or register()), and so does the
    library's allow_fairseq_checkpoints()."""
    import subprocess
    import sys

    load = (f"import torch; torch.load({str(tiny_dir / 'roberta' / 'model.pt')!r}); "
            "from fairseq.models.roberta import RobertaModel; "
            f"RobertaModel.from_pretrained({str(tiny_dir / 'roberta')!r}, 'model.pt', bpe=None)")
    bare = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    assert bare.returncode != 0 and "Weights only load failed" in bare.stderr
    plugged = subprocess.run([sys.executable, "-c", f"{plugin}; {load}"], capture_output=True, text=True)
    assert plugged.returncode == 0, plugged.stderr[-2000:]


REGISTERED = ("from fairseq.tasks import TASK_REGISTRY; from fairseq.models import ARCH_MODEL_REGISTRY; "
              "from fairseq.criterions import CRITERION_REGISTRY; "
              "assert 'definition_cloze' in TASK_REGISTRY and 'defemb_roberta' in ARCH_MODEL_REGISTRY "
              "and 'mimic_mse' in CRITERION_REGISTRY; print('registered')")
USER_DIR = ("from fairseq import options; p = options.get_training_parser(); "
            "a = options.parse_args_and_arch(p, ['x', '--user-dir', {user_dir!r}, '--task', 'definition_cloze', "
            "'--arch', 'defemb_roberta', '--criterion', 'mimic_mse']); ")


@pytest.mark.parametrize("order", [
    # fairseq imports the package, then its tasks/ and models/ (fairseq.utils.import_user_module)
    "{user_dir}",
    # the library was imported first: fairseq skips tasks/ and models/, the package's __path__ registers
    "import fairseq_defemb.data.vocabulary; {user_dir}",
    # fairseq first, then the package: it registers on import
    "import fairseq, fairseq_defemb; ",
    # the package first, then fairseq: register() by hand
    "import fairseq_defemb; fairseq_defemb.register(); ",
])
def test_plugin_registers_in_any_order(order):
    import subprocess
    import sys

    from conftest import REPO

    code = order.format(user_dir=USER_DIR.format(user_dir=str(REPO / "fairseq_defemb"))) + REGISTERED
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO.parent)
    assert result.returncode == 0 and result.stdout.strip().endswith("registered"), result.stderr[-2000:]


def test_importing_the_package_imports_neither_torch_nor_fairseq():
    import subprocess
    import sys

    code = ("import sys, fairseq_defemb, preprocess; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fairseq', 'numpy')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]
