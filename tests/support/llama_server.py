"""llama.cpp's own server, the runner Ollama drives, on a tiny random-weight llama model written here.

``write_model`` writes a llama-architecture GGUF with the ``gguf`` package (512 tokens, 2 layers of 64: 0.6 MB, a
request in a few milliseconds on one core); ``python -m tests.support.llama_server --model M --port P …`` serves it with
PyPI's prebuilt xllamacpp (llama.cpp b11549, CPU), its log lines on stderr as llama-server writes them (Ollama starts
it with ``--log-verbosity 4``: llm/llama_server.go appendLlamaServerLogArgs). Prompts are sent as token ids.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

N_VOCAB, N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX_TRAIN = 512, 64, 2, 4, 128, 4096
# the bytes a token of saved state takes in the RAM prompt cache (llama_state_seq_get_size: its K and V in every layer)
KV_BYTES_PER_TOKEN = N_LAYER * 2 * N_EMBD * 2 + 12  # f16 K and V, and the cell's own few bytes: the server logs 0.062 MiB for 123 tokens, 0.451 MiB for 903


@contextmanager
def serving(model: Path, *flags: str) -> Iterator:
    """This module's server of ``model`` on a free port, once its ``/health`` answers 200: llama-server answers 503
    ("Loading model") until the model is loaded (tools/server/server.cpp), which a busy machine makes long."""
    import httpx

    from tests.support.harness import PYTHON, free_port, run_server

    port = free_port()
    args = [PYTHON, "-m", "tests.support.llama_server", "--model", str(model), "--port", str(port), *flags]
    with run_server(args, port, "/health", timeout=60, ready_check=lambda url: httpx.get(url, timeout=1.0).raise_for_status()) as server:
        yield server


def write_model(path: Path) -> Path:
    """A llama model with random weights and a byte-level SPM vocabulary: 3 control tokens, 256 bytes, 253 pieces."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{byte:02X}>" for byte in range(256))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL, *[gguf.TokenType.BYTE] * 256]
    pieces = ["\u2581", *(f"\u2581{c}" for c in "abcdefghijklmnopqrstuvwxyz"), *"abcdefghijklmnopqrstuvwxyz"]
    pieces += [f"w{i}" for i in range(N_VOCAB - len(tokens) - len(pieces))]
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(k) for k in range(len(pieces))]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)

    def random(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    random("token_embd.weight", len(tokens), N_EMBD)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    random("output.weight", len(tokens), N_EMBD)
    for layer in range(N_LAYER):
        writer.add_tensor(f"blk.{layer}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            random(f"blk.{layer}.{part}.weight", N_EMBD, N_EMBD)
        writer.add_tensor(f"blk.{layer}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        random(f"blk.{layer}.ffn_gate.weight", N_FF, N_EMBD)
        random(f"blk.{layer}.ffn_up.weight", N_FF, N_EMBD)
        random(f"blk.{layer}.ffn_down.weight", N_EMBD, N_FF)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="llama.cpp's server (xllamacpp) on a model, as Ollama starts it")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--np", type=int, default=1, help="slots (-np: Ollama passes OLLAMA_NUM_PARALLEL)")
    parser.add_argument("--ctx", type=int, default=4096, help="context per slot (Ollama passes -c num_ctx x slots)")
    parser.add_argument("--cache-ram-mib", type=int, default=8192, help="--cache-ram (Ollama leaves the default)")
    args = parser.parse_args()
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_parallel = args.np
    params.n_ctx = args.ctx * args.np
    params.cache_ram_mib = args.cache_ram_mib
    params.cache_prompt = True
    params.verbosity = 4  # --log-verbosity 4, as llm/llama_server.go starts it
    params.port = args.port
    params.hostnames = ["127.0.0.1"]
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.warmup = False
    server = xllamacpp.Server(params)  # serves on its own threads until the process ends
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"llama.cpp server on {server.listening_address}", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
