"""Pretrained weights of timm / torchvision: in the local cache, or reachable, or a one-line error at once.

Without this, a machine with no route to the weights' host (air-gapped CI, a lab network) spent a minute in
huggingface_hub's five retries, printing each, before the same error. The cache is looked at first; a weights
file that is not there is fetched only if its host answers a TCP connect within a few seconds (behind an
HTTP proxy the probe is skipped: the proxy, not a direct connection, is the route).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from cidpipe.errors import ModelError

CONNECT_TIMEOUT_S = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def offline() -> bool:
    """CIDPIPE_OFFLINE=1 (or Hugging Face's HF_HUB_OFFLINE=1): never reach the network for weights."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("CIDPIPE_OFFLINE", "HF_HUB_OFFLINE")
    )


def not_cached(arch: str, where: str, detail: str = "") -> ModelError:
    reason = f" ({detail})" if detail else ""
    return ModelError(
        f"pretrained weights for {arch} are not in the local cache ({where}) and cannot be "
        f"downloaded{reason}; "
        "run once with network access to populate the cache, or pass model.weights: <state dict file>"
    )


def torch_hub_file(url: str) -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def unreachable(url: str) -> str | None:
    """Why ``url``'s host cannot be connected to (None when it can, or when a proxy is the route)."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        return f"{host}:{port} unreachable: {err.strerror or type(err).__name__}"
    return None


def require_fetchable(arch: str, *, cached: bool, where: str, url: str) -> None:
    """Return when the weights are cached or their host answers; else the not-cached ModelError, now."""
    if cached:
        return
    if offline():
        raise not_cached(arch, f"{where}, offline mode")
    problem = unreachable(url)
    if problem:
        raise not_cached(arch, where, f"{problem}; CIDPIPE_OFFLINE=1 skips the network")


def timm_cached(cfg) -> tuple[bool, str, str]:
    """(in the cache, where the cache is, the download URL) of a timm pretrained config."""
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo_id = cfg.hf_hub_id.split("@")[0]
        names = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
        cached = any(isinstance(try_to_load_from_cache(repo_id, n), str) for n in names)
        return cached, str(constants.HF_HUB_CACHE), constants.ENDPOINT
    if cfg.url:
        return torch_hub_file(cfg.url).is_file(), str(torch_hub_file(cfg.url).parent), cfg.url
    return Path(cfg.file).is_file(), str(cfg.file), ""
