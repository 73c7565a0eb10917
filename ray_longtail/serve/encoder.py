"""The `Encoder` deployment: text -> L2-normalised vector with the run's encoder (the run's fine-tuned one when it
has one), single query texts batched across concurrent requests (`@serve.batch`); and `encoder_placement`, which
decides where query texts are embedded (this deployment, or each Recommender replica itself, with its own
`run_encoder`)."""

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from ray import serve

from ray_longtail.artifacts import open_run_store
from ray_longtail.config import Config

if TYPE_CHECKING:
    from ray_longtail.embed import HashingEncoder, TextEncoder

log = logging.getLogger(__name__)


def run_encoder(model: str, max_length: int = 128, device: str = "auto", num_threads: int = 1,
                run: str | None = None, runtime: str = "auto") -> tuple["TextEncoder | HashingEncoder", str]:
    """(encoder, label): the run's text encoder (its model, or the run's fine-tuned one, which wins over `model`) on
    `device` and `runtime`; `num_threads` torch or ONNX Runtime intra-op threads (0: the library's default)."""
    from ray_longtail.embed import make_encoder
    from ray_longtail.finetune import tuned_encoder_path

    tuned = tuned_encoder_path(open_run_store(run)) if run else None
    encoder = make_encoder(tuned or model, max_length=max_length, device=device, num_threads=num_threads or None,
                           runtime=runtime)
    return encoder, f"{model} (fine-tuned in the run)" if tuned else model


@serve.deployment(name="Encoder", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=32,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8,
                                      "upscale_delay_s": 2, "downscale_delay_s": 30})
class Encoder:
    """Text -> L2-normalised vector with the run's encoder (`embed.model`, `embed.max_length`; the transformer or
    the weight-free `hashing` encoder). Single query texts, when the Recommender sends them here (a GPU Encoder:
    `serve.query_encoder`), are batched across concurrent requests (`embed`); the texts of POST /items go
    through `embed_many`."""

    def __init__(self, model: str, max_length: int = 128, device: str = "auto", num_threads: int = 1,
                 run: str | None = None, runtime: str = "auto"):
        self.encoder, self.model = run_encoder(model, max_length, device, num_threads, run, runtime)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        return list(self.encoder.encode(list(texts)))

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(list(texts))

    def info(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.encoder.dim, "device": self.encoder.device,
                "runtime": self.encoder.runtime}


def encoder_placement(config: Config, run: str, encoder_gpus: float,
                      threads: int = 1) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(Encoder deployment args, each Recommender replica's own query-encoder args or None).

    The Encoder runs on CUDA when its replicas reserve GPUs (torch: ONNX Runtime runs on CPU here, and both execute
    the same graph), else on CPU with the run's `embed.runtime`. `serve.query_encoder` auto puts the query encoder
    in the replicas unless the Encoder has a GPU. Under `serve deploy`, GPUs set in the file's deployment options
    are not visible here: pass `args.num_gpus` (or set `serve.query_encoder=deployment`) with them."""
    on_gpu = encoder_gpus > 0
    runtime = "torch" if on_gpu and config.embed.runtime == "onnx" else config.embed.runtime
    if runtime != config.embed.runtime:
        log.warning("embed.runtime onnx runs on CPU only: the GPU Encoder runs the same graph on torch")
    encoder_args = {"model": config.embed.model, "max_length": config.embed.max_length,
                    "device": "cuda" if on_gpu else "cpu", "num_threads": threads, "run": run, "runtime": runtime}
    choice = config.serve.query_encoder
    local = choice == "replica" or (choice == "auto" and not on_gpu)
    local_args = {**encoder_args, "device": "cpu", "num_threads": 1, "runtime": config.embed.runtime} if local else None
    return encoder_args, local_args
