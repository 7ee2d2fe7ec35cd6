"""onnxruntime sessions: execution provider choice, CUDA -> CPU fallback, a cache by file.

CUDA is used when onnxruntime reports ``CUDAExecutionProvider`` (onnxruntime-gpu with a working
CUDA); a CUDA provider that fails to load falls back to the CPU with a warning, never a crash.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from backend.inference.model_meta import INPUT_NAMES, OUTPUT_NAME, ModelError, ModelInfo, parse_model_info
from backend.inference.onnx_weights import verify_weights

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class LoadedModel:
    """A ready session with the provider that actually runs it and the model's metadata."""

    session: ort.InferenceSession
    provider: str
    info: ModelInfo
    threads: int | None = None

    def run(self, inputs: dict) -> "object":
        """Feed the generator inputs (names as ``INPUT_NAMES``) -> (V, K) float32 weights.

        A CUDA session that fails while running (out of memory, driver error) is replaced by a
        CPU session, with a warning, and the inputs are run again there.
        """
        feed = {k: inputs[k] for k in INPUT_NAMES}
        try:
            return self.session.run([OUTPUT_NAME], feed)[0]
        except Exception as exc:  # noqa: BLE001 -- only a CUDA failure is retried
            if self.provider != CUDA:
                raise
            warnings.warn(f"{self.info.path}: the CUDA run failed ({exc}); running on the CPU from now on",
                          RuntimeWarning, stacklevel=2)
            self.session = _make_session(self.info.path, [CPU], self.threads)
            self.provider = CPU
            return self.session.run([OUTPUT_NAME], feed)[0]


_CACHE: dict[tuple, LoadedModel] = {}
_LOCK = threading.Lock()


def available_providers() -> list[str]:
    """onnxruntime's providers in this process (a thin wrapper, patched in tests)."""
    return list(ort.get_available_providers())


def wanted_providers(device: str) -> list[str]:
    """Providers to try, best first, for ``device`` in auto / cpu / cuda."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return [CPU]
    has_cuda = CUDA in available_providers()
    if device == "cuda" and not has_cuda:
        warnings.warn("device='cuda' asked for, but onnxruntime has no CUDAExecutionProvider "
                      "(install onnxruntime-gpu and CUDA); running on the CPU", RuntimeWarning, stacklevel=3)
    return [CUDA, CPU] if has_cuda else [CPU]


def session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # the memory pattern pre-plans one block for every intermediate of a run; without it the arena reuses
    # freed blocks, which halves what an ensemble (two generators in one graph) holds at its peak
    # (docs/runtime.md), at about the same speed
    opts.enable_mem_pattern = False
    # idle worker threads sleep instead of spinning: the same numbers, and on a machine whose cores are
    # busy with other work (Blender's own threads, a training job) the network runs about 20 % faster
    # (docs/runtime.md)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _make_session(path: str, providers: list[str], threads: int | None) -> ort.InferenceSession:
    return ort.InferenceSession(path, sess_options=session_options(threads), providers=providers)


def open_session(path: str | Path, device: str = "auto", threads: int | None = None) -> LoadedModel:
    """Create a session for ``path`` (no cache); checks its metadata, its weights against the
    metadata's hash (backend.inference.onnx_weights) and its inputs.

    A CUDA session that cannot be created (or silently comes up without CUDA) gives a warning and
    the CPU session. Raises ModelError for a missing, unreadable or mismatched model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    providers = wanted_providers(device)
    sess = None
    if providers[0] == CUDA:
        try:
            sess = _make_session(str(path), providers, threads)
            if sess.get_providers()[0] != CUDA:
                warnings.warn(f"{path}: the CUDA execution provider did not load; running on the CPU",
                              RuntimeWarning, stacklevel=2)
        except Exception as exc:  # noqa: BLE001 -- any CUDA failure falls back to the CPU
            if "INVALID_PROTOBUF" in str(exc) or "Protobuf parsing failed" in str(exc):
                raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
            warnings.warn(f"{path}: the CUDA execution provider failed ({exc}); running on the CPU",
                          RuntimeWarning, stacklevel=2)
            log.warning("CUDA session failed for %s: %s", path, exc)
            sess = None
    if sess is None:
        try:
            sess = _make_session(str(path), [CPU], threads)
        except Exception as exc:  # noqa: BLE001 -- onnxruntime raises several exception types
            raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
    info = parse_model_info(sess.get_modelmeta().custom_metadata_map, path)
    verify_weights(path, info)
    names = tuple(i.name for i in sess.get_inputs())
    if sorted(names) != sorted(INPUT_NAMES) or OUTPUT_NAME not in [o.name for o in sess.get_outputs()]:
        raise ModelError(f"{path}: the model has inputs {list(names)}, expected {list(INPUT_NAMES)} "
                         f"and an output {OUTPUT_NAME!r}")
    return LoadedModel(session=sess, provider=sess.get_providers()[0], info=info, threads=threads)


def get_session(path: str | Path, device: str = "auto", threads: int | None = None) -> LoadedModel:
    """Cached :func:`open_session`: one session per (file, size, mtime, device, threads)."""
    path = Path(path).resolve()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    key = (str(path), st.st_size, st.st_mtime_ns, device, threads)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            hit = open_session(path, device, threads)
            # a changed file replaces its older sessions
            for k in [k for k in _CACHE if k[0] == key[0] and k[1:3] != key[1:3]]:
                del _CACHE[k]
            _CACHE[key] = hit
        return hit


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def default_threads() -> int | None:
    """AUTOSKIN_THREADS from the environment, else None (onnxruntime's default)."""
    val = os.environ.get("AUTOSKIN_THREADS")
    return int(val) if val else None
