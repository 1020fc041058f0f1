"""The definition-cloze batches built at once from the index arrays against the
per-item code they replaced, kept here as the reference: the same occurrence table, sizes, items,
batches and corruption draws for a given seed, in every mode."""
import numpy as np
import pytest
import torch
from fairseq.data import data_utils

from fairseq_defemb.data import seeded_draws
from fairseq_defemb.data.cloze_dataset import DefinitionClozeDataset
from fairseq_defemb.data.corpus_format import CorpusFormatError, CorpusWriter, load_split, write_metadata
from fairseq_defemb.data.headword import echo_positions

PAD, EOS, MASK, VOCAB = 1, 2, 99, 100


# -- the per-item reference (the library's code) -------------------

def ref_occurrences(ds) -> np.ndarray:
    rows = []
    for i in range(len(ds.corpus)):
        spans = ds.corpus.spans[i].numpy().astype(np.int64).reshape(-1, 2)
        positions = np.concatenate([np.arange(s, e) for s, e in spans])
        tokens = ds.corpus.prompts[i].numpy()[positions].astype(np.int64)
        rows.append(np.stack([np.full_like(positions, i), positions, tokens], axis=1))
    return np.concatenate(rows)


def ref_prompt_index(ds, index):
    return int(ref_occurrences(ds)[index, 0]) if ds.predict and ds.corruption == "bert" else index


def ref_hide(ds, tokens):
    if ds.hidden_ids is None:
        return tokens
    return tokens.masked_fill(torch.isin(tokens, torch.as_tensor(ds.hidden_ids)), ds.mask_idx)


def ref_item(ds, index, occurrences):
    one_at_a_time = ds.predict and ds.corruption == "bert"
    prompt_idx = int(occurrences[index, 0]) if one_at_a_time else index
    prompt = ds.corpus.prompts[prompt_idx].long()
    spans = ds.corpus.spans_of(prompt_idx)
    if ds.mask_headword_everywhere:
        prompt = prompt.clone()
        prompt[torch.from_numpy(echo_positions(prompt.numpy(), spans.numpy()))] = ds.mask_idx
    if ds.corruption == "bert":
        source = prompt.clone()
        if one_at_a_time:
            positions = torch.tensor([int(occurrences[index, 1])])
            source[positions] = ds.mask_idx
        else:
            positions = torch.cat([torch.arange(s, e) for s, e in spans.tolist()]).unique(sorted=True)
            epoch = 0 if ds.fixed_corruption else ds.epoch
            with data_utils.numpy_seed(ds.seed, epoch, index):
                draw = np.random.rand(len(positions))
                random_ids = np.random.choice(ds.random_token_ids, len(positions))
            to_mask = torch.from_numpy(draw < ds.mask_prob)
            to_random = torch.from_numpy((draw >= ds.mask_prob) & (draw < ds.mask_prob + ds.random_token_prob))
            source[positions[to_mask]] = ds.mask_idx
            source[positions[to_random]] = torch.from_numpy(random_ids).long()[to_random]
        item = {"source": ref_hide(ds, source), "positions": positions, "target": prompt[positions]}
    else:
        sentinel = torch.tensor([ds.mask_idx])
        source_parts, target_parts, positions = [], [], []
        cursor, target_len = 0, 0
        for start, end in spans.tolist():
            source_parts += [prompt[cursor:start], sentinel]
            target_parts += [sentinel, prompt[start:end]]
            positions.extend(range(target_len + 1, target_len + 1 + end - start))
            target_len += 1 + end - start
            cursor = end
        source_parts.append(prompt[cursor:])
        target = torch.cat(target_parts + [torch.tensor([ds.eos_idx])])
        positions = torch.tensor(positions)
        item = {"source": ref_hide(ds, torch.cat(source_parts)),
                "prev_output_tokens": ref_hide(ds, torch.cat([torch.tensor([ds.eos_idx]), target[:-1]])),
                "positions": positions, "target": target[positions]}
    item["id"], item["definition"] = index, prompt_idx
    return item


