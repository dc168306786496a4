"""perfci's tiny model: a Llama-architecture model directory with config and tokenizer but no weights.

Engines that can make up weights (`--load-format dummy`) serve it, so smoke suites download nothing. Its
WordLevel tokenizer makes token counts exact and obvious: the vocabulary is `<unk> <s> </s> w3 … wN`, text
is split on whitespace, so N words are N tokens (a word outside the vocabulary is one `<unk>`), no BOS is
added, and the chat template adds no tokens of its own. The outputs of random weights are random tokens;
ask for `ignore_eos` to get the requested length.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from perfci.config import TINY_MODEL_MAX_LEN
from perfci.errors import ConfigError
from perfci.measure.envs import cache_dir

NAME = "tiny-llama"
SPECIAL = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2; words start at id 3
# Message contents joined by single spaces: a chat of N words is N prompt tokens, as a completion is.
CHAT_TEMPLATE = "{% for message in messages %}{% if not loop.first %} {% endif %}{{ message['content'] }}{% endfor %}"


def tiny_model_files(*, vocab_size: int = 1024, hidden: int = 128, layers: int = 2, heads: int = 4,
                     kv_heads: int = 2, max_position: int = TINY_MODEL_MAX_LEN) -> dict[str, str]:  # fmt: skip
    """The model directory's files, name -> text. The default vocabulary covers the words perfci's prompt
    builder draws (w3 … w1002)."""
    if vocab_size <= len(SPECIAL):
        raise ConfigError(f"tiny model: vocab_size must exceed {len(SPECIAL)}, got {vocab_size}")
    if min(hidden, layers, heads, kv_heads, max_position) < 1 or hidden % heads or heads % kv_heads:
        raise ConfigError(
            f"tiny model: need hidden divisible by heads and heads by kv_heads, all positive; got hidden={hidden} "
            f"heads={heads} kv_heads={kv_heads} layers={layers} max_position={max_position}"
        )
    bos, eos = 1, 2
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_position,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,  # as small Llamas do; one matrix fewer for dummy weights
        "torch_dtype": "bfloat16",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "use_cache": True,
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL[bos],
        "eos_token": SPECIAL[eos],
        "unk_token": SPECIAL[0],
        "pad_token": SPECIAL[eos],
        "model_max_length": max_position,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    special_tokens_map = {k: tokenizer_config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    return {
        "config.json": _json(config),
        "generation_config.json": _json({"bos_token_id": bos, "eos_token_id": eos}),
        "tokenizer.json": _tokenizer(vocab_size).to_str(pretty=True) + "\n",
        "tokenizer_config.json": _json(tokenizer_config),
        "special_tokens_map.json": _json(special_tokens_map),
    }


def write_tiny_model(path: Path, **shape: int) -> Path:
    """Write the tiny model's files into `path` (created if needed); `shape` as for `tiny_model_files`."""
    files = tiny_model_files(**shape)
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def ensure_tiny_model(cache: Path | None = None) -> Path:
    """The default tiny model under `<cache>/models/tiny-llama-<content hash>`, written once. Written to a
    temporary directory and renamed, so a reader never sees a half-written one."""
    files = tiny_model_files()
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    models_dir = (cache or cache_dir()) / "models"
    final = models_dir / f"{NAME}-{digest}"
    if final.is_dir():
        return final
    tmp = write_tiny_model(models_dir / f"{final.name}.tmp-{os.getpid()}")
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():  # lost a race against another writer: theirs is identical
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tokenizer(vocab_size: int) -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(SPECIAL)} | {f"w{i}": i for i in range(len(SPECIAL), vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece's decoder joins tokens with spaces (none of ours carries its "##" continuation prefix).
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in SPECIAL])
    return tokenizer


def _json(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"
