"""A tiny GGUF model made in the test: nothing is downloaded, llama.cpp loads it.

A llama-architecture model with random weights (fixed seed, so the file and its digest are the
same on every run), 2 layers, 64 wide, 4 heads, and a byte-level vocabulary of 259 tokens
(`<unk>`, `<s>`, `</s>`, then `<0x00>`..`<0xFF>` as BYTE tokens, tokenizer model `llama`, so any
text tokenizes through the byte fallback), plus a minimal chat template that llama.cpp's Jinja
engine renders. About 460 KB, written with PyPI's `gguf` (GGUFWriter). What it generates is
gibberish: it proves the wiring, not the quality.

`python -m kindcluster.tinymodel OUT.gguf` writes one.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

ARCH = "llama"
NAME = "tiny-random-llama"
N_LAYERS = 2
N_EMBD = 64
N_HEAD = 4
N_FF = 128
N_CTX = 256
SEED = 13
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = [("<unk>", 2), ("<s>", 3), ("</s>", 3)]  # gguf TokenType: UNKNOWN=2, CONTROL=3
BYTE_TYPE = 6


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = [t for t, _ in SPECIAL] + [f"<0x{b:02X}>" for b in range(256)]
    types = [k for _, k in SPECIAL] + [BYTE_TYPE] * 256
    return tokens, [0.0] * len(tokens), types


def tensors(n_vocab: int) -> dict[str, tuple[int, ...]]:
    """numpy shapes (ggml's dimensions reversed) of a llama model's tensors."""
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (n_vocab, N_EMBD),
        "output_norm.weight": (N_EMBD,),
        "output.weight": (n_vocab, N_EMBD),
    }
    for i in range(N_LAYERS):
        b = f"blk.{i}."
        shapes.update({
            b + "attn_norm.weight": (N_EMBD,),
            b + "attn_q.weight": (N_EMBD, N_EMBD),
            b + "attn_k.weight": (N_EMBD, N_EMBD),
            b + "attn_v.weight": (N_EMBD, N_EMBD),
            b + "attn_output.weight": (N_EMBD, N_EMBD),
            b + "ffn_norm.weight": (N_EMBD,),
            b + "ffn_gate.weight": (N_FF, N_EMBD),
            b + "ffn_up.weight": (N_FF, N_EMBD),
            b + "ffn_down.weight": (N_EMBD, N_FF),
        })
    return shapes


def write(path: Path) -> Path:
    """Write the model to `path` (same bytes every time) and return it."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(SEED)
    tokens, scores, types = vocabulary()
    w = gguf.GGUFWriter(str(path), ARCH)
    w.add_name(NAME)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYERS)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    for name, shape in tensors(len(tokens)).items():
        if name.endswith("norm.weight"):
            data = np.ones(shape, dtype=np.float32)
        else:
            data = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def parameters() -> int:
    return sum(math.prod(s) for s in tensors(len(vocabulary()[0])).values())


if __name__ == "__main__":
    out = write(Path(sys.argv[1] if len(sys.argv) > 1 else f"{NAME}.gguf"))
    print(f"{out}: {out.stat().st_size} bytes, {parameters()} parameters")
