"""Exact prompt lengths with tokenizers built here (no downloads), and seeded request specs."""

from __future__ import annotations

import json
import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from perfci.config import Distribution, Load, Workload
from perfci.errors import ConfigError
from perfci.measure.loadgen.prompts import Prompts, request_specs

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "café", "naïve", "日本語", "données",
         "émoji", "🙂", "tokens", "latency", "42"]  # fmt: skip


def corpus() -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(20)) + rng.choice([".", "!", ", and", "?"]) for _ in range(300)]


@pytest.fixture(scope="module")
def byte_level_bpe() -> Tokenizer:
    """GPT-2/Llama-3 style: byte-level BPE, whose decode -> encode is not length-stable."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus(), trainer)
    return tok


@pytest.fixture(scope="module")
def metaspace_bpe() -> Tokenizer:
    """SentencePiece/Llama-2 style: `▁` marks word starts."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    return tok


def word_level() -> Tokenizer:
    """perfci's tiny model: vocabulary w3 … w99 after three special tokens, whitespace pre-tokenizer."""
    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, 100)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


@pytest.mark.parametrize("kind", ["byte_level_bpe", "metaspace_bpe"])
def test_bpe_prompts_have_exact_length(kind, request, tmp_path):
    tok: Tokenizer = request.getfixturevalue(kind)
    tok.save(str(tmp_path / "tokenizer.json"))
    prompts = Prompts.from_tokenizer_file(tmp_path / "tokenizer.json")
    special = {"<s>", "</s>", "<unk>"}
    rng = random.Random(7)
    for n in [*range(1, 40), 64, 257, 1024, 4000]:
        text = prompts.make(n, rng)
        encoded = tok.encode(text, add_special_tokens=False)
        assert len(encoded.ids) == n, (n, text)
        assert not special & set(encoded.tokens)
    # Naive decode of random ids is not exact: the adjustment is what makes the test above pass.
    ids = random.Random(1).choices(range(tok.get_vocab_size()), k=300)
    assert len(tok.encode(tok.decode(ids), add_special_tokens=False).ids) != 300


def test_same_rng_state_gives_same_prompt(byte_level_bpe, tmp_path):
    byte_level_bpe.save(str(tmp_path / "t.json"))
    prompts = Prompts.from_tokenizer_file(tmp_path / "t.json")
    assert prompts.make(50, random.Random(3)) == prompts.make(50, random.Random(3))
    assert prompts.make(50, random.Random(3)) != prompts.make(50, random.Random(4))


def test_model_dir_uses_its_tokenizer_json(tmp_path):
    word_level().save(str(tmp_path / "tokenizer.json"))
    prompts = Prompts.from_model_dir(tmp_path)
    assert prompts.source == str(tmp_path / "tokenizer.json")
    text = prompts.make(33, random.Random(0))
    assert len(word_level().encode(text, add_special_tokens=False).ids) == 33
    assert "[UNK]" not in word_level().encode(text).tokens


def test_model_dir_without_tokenizer_falls_back_to_words(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    prompts = Prompts.from_model_dir(tmp_path)
    assert prompts.source == "words"


def test_words_are_one_token_each_for_the_tiny_model():
    text = Prompts.words().make(500, random.Random(0))
    assert len(text.split()) == 500
    encoded = word_level().encode(text, add_special_tokens=False)
    assert len(encoded.ids) == 500
    assert all(w.startswith("w") and int(w[1:]) >= 3 for w in text.split())


def test_bad_sources_and_lengths(tmp_path):
    with pytest.raises(ConfigError, match="not a model directory"):
        Prompts.from_model_dir(tmp_path / "missing")
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(ConfigError, match=r"tokenizer.json: cannot load tokenizer"):
        Prompts.from_model_dir(tmp_path)
    with pytest.raises(ConfigError, match=">= 1 token"):
        Prompts.words().make(0, random.Random(0))


def workload(prompt_tokens, output_tokens, seed=0) -> Workload:
    return Workload(name="w", prompt_tokens=prompt_tokens, output_tokens=output_tokens, seed=seed,
                    load=Load(synchronous=True))  # fmt: skip


def test_fixed_request_specs():
    specs = request_specs(workload(16, 8), 5, Prompts.words())
    assert len(specs) == 5
    assert all(s.prompt_tokens == 16 and s.output_tokens == 8 and len(s.prompt.split()) == 16 for s in specs)
    assert len({s.prompt for s in specs}) == 5  # no shared prompts for a prefix cache to exploit


def test_specs_are_seeded():
    wl = workload(Distribution(dist="uniform", min=4, max=40), Distribution(dist="normal", mean=20, std=5))
    assert list(request_specs(wl, 20, Prompts.words())) == list(request_specs(wl, 20, Prompts.words()))
    other = request_specs(wl.model_copy(update={"seed": 1}), 20, Prompts.words())
    assert list(other) != list(request_specs(wl, 20, Prompts.words()))


def test_specs_are_lazy_and_index_stable():
    """A duration-bounded point gets a large budget; only the specs it reads are built, and spec i is the
    same whether or not the ones before it were built."""
    wl = workload(Distribution(dist="uniform", min=4, max=40), 8)
    big = request_specs(wl, 100_000, Prompts.words())
    assert len(big) == 100_000 and big[99_999].prompt_tokens >= 4
    assert len(big._built) == 1
    assert big[7] == list(request_specs(wl, 10, Prompts.words()))[7]
    assert big[-1] is big[99_999] and big[2:4] == [big[2], big[3]]
    with pytest.raises(IndexError):
        big[100_000]


def test_token_counts_do_not_depend_on_the_tokenizer(byte_level_bpe, tmp_path):
    byte_level_bpe.save(str(tmp_path / "t.json"))
    wl = workload(Distribution(dist="uniform", min=4, max=40), Distribution(dist="lognormal", mean=30, std=10))
    by_words = request_specs(wl, 10, Prompts.words())
    by_bpe = request_specs(wl, 10, Prompts.from_tokenizer_file(tmp_path / "t.json"))
    counts = [[(s.prompt_tokens, s.output_tokens) for s in specs] for specs in (by_words, by_bpe)]
    assert counts[0] == counts[1]


@pytest.mark.parametrize(
    ("dist", "mean", "lo", "hi"),
    [
        (Distribution(dist="uniform", min=10, max=20), 15, 10, 20),
        (Distribution(dist="normal", mean=50, std=10), 50, 1, None),
        (Distribution(dist="lognormal", mean=50, std=20), 50, 1, None),
        (Distribution(dist="normal", mean=2, std=10), None, 1, None),  # mostly below 1: clamped to 1
        (Distribution(dist="normal", mean=100, std=50, min=80, max=120), None, 80, 120),
    ],
)
def test_distributions(dist, mean, lo, hi):
    specs = request_specs(workload(dist, 1), 2000, Prompts.words())
    counts = [s.prompt_tokens for s in specs]
    assert min(counts) >= lo and (hi is None or max(counts) <= hi)
    assert all(len(s.prompt.split()) == s.prompt_tokens for s in specs)
    if mean is not None:
        assert sum(counts) / len(counts) == pytest.approx(mean, rel=0.05)
    if dist.min is not None:
        assert min(counts) == dist.min and max(counts) == dist.max  # both ends are reachable
