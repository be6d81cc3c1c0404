"""Source pretraining: a corrupt cached checkpoint is reported (the training itself: tests/e2e)."""

from __future__ import annotations

import pytest

import training.pretrain as pretrain
from training.config import preset_config


def test_pretrain_corrupt_cache_is_reported(tmp_path) -> None:
    (tmp_path / "pre.pt").write_bytes(b"garbage")
    cfg = preset_config("smoke", {"pretrain": {"checkpoint": str(tmp_path / "pre.pt")}})
    with pytest.raises(Exception, match="pre.pt"):
        pretrain.run_pretraining(cfg)
