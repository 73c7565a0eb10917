"""The encoder's forward graph and its two runtimes (imports torch: load it only where an encoder is built).

`MeanPooled` wraps a Hugging Face transformer as `(input_ids, attention_mask) -> (n, dim)` mean-pooled,
L2-normalised float32 vectors. torch runs it as is; `onnx_session` exports that same module (fp32, dynamic batch
and sequence axes) to an in-memory ONNX graph and opens an ONNX Runtime CPU session on it. On CPU the session is
~3x faster than eager torch for one short text (request-time search) and 1.1-1.4x for batches of 64, with vectors
equal to ~1e-6 (bench/RESULTS.md): eager torch pays per-operator dispatch and a slower small-matrix GEMM.
`tokenize` is the tokenizer call of both runtimes and of fine-tuning, without reading what truncation drops.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask")


class MeanPooled(torch.nn.Module):
    """`forward(input_ids (n, s) int64, attention_mask (n, s) int64) -> (n, dim) float32`, unit L2 norm."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)


def export_onnx(module: MeanPooled) -> bytes:
    """The module's fp32 graph as ONNX bytes (TorchScript exporter; a few seconds for MiniLM-L6)."""
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES} | {"vectors": {0: "batch"}}
    buffer = io.BytesIO()
    if next(module.parameters()).dtype != torch.float32 or next(module.parameters()).device.type != "cpu":
        raise ValueError("export_onnx exports a CPU float32 module")
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # notes on shape-dependent Python branches
        # BERT-style position/type-id lookups index with non-negative indices only (vectors checked in the tests)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
        torch.onnx.export(module, (sample, sample), buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=list(INPUT_NAMES), output_names=["vectors"], dynamic_axes=axes)
    return buffer.getvalue()


def onnx_session(module: MeanPooled, num_threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU `InferenceSession` over `export_onnx(module)`; `num_threads` intra-op threads (None:
    ONNX Runtime's default, one per physical core). `session.run(None, {"input_ids", "attention_mask"})[0]` gives
    the vectors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    options.log_severity_level = 3
    session = ort.InferenceSession(export_onnx(module), options, providers=["CPUExecutionProvider"])
    log.info("encoder on ONNX Runtime %s (%s intra-op threads)", ort.__version__, num_threads or "default")
    return session


CLIP_CHARS_PER_TOKEN = 16


def clip_at_whitespace(text: str, limit: int) -> str:
    """`text` cut before its last whitespace character within the first `limit` characters (unchanged when it is
    shorter, or has no whitespace there)."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(space, 0, limit) for space in (" ", "\n", "\t"))
    return text[:cut] if cut > 0 else text


def tokenize(tokenizer, texts: list[str], max_length: int, return_tensors: str):
    """`tokenizer(texts, padding=True, truncation=True, max_length=max_length)` without reading what truncation
    drops: a text longer than CLIP_CHARS_PER_TOKEN characters per token is cut before a whitespace character first.
    The tokens before such a cut do not depend on what follows it (WordPiece and SentencePiece split at
    whitespace; byte-level BPE attaches a space to the word after it), so a cut text that still fills
    `max_length` tokens gives the same ids; one that does not is tokenized whole. A fast tokenizer reads all of a
    text before it truncates: 23 % of embedding time for 22,000-character descriptions (bench/RESULTS.md)."""
    clipped = [clip_at_whitespace(text, CLIP_CHARS_PER_TOKEN * max_length) for text in texts]
    encoded = tokenizer(clipped, padding=True, truncation=True, max_length=max_length, return_tensors=return_tensors)
    if all(cut is whole for cut, whole in zip(clipped, texts, strict=True)):
        return encoded
    lengths = encoded["attention_mask"].sum(1).tolist()
    short = [i for i, (cut, whole) in enumerate(zip(clipped, texts, strict=True)) if cut is not whole
             and lengths[i] < max_length]
    if not short:
        return encoded
    for i in short:
        clipped[i] = texts[i]
    return tokenizer(clipped, padding=True, truncation=True, max_length=max_length, return_tensors=return_tensors)
