"""The full SCWM loop: ``python -m training.run [--preset NAME] [--config FILE] [--section.field VALUE ...]``.

Each epoch: a clustering stage (features, Jaccard + DBSCAN pseudo identities, spatial cascaded
clustering into pseudo part masks, kNN-IoU difficulty, memory and classifier initialisation) and a
training stage (weighted memory, wNCE, part separation, parsing + diversity, part classification).

With no arguments (preset ``synthetic``) it generates the synthetic source and target worlds if
absent, pretrains on the source if no checkpoint is cached, runs SCWM on the target, evaluates, and
prints where the results and checkpoints are. Multi-GPU / multi-node: launch with ``torchrun``.
Outputs in ``run.output``: ``checkpoint.pt`` (last epoch, resumable), ``model.pt`` (final weights for
serving), ``metrics.jsonl``, ``curves.png``, ``config.yaml``, ``results.json`` (final figures; its file
paths are relative to ``run.output``), ``train.log``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP

from scwm.models import save_checkpoint
from scwm.utils import atomic_torch_save, atomic_write_bytes, atomic_write_json, seed_everything

from .cli import config_from_args
from .config import DeprecatedNameWarning, TrainConfig
from .datasets import load_train_dataset
from .ema import ema_update_, make_teacher
from .features import evaluate
from .logs import MetricsLog, plot_metrics, setup_logging
from .model_init import build_model, calibrate_necks, model_spec
from .runtime import broadcast_object, check_precision, init_distributed
from .schedule import apply_lr, lr_at, param_groups
from .stages import ClusterTargets, clustering_stage, train_epoch

log = logging.getLogger("scwm")


class Trainer:
    """Holds the state of one SCWM run; :meth:`fit` runs the epochs."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.env, self.device = init_distributed(cfg.run.device)
        self.out = cfg.output_dir
        setup_logging(self.out, self.env.rank)
        seed_everything(cfg.run.seed + self.env.rank)
        check_precision(self.device, cfg.run.precision)
        self.dataset = load_train_dataset(cfg)
        self.train_records = self.dataset.train
        if len(self.train_records) < 2:
            raise ValueError(f"{cfg.data.root}: need at least 2 training images, found {len(self.train_records)}")
        pids = np.array([r.pid for r in self.train_records])
        self.gt_pids = pids if (pids >= 0).all() else None
        self.has_eval = bool(self.dataset.query) and bool(self.dataset.gallery)
        self.net = build_model(cfg, self.device, self.env.world_size)
        # Re-seed: pretraining (when it runs here rather than from the cache) consumes random numbers, and
        # a run must not depend on whether the pretrained checkpoint was cached.
        seed_everything(cfg.run.seed + self.env.rank)
        self.spec = model_spec(cfg, self.dataset.part_names)
        self.optimizer = torch.optim.Adam(param_groups(self.net, self.net.backbone, cfg.optim.backbone_lr_mult),
                                          lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.run.precision == "amp" and self.device.type == "cuda" \
            else None
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self.masks: torch.Tensor | None = None
        self.teacher: torch.nn.Module | None = None  # --model.ema_decay > 0: made after the neck calibration
        self.start_epoch = 0
        self.ckpt_path = self.out / "checkpoint.pt"

    @property
    def served(self) -> torch.nn.Module:
        """The model that clusters, is evaluated and is saved: the EMA teacher if there is one."""
        return self.net if self.teacher is None else self.teacher

    # ------------------------------------------------------------------------------------ persistence
    def save(self, epoch: int) -> None:
        if not self.env.is_main:
            return
        atomic_torch_save(self.ckpt_path, {
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
            "masks": self.masks, "fingerprint": self.cfg.fingerprint(for_resume=True), "spec": self.spec.to_dict(),
            "rng": torch.get_rng_state(),
            **({"teacher": self.teacher.state_dict()} if self.teacher is not None else {}),
        })

    def try_resume(self) -> None:
        if not (self.cfg.run.resume and self.ckpt_path.is_file()):
            return
        state = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        if _stored_fingerprint(state) != self.cfg.fingerprint(for_resume=True):
            raise ValueError(f"{self.ckpt_path} was written by a different configuration; use another "
                             "run.output, delete it, or pass --run.resume false to start over")
        self.net.load_state_dict({k: v for k, v in state["model"].items() if "classifier" not in k},
                                 strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.cfg.model.ema_decay > 0:
            if "teacher" not in state:
                raise ValueError(f"{self.ckpt_path} holds no EMA teacher, which --model.ema_decay needs")
            self.teacher = make_teacher(self.net)
            self.teacher.load_state_dict({k: v for k, v in state["teacher"].items() if "classifier" not in k},
                                         strict=False)
        self.masks = state.get("masks")
        torch.set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"]) + 1
        self.metrics.truncate_after(int(state["epoch"]))
        log.info("resumed from %s after epoch %d", self.ckpt_path, self.start_epoch)

    # -------------------------------------------------------------------------------------- epochs
    def cluster(self, epoch: int) -> ClusterTargets | None:
        targets = None
        if self.env.is_main:
            targets = clustering_stage(self.served, self.train_records, self.cfg, epoch, self.device, self.masks,
                                       self.gt_pids)
        return broadcast_object(targets, self.env)

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out / "config.yaml", yaml.safe_dump(cfg.model_dump(), sort_keys=False).encode())
        self.try_resume()
        log.info("SCWM on %s (%d train images) for %d epochs, output %s", cfg.data.root,
                 len(self.train_records), cfg.optim.epochs, self.out)
        result: dict[str, Any] = {}
        if self.start_epoch >= cfg.optim.epochs and self.env.is_main:
            result = self._final_of_finished_run()
        if self.start_epoch == 0 and self.has_eval and self.env.is_main and cfg.run.eval_every:
            start = {"epoch": -1, **self._evaluate()}  # the initial model: direct transfer
            self.metrics.truncate_after(-2)
            self.metrics.append(start)
            log.info("before training (direct transfer): %s", _fmt(start))
        if self.start_epoch == 0:
            calibrate_necks(self.net, self.train_records, cfg, self.device)
            if cfg.model.ema_decay > 0:
                self.teacher = make_teacher(self.net)
        for epoch in range(self.start_epoch, cfg.optim.epochs):
            tic = time.time()
            targets = self.cluster(epoch)
            rec: dict[str, Any] = {"epoch": epoch, "lr": lr_at(cfg, epoch), **targets.stats}
            if targets.num_clusters < 2:
                log.warning("epoch %d: DBSCAN found %d usable cluster(s) (eps=%.3g); skipping the training "
                            "stage. Try a larger cluster.eps.", epoch + 1, targets.num_clusters, cfg.cluster.eps)
                rec["skipped"] = True
            else:
                self.masks = targets.soft_masks
                self.net.reset_classifiers(targets.num_clusters, targets.memory.global_centroids,
                                           targets.memory.part_centroids)
                cls_opt = torch.optim.Adam([self.net.global_classifier, self.net.part_classifier],
                                           lr=lr_at(cfg, epoch), weight_decay=cfg.optim.weight_decay)
                optimizers = [self.optimizer, cls_opt]
                schedule = functools.partial(apply_lr, optimizers, cfg, epoch)
                model: torch.nn.Module = self.net
                if self.env.enabled:
                    model = DDP(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                ema = None if self.teacher is None else \
                    functools.partial(ema_update_, self.teacher, self.net, cfg.model.ema_decay)
                rec.update(train_epoch(model, self.net, self.train_records, targets, cfg, epoch,
                                       optimizers, self.device, self.env, self.scaler, schedule, ema))
            last = epoch == cfg.optim.epochs - 1
            if self.has_eval and self.env.is_main and (last or (cfg.run.eval_every and
                                                                (epoch + 1) % cfg.run.eval_every == 0)):
                rec.update(self._evaluate())
                result = rec
            rec["time_epoch_s"] = time.time() - tic
            if self.env.is_main:
                self.metrics.append(rec)
                log.info("epoch %d/%d: %s", epoch + 1, cfg.optim.epochs, _fmt(rec))
                if last or (epoch + 1) % cfg.run.save_every == 0:
                    self.save(epoch)
        return self.finish(result)

    def _final_of_finished_run(self) -> dict[str, Any]:
        """Final figures of a run resumed after its last epoch (killed before results.json was written):
        the logged evaluation of the last epoch, or a new evaluation if none was logged."""
        last_epoch = self.cfg.optim.epochs - 1
        logged = [r for r in self.metrics.records() if r.get("epoch") == last_epoch]
        if logged and "mAP" in logged[-1]:
            return logged[-1]
        return self._evaluate() if self.has_eval else {}

    def _evaluate(self) -> dict[str, float]:
        """The figures logged for an evaluation on query/gallery."""
        res = evaluate(self.served, self.dataset, self.cfg, self.device)
        return {"mAP": res.mAP, "rank1": res.rank1, "rank5": res.rank(5), "rank10": res.rank(10), "mINP": res.mINP}

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        if not self.env.is_main:
            return result
        model_path = self.out / "model.pt"
        save_checkpoint(model_path, self.served, self.spec, config=self.cfg.model_dump(), kind="scwm")
        plot = plot_metrics(self.metrics.path, self.out / "curves.png")
        summary = {"model": str(model_path), "checkpoint": str(self.ckpt_path), "metrics": str(self.metrics.path),
                   "curves": str(plot) if plot else None,
                   "final": {k: result[k] for k in ("mAP", "rank1", "rank5", "rank10", "mINP") if k in result}}
        # on disk, paths are relative to the run directory, so a run folder can be moved or committed
        portable = {k: (os.path.relpath(v, self.out) if k in _PATH_KEYS and v else v) for k, v in summary.items()}
        atomic_write_json(self.out / "results.json", portable)
        return summary


_PATH_KEYS = ("model", "checkpoint", "metrics", "curves")


def _stored_fingerprint(state: dict[str, Any]) -> str | None:
    """The config fingerprint a checkpoint was written with. Older checkpoints kept the config dict itself
    (without its resume-free fields); it is fingerprinted the same way (None if it no longer validates)."""
    if "fingerprint" in state:
        return state["fingerprint"]
    old = state.get("config")
    if not isinstance(old, dict):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecatedNameWarning)
            return TrainConfig.model_validate(old).fingerprint(for_resume=True)
    except ValueError:
        return None


def _fmt(rec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items() if k != "epoch")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, ns = config_from_args(argv)
    if ns.print_config:
        print(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        return {}
    trainer = Trainer(cfg)
    summary = trainer.fit()
    if trainer.env.is_main:
        final = summary.get("final", {})
        if final:
            print(f"\nSCWM finished: mAP {100 * final['mAP']:.1f}%, Rank-1 {100 * final['rank1']:.1f}% "
                  f"on {cfg.data.root} (query/gallery).")
        else:
            print("\nSCWM finished (no labelled query/gallery split to evaluate on).")
        print(f"  final model:   {summary['model']}  (export: python -m serving.export --checkpoint "
              f"{summary['model']})")
        print(f"  checkpoint:    {summary['checkpoint']}")
        print(f"  metrics:       {summary['metrics']}  plot: {summary['curves']}")
        print(f"  results:       {trainer.out / 'results.json'}")
    if trainer.env.enabled:
        torch.distributed.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