def ref_collate(ds, samples):
    source = data_utils.collate_tokens([s["source"] for s in samples], ds.pad_idx)
    src_lengths = torch.tensor([len(s["source"]) for s in samples])
    counts = torch.tensor([len(s["positions"]) for s in samples])
    rows = torch.repeat_interleave(torch.arange(len(samples)), counts)
    columns = torch.cat([s["positions"] for s in samples])
    net_input = {"src_tokens": source, "src_lengths": src_lengths}
    if ds.corruption == "sentinel":
        prev = data_utils.collate_tokens([s["prev_output_tokens"] for s in samples], ds.pad_idx)
        net_input["prev_output_tokens"] = prev
        mask_shape = prev.shape
    else:
        mask_shape = source.shape
    predict_mask = torch.zeros(mask_shape, dtype=torch.bool)
    predict_mask[rows, columns] = True
    net_input["predict_mask"] = predict_mask
    return {"id": torch.tensor([s["id"] for s in samples]), "definition": torch.tensor([s["definition"] for s in samples]),
            "net_input": net_input, "target": torch.cat([s["target"] for s in samples]), "target_row": rows,
            "nsentences": len(samples), "ntokens": int(src_lengths.sum())}


def ref_lengths(ds, index, occurrences):
    prompt_idx = int(occurrences[index, 0]) if ds.predict and ds.corruption == "bert" else index
    spans = ds.corpus.spans_of(prompt_idx)
    source = int(ds.corpus.prompts.sizes[prompt_idx])
    if ds.corruption == "sentinel":
        source -= int((spans[:, 1] - spans[:, 0] - 1).sum())
        return source, int((spans[:, 1] - spans[:, 0] + 1).sum()) + 1
    return source, None


# -- fixtures ------------------------------------------------------------------------

def write_corpus(out, prompts=60, seed=0):
    """Random prompts with 1-4 ordered, separate spans, whose ids also recur outside them (echoes)."""
    rng = np.random.default_rng(seed)
    out.mkdir(exist_ok=True)
    (out / "dict.txt").write_text("".join(f"w{i} 1\n" for i in range(VOCAB - 4)))
    writer = CorpusWriter(out, "train", VOCAB)
    for _ in range(prompts):
        length = int(rng.integers(10, 40))
        ids = rng.integers(4, 40, size=length)  # a small alphabet: echoes of the spans' ids happen
        ids[0], ids[-1] = 0, EOS
        cuts = np.sort(rng.choice(np.arange(1, length - 1), size=2 * int(rng.integers(1, 5)), replace=False))
        spans = [(int(s), int(e)) for s, e in cuts.reshape(-1, 2)]
        writer.add(ids, spans)
    writer.finalize()
    write_metadata(out, out / "dict.txt", {"train": prompts})
    return out


def dataset(corpus, **kw):
    return DefinitionClozeDataset(load_split(corpus, "train"), PAD, EOS, MASK, np.arange(4, 98), **kw)


def assert_same_batch(got, want):
    assert got.keys() == want.keys()
    for key in ("id", "definition", "target", "target_row"):
        assert torch.equal(got[key], want[key]), key
        assert got[key].dtype == want[key].dtype, key
    assert got["nsentences"] == want["nsentences"] and got["ntokens"] == want["ntokens"]
    assert got["net_input"].keys() == want["net_input"].keys()
    for key, value in want["net_input"].items():
        assert torch.equal(got["net_input"][key], value), key
        assert got["net_input"][key].dtype == value.dtype, key


MODES = [dict(corruption="bert"), dict(corruption="bert", predict=True), dict(corruption="sentinel"),
         dict(corruption="sentinel", predict=True), dict(corruption="bert", fixed_corruption=True),
         dict(corruption="bert", mask_headword_everywhere=True), dict(corruption="sentinel", mask_headword_everywhere=True),
         dict(corruption="bert", predict=True, mask_headword_everywhere=True, hidden_ids=np.array([5, 7, 11])),
         dict(corruption="bert", hidden_ids=np.array([5, 7, 11]), seed=3),
         dict(corruption="sentinel", hidden_ids=np.array([5, 7, 11]), mask_headword_everywhere=True)]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items() if k != "hidden_ids")
                         + (",hidden" if "hidden_ids" in m else ""))
