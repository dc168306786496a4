"""The tiny model directory: exact token counts, decoding, a config engines accept, written once."""

import json
import random

import jinja2
import pytest
from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

from perfci.errors import ConfigError
from perfci.measure.loadgen.prompts import WORDS, Prompts
from perfci.measure.tinymodel import ensure_tiny_model, write_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def test_n_words_are_n_tokens_and_decode_back(tokenizer):
    rng = random.Random(1)
    for n in (1, 7, 64, 1000):
        words = [f"w{rng.choice(WORDS)}" for _ in range(n)]
        encoding = tokenizer.encode("  ".join(words) + "\n")  # any whitespace separates
        assert len(encoding.ids) == n
        assert encoding.ids == [int(w[1:]) for w in words]  # word wK has id K: no BOS, no <unk>
        assert tokenizer.decode(encoding.ids) == " ".join(words)


def test_specials_and_unknown_words(tokenizer):
    assert tokenizer.encode("<s> w3 hello, w99999 </s>").ids == [1, 3, 0, 0, 2]
    assert tokenizer.decode([3, 2, 4]) == "w3 w4"  # special tokens are skipped
    assert {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special} == {0, 1, 2}


def test_streaming_decode_adds_the_spaces(tokenizer):
    # How engines detokenize while streaming: each new token's text after the ones before it.
    stream = DecodeStream(skip_special_tokens=True)
    assert [stream.step(tokenizer, i) for i in (5, 6, 2, 7)] == ["w5", " w6", None, " w7"]


def test_config_is_a_consistent_llama(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert config["head_dim"] * config["num_attention_heads"] == config["hidden_size"]
    assert config["num_attention_heads"] % config["num_key_value_heads"] == 0
    assert config["torch_dtype"] == "bfloat16"
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) == config["vocab_size"]
    assert vocab[tokenizer_config["bos_token"]] == config["bos_token_id"]
    assert vocab[tokenizer_config["eos_token"]] == config["eos_token_id"]
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"]


def test_chat_template_adds_no_tokens(model_dir, tokenizer):
    template = json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]
    messages = [{"role": "system", "content": "w3 w4"}, {"role": "user", "content": "w5 w6 w7"}]
    text = jinja2.Template(template).render(messages=messages, add_generation_prompt=True)
    assert tokenizer.encode(text).ids == [3, 4, 5, 6, 7]


def test_prompt_builder_gets_exact_lengths_from_it(model_dir, tokenizer):
    prompts = Prompts.from_model_dir(model_dir)
    for n in (1, 16, 300):
        assert len(tokenizer.encode(prompts.make(n, random.Random(n))).ids) == n


def test_shape_is_configurable_and_checked(tmp_path):
    path = write_tiny_model(tmp_path / "m", vocab_size=64, hidden=64, layers=1, heads=8, kv_heads=8,
                            max_position=512)  # fmt: skip
    config = json.loads((path / "config.json").read_text())
    assert (config["vocab_size"], config["head_dim"], config["num_hidden_layers"]) == (64, 8, 1)
    assert Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab_size() == 64
    for bad in ({"hidden": 100, "heads": 3}, {"heads": 4, "kv_heads": 3}, {"vocab_size": 3}, {"layers": 0}):
        with pytest.raises(ConfigError, match="tiny model"):
            write_tiny_model(tmp_path / "bad", **bad)


def test_ensure_writes_once_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFCI_CACHE", str(tmp_path))
    path = ensure_tiny_model()
    assert path.parent == tmp_path / "models" and path.name.startswith("tiny-llama-")
    stamps = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    assert ensure_tiny_model(tmp_path) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == stamps
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [path.name]  # no temporary left
    again = write_tiny_model(tmp_path / "again")
    assert all((path / p.name).read_text() == p.read_text() for p in again.iterdir())  # deterministic
