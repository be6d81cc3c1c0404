"""The Python serving API: load an index and its model once, then search, embed and parse images.

>>> from serving import Retriever
>>> r = Retriever.load("exports/index")            # model path taken from the index manifest
>>> hits = r.search("query.jpg", k=10)              # [Hit(rank=1, score=0.93, path=..., pid=..., ...)]
>>> labels = r.parse("query.jpg"); r.part_names     # (H, W) part label map at the image's own size
>>> hits, labels = r.query("query.jpg", k=10)       # both from one forward pass

A :class:`Retriever` is safe to share between threads: the ONNX Runtime session, the CPU FAISS index and the
Milvus client are thread-safe for inference/search, and nothing else is mutated after loading. The index's
backend (FAISS in process, or a Milvus collection) is read from its manifest (:mod:`serving.backends`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from serving.engine import ImageInput, OnnxEngine, to_pil
from serving.index import DEFAULT_MODEL, GalleryIndex
from serving.manifest import index_precision

__all__ = ["Hit", "Retriever", "upsample_labels"]


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity (inner product of normalized embeddings)."""

    rank: int
    score: float
    path: str
    pid: int | None
    camera: int | None
    item_id: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def upsample_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest (pixel-centre) upsampling of an (h, w) label map to (height, width)."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def _label_map(part_probs: np.ndarray, image: Image.Image) -> np.ndarray:
    """Argmax of one image's (K, h, w) ``part_probs``, upsampled to the image's size."""
    return upsample_labels(part_probs.argmax(axis=0).astype(np.int64), image.height, image.width)


class Retriever:
    """Person retrieval over a gallery index with an exported SCWM model."""

    def __init__(self, engine: OnnxEngine, index: GalleryIndex) -> None:
        index.check_model(engine)
        self.engine = engine
        self.index = index

    @classmethod
    def load(cls, index_dir: str | os.PathLike[str], model_path: str | os.PathLike[str] | None = None,
             providers: Sequence[str] | None = None, intra_op_threads: int | None = None,
             use_gpu: bool | None = None, *, precision: str | None = None) -> Retriever:
        """Load and verify ``index_dir`` and its model (``model_path`` overrides the manifest's; it must
        be the same model, checked by fingerprint). An index is searched at the precision it was built with (the
        int8-static file has its own fingerprint): without ``precision`` and ``$SCWM_PRECISION``, the one its
        manifest records; else ``auto|fp32|int8`` as :class:`OnnxEngine`, refused (``ModelMismatchError``) when
        it disagrees with the index (:func:`serving.manifest.index_precision`) or serves another model."""
        index = GalleryIndex.load(index_dir, use_gpu=use_gpu)
        path = Path(model_path or index.manifest.get("model_path") or DEFAULT_MODEL)
        if model_path is None and not path.is_file():
            raise ValueError(f"the model recorded in {Path(index_dir) / 'manifest.json'} ({path}) does not "
                             "exist; pass model_path=")
        precision = index_precision(index.manifest, precision, index_dir)
        return cls(OnnxEngine(path, providers=providers, intra_op_threads=intra_op_threads, precision=precision), index)

    @property
    def part_names(self) -> list[str]:
        """Names of the part labels returned by :meth:`parse` (index = label; background last)."""
        return list(self.engine.part_names)

    @property
    def gallery_items(self) -> Sequence[Mapping[str, Any]]:
        """Metadata of the gallery images by item id: ``item_id``, ``path``, ``pid``, ``camera``, ``added``
        (read-only)."""
        return self.index.items

    def info(self) -> dict[str, Any]:
        """Facts about the model and the gallery (JSON-friendly): ``model`` (path, fingerprint, embedding size,
        providers, ``spec`` as :meth:`ModelSpec.to_dict <scwm.models.checkpoint.ModelSpec.to_dict>`, the export
        ``metadata``) and ``index`` (the manifest plus count, directory and whether the search runs on a GPU)."""
        eng, idx = self.engine, self.index
        return {
            "model": {"path": str(eng.model_path), "precision": eng.served_precision, "fingerprint": eng.fingerprint,
                      "embedding_size": eng.embedding_size, "providers": list(eng.providers),
                      "spec": eng.spec.to_dict(), "metadata": dict(eng.metadata)},
            "index": {**idx.manifest, "count": idx.count, "on_gpu": idx.on_gpu,
                      "directory": None if idx.directory is None else str(idx.directory)},
        }

    def __len__(self) -> int:
        return self.index.count

    def embed(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Global embeddings: (D,) for one image, (N, D) for a list."""
        single = not isinstance(images, (list, tuple))
        feats = self.engine.embed(images)["global_feat"]
        return feats[0] if single else feats

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Hit]:
        hits = []
        for score, idx in zip(scores.tolist(), ids.tolist(), strict=True):
            if idx < 0:
                continue
            it = self.index.items[idx]
            hits.append(Hit(len(hits) + 1, float(score), it["path"], it.get("pid"), it.get("camera"), int(idx)))
        return hits

    def search_embeddings(self, embeddings: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top-``k`` hits for each row of (N, D) query embeddings."""
        scores, ids = self.index.search(embeddings, k)
        return [self._hits(s, i) for s, i in zip(scores, ids, strict=True)]

    def search(self, image: ImageInput, k: int = 10) -> list[Hit]:
        """Top-``k`` gallery hits for one query image, best first."""
        if isinstance(image, (list, tuple)):
            raise TypeError("search() takes one image; use search_batch() for a list")
        return self.search_embeddings(self.engine.embed(image)["global_feat"], k)[0]

    def search_batch(self, images: Sequence[ImageInput], k: int = 10) -> list[list[Hit]]:
        """Top-``k`` hits for each query image."""
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"search_batch() takes a list of images, got {type(images).__name__}")
        if not images:
            return []
        return self.search_embeddings(self.engine.embed(list(images))["global_feat"], k)

    def query(self, image: ImageInput, k: int = 10) -> tuple[list[Hit], np.ndarray]:
        """Top-``k`` gallery hits and the query's part label map (as :meth:`parse`), from one forward pass."""
        if isinstance(image, (list, tuple)):
            raise TypeError("query() takes one image")
        pil = to_pil(image)
        out = self.engine.embed(pil)
        return self.search_embeddings(out["global_feat"], k)[0], _label_map(out["part_probs"][0], pil)

    def parse(self, image: ImageInput) -> np.ndarray:
        """Part label map (H, W) int64 at the input image's size: argmax of ``part_probs`` upsampled with
        nearest; label ``i`` is ``part_names[i]``, the background is the last index."""
        return self.parse_batch([image])[0]

    def parse_batch(self, images: Sequence[ImageInput]) -> list[np.ndarray]:
        """Part label maps of several images (each at its own size, as :meth:`parse`), in batches."""
        pils = [to_pil(im) for im in images]
        if not pils:
            return []
        probs = self.engine.embed(pils)["part_probs"]
        return [_label_map(p, im) for p, im in zip(probs, pils, strict=True)]

    def __repr__(self) -> str:
        return f"Retriever({self.index.count} items in {self.index.directory}, {self.engine!r})"