def test_batches_equal_the_per_item_code(tmp_path, mode):
    ds = dataset(write_corpus(tmp_path / "c"), **mode)
    occurrences = ref_occurrences(ds)
    np.testing.assert_array_equal(ds.occurrences, occurrences)
    assert ds.occurrences.dtype == np.int64
    for index in range(len(ds)):
        assert ds.size(index) == (ref_lengths(ds, index, occurrences)[0] if ds.corruption == "bert"
                                  else ref_lengths(ds, index, occurrences))
        source, target = ref_lengths(ds, index, occurrences)
        assert ds.num_tokens(index) == (source if target is None else max(source, target))
    for epoch in (1, 2, 7):
        ds.set_epoch(epoch)
        order = ds.ordered_indices()
        batches = ds.batch_by_size(order, max_tokens=200)  # fairseq's own, over num_tokens_vec
        want_batches = data_utils.batch_by_size(order, lambda i: max(filter(None, ref_lengths(ds, i, occurrences))),
                                                max_tokens=200)
        assert [b.tolist() for b in batches] == [b.tolist() for b in want_batches] and len(batches) > 3
        for batch in batches:
            want = ref_collate(ds, [ref_item(ds, int(i), occurrences) for i in batch])
            assert_same_batch(ds.collate_indices(batch), want)
            # what torch's DataLoader does: fetch through __getitems__, then the collater
            assert_same_batch(ds.collater(ds.__getitems__(list(batch))), want)
        item, want = ds[int(order[0])], ref_item(ds, int(order[0]), occurrences)
        assert item.keys() == want.keys()
        for key, value in want.items():
            assert torch.equal(torch.as_tensor(item[key]), torch.as_tensor(value)), key


def test_corruption_is_redrawn_per_epoch_and_fixed_for_validation(tmp_path):
    corpus = write_corpus(tmp_path / "c")
    train, valid = dataset(corpus, corruption="bert"), dataset(corpus, corruption="bert", fixed_corruption=True)
    batch = np.arange(len(train))
    first, fixed = train.collate_indices(batch), valid.collate_indices(batch)
    train.set_epoch(2)
    valid.set_epoch(2)
    assert not torch.equal(first["net_input"]["src_tokens"], train.collate_indices(batch)["net_input"]["src_tokens"])
    assert torch.equal(fixed["net_input"]["src_tokens"], valid.collate_indices(batch)["net_input"]["src_tokens"])


def test_filter_by_size_keeps_what_fairseq_keeps(tmp_path):
    for corruption, limits in (("sentinel", (20, 12)), ("sentinel", (None, 9)), ("bert", 25)):
        ds = dataset(write_corpus(tmp_path / "c"), corruption=corruption)
        order = ds.ordered_indices()
        want = data_utils._filter_by_size_dynamic(order, ds.size, limits)
        got = ds.filter_indices_by_size(order, limits)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == list(want[1]) and 0 < len(got[0]) < len(order)


def test_overlapping_spans_are_refused_naming_the_file(tmp_path):
    out = write_corpus(tmp_path / "c", prompts=3)
    writer = CorpusWriter(out, "train", VOCAB)
    writer.add([0, 5, 6, 7, 2], [(1, 3)])
    writer.add([0, 5, 6, 7, 2], [(1, 3), (2, 4)])
    writer.finalize()
    with pytest.raises(CorpusFormatError, match=r"train\.spans: prompt 1 has .*overlapping.*rebuild"):
        dataset(out, corruption="bert").collate_indices([0])


@pytest.mark.parametrize("spare", [seeded_draws.SPARE_OUTPUTS, 0])
@pytest.mark.parametrize("high", [1, 2, 3, 100, 50_265, 65_537, 2 ** 32])
def test_seeded_draws_equal_randomstate_per_item(monkeypatch, spare, high):
    """A whole batch's draws rebuilt from raw outputs equal RandomState's rand then randint per
    seed; with no spare outputs most items take the per-item fallback, which must agree too."""
    monkeypatch.setattr(seeded_draws, "SPARE_OUTPUTS", spare)
    rng = np.random.default_rng(high)
    seeds = rng.integers(0, 1_000_000, 300).tolist()
    counts = rng.integers(0, 12, 300)
    uniform, integers = seeded_draws.seeded_uniform_and_integers(seeds, counts, high)
    reference = np.random.RandomState()
    expected_u, expected_i = [], []
    for seed, n in zip(seeds, counts.tolist()):
        reference.seed(seed)
        expected_u.append(reference.rand(n))
        expected_i.append(reference.randint(0, high, n))
    np.testing.assert_array_equal(uniform, np.concatenate(expected_u))
    np.testing.assert_array_equal(integers, np.concatenate(expected_i))


def test_seeded_draws_refuse_a_range_past_32_bits():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        seeded_draws.seeded_uniform_and_integers([1], np.array([1]), 2 ** 32 + 1)
