"""Serving: ONNX export, ONNX Runtime inference, the gallery index (FAISS or Milvus) and the :class:`Retriever` API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Retriever", "Hit", "OnnxEngine"]

if TYPE_CHECKING:
    from serving.engine import OnnxEngine
    from serving.retriever import Hit, Retriever


def __getattr__(name: str) -> Any:
    # lazy: `python -m serving.export` should not import FAISS, and `import serving` stays cheap
    if name in ("Retriever", "Hit"):
        from serving import retriever

        return getattr(retriever, name)
    if name == "OnnxEngine":
        from serving.engine import OnnxEngine

        return OnnxEngine
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
