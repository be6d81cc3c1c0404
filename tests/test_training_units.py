"""Unit tests of trainer helpers: triplet loss, lr schedule, metrics log, loss switches, stripes variant."""

from __future__ import annotations

import json
import math

import pytest
import torch

from training.config import preset_config
from training.logs import MetricsLog, plot_metrics
from training.model_init import model_spec
from training.pretrain import batch_hard_triplet_loss
from training.schedule import apply_lr, lr_at, param_groups, warmup_factor


def test_batch_hard_triplet_matches_loop() -> None:
    torch.manual_seed(0)
    f = torch.randn(8, 5)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    got = batch_hard_triplet_loss(f, y, margin=0.3)
    losses = []
    for i in range(8):
        d = [(f[i] - f[j]).norm() for j in range(8)]
        pos = max(d[j] for j in range(8) if y[j] == y[i])
        neg = min(d[j] for j in range(8) if y[j] != y[i])
        losses.append(max(0.0, float(pos - neg + 0.3)))
    assert abs(float(got) - sum(losses) / 8) < 1e-5


def test_triplet_without_negatives_is_zero() -> None:
    f = torch.randn(4, 3)
    assert float(batch_hard_triplet_loss(f, torch.zeros(4, dtype=torch.long))) == 0.0


def test_lr_schedule_steps_every_step_size() -> None:
    cfg = preset_config("market1501")
    assert lr_at(cfg, 0) == cfg.optim.lr
    assert abs(lr_at(cfg, 19) - 3.5e-4) < 1e-12
    assert abs(lr_at(cfg, 20) - 3.5e-5) < 1e-12
    assert abs(lr_at(cfg, 45) - 3.5e-6) < 1e-12


def test_warmup_factor_is_linear_from_one_percent() -> None:
    assert warmup_factor(0, 0) == 1.0 and warmup_factor(5, 0) == 1.0
    assert abs(warmup_factor(0, 100) - 0.01) < 1e-12
    assert abs(warmup_factor(50, 100) - (0.01 + 0.99 * 0.5)) < 1e-12
    assert warmup_factor(100, 100) == 1.0 and warmup_factor(250, 100) == 1.0


def _tiny_net() -> torch.nn.Module:
    net = torch.nn.Module()
    net.backbone = torch.nn.Linear(3, 3)
    net.head = torch.nn.Linear(3, 2)
    return net


def test_param_groups_one_group_unless_the_trunk_is_slower() -> None:
    net = _tiny_net()
    (only,) = param_groups(net, net.backbone, 1.0)
    assert [id(p) for p in only["params"]] == [id(p) for p in net.parameters()]
    trunk, heads = param_groups(net, net.backbone, 0.1)
    assert {id(p) for p in trunk["params"]} == {id(p) for p in net.backbone.parameters()}
    assert {id(p) for p in heads["params"]} == {id(p) for p in net.head.parameters()}
    assert (trunk["lr_mult"], heads["lr_mult"]) == (0.1, 1.0)


def test_apply_lr_combines_decay_warmup_and_trunk_multiplier() -> None:
    cfg = preset_config("synthetic", {"optim": {"warmup_iters": 80, "backbone_lr_mult": 0.1, "iters": 40}})
    net = _tiny_net()
    opt = torch.optim.Adam(param_groups(net, net.backbone, cfg.optim.backbone_lr_mult), lr=cfg.optim.lr)
    apply_lr([opt], cfg, epoch=0, step=0)
    assert [g["lr"] for g in opt.param_groups] == [cfg.optim.lr * 0.1 * 0.01, cfg.optim.lr * 0.01]
    apply_lr([opt], cfg, epoch=1, step=20)  # iteration 60 of 80
    f = 0.01 + 0.99 * 60 / 80
    assert all(abs(g["lr"] - cfg.optim.lr * m * f) < 1e-15 for g, m in zip(opt.param_groups, (0.1, 1.0), strict=True))
    apply_lr([opt], cfg, epoch=2, step=0)
    assert [g["lr"] for g in opt.param_groups] == [cfg.optim.lr * 0.1, cfg.optim.lr]
    default = preset_config("synthetic")
    assert default.fingerprint() == preset_config(
        "synthetic", {"optim": {"warmup_iters": 0, "backbone_lr_mult": default.optim.backbone_lr_mult}}).fingerprint()
    assert cfg.fingerprint() != default.fingerprint()


def test_metrics_log_truncate_and_plot(tmp_path) -> None:
    log = MetricsLog(tmp_path / "m.jsonl")
    for e in range(4):
        log.append({"epoch": e, "mAP": 0.1 * e, "loss_total": 4 - e, "skipped": False})
    log.truncate_after(1)
    assert [r["epoch"] for r in log.records()] == [0, 1]
    png = plot_metrics(log.path, tmp_path / "c.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(log.path.read_text().splitlines()[0])["mAP"] == 0.0


def _terms(cfg):
    return cfg.loss.terms(parts_learned=cfg.uses_parsing)


def test_loss_terms_follow_part_source() -> None:
    cfg = preset_config("synthetic", {"cluster": {"part_source": "stripes"}, "loss": {"part_classification": True}})
    sw = _terms(cfg)
    assert not sw.parsing and not sw.diversity and sw.nce and sw.part_classification
    assert model_spec(cfg).part_mode == "stripes"
    cfg = preset_config("synthetic", {"loss": {"diversity": False, "nce_literal": True, "nce_weighted": False}})
    sw = _terms(cfg)
    assert sw.parsing and not sw.diversity and sw.nce_literal and not sw.nce_weighted
    assert sw.tau == cfg.loss.temperature and sw.beta == cfg.loss.beta
    assert model_spec(cfg).part_mode == "learned"
    assert not _terms(preset_config("synthetic")).diversity_sum  # default: pixel mean
    literal = _terms(preset_config("synthetic", {"loss": {"diversity_sum": True}}))
    assert literal.diversity and literal.diversity_sum  # Eq. 5 as printed: sum over pixels


def test_parse_batch_oracle_source_pools_ground_truth() -> None:
    import pytest

    from scwm.parsing import oracle_part_labels, spatial_cascaded_clustering
    from training.stages import parse_batch

    gen = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 16, 8, 4, generator=gen)
    gt = torch.randint(0, 6, (3, 128, 64), generator=gen)
    cfg = preset_config("synthetic", {"cluster": {"part_source": "gt"}})
    assert torch.equal(parse_batch(fmap, cfg, gt), oracle_part_labels(gt, 4, (8, 4)))
    assert model_spec(cfg).part_mode == "learned" and _terms(cfg).parsing
    with pytest.raises(ValueError, match="ground-truth part masks"):
        parse_batch(fmap, cfg, None)
    scc = preset_config("synthetic")  # the mask is ignored by SCC
    assert torch.equal(parse_batch(fmap, scc, gt), spatial_cascaded_clustering(fmap, 4, eta=scc.cluster.eta))
    feature = preset_config("synthetic", {"cluster": {"eta": 1.0, "far_pairs": "feature"}})
    assert torch.equal(parse_batch(fmap, feature, None), spatial_cascaded_clustering(fmap, 4, eta=math.inf))


def test_initial_weights_for_another_number_of_parts(tmp_path) -> None:
    """A source checkpoint built with l = 4 initialises an l = 7 model: backbone and global neck loaded,
    part head / part BN left at their fresh init; a checkpoint of another backbone is still refused."""
    import pytest

    from scwm.models import ModelSpec, SCWMNet, save_checkpoint
    from scwm.models.backbone import WeightLoadError
    from training.model_init import load_initial_weights

    torch.manual_seed(0)
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    src = spec.build()
    with torch.no_grad():
        src.global_bn.running_mean.uniform_()
    save_checkpoint(tmp_path / "src.pt", src, spec)
    net = SCWMNet("resnet18", num_parts=7)
    head_before = net.part_head.weight.detach().clone()
    load_initial_weights(net, tmp_path / "src.pt")
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[k], v), k
    assert torch.equal(net.global_bn.running_mean, src.global_bn.running_mean)
    assert torch.equal(net.part_head.weight, head_before)  # (7, C, 3, 3) could not come from a (4, C, 3, 3) head
    same = SCWMNet("resnet18", num_parts=4)
    load_initial_weights(same, tmp_path / "src.pt")  # the usual case: the part head is taken as it is
    assert torch.equal(same.part_head.weight, src.part_head.weight)
    with pytest.raises(WeightLoadError, match="do not fit"):
        load_initial_weights(SCWMNet("resnet50", num_parts=4), tmp_path / "src.pt")


def test_ensure_synthetic_warns_about_a_stale_world(tmp_path, caplog) -> None:
    import logging

    from scwm.data.synthetic.__main__ import main as synthetic_cli
    from training.datasets import ensure_synthetic

    current, knob = tmp_path / "tiny-current", tmp_path / "tiny-knob"
    assert synthetic_cli(["--preset", "tiny", "--out", str(current), "--quiet"]) == 0
    assert synthetic_cli(["--preset", "tiny", "--out", str(knob), "--quiet", "--track-background", "0"]) == 0
    with caplog.at_level(logging.WARNING, logger="scwm"):
        assert ensure_synthetic(current, "tiny", 0, progress=False) == current
        assert not [r for r in caplog.records if "differ" in r.getMessage()]
        assert ensure_synthetic(knob, "tiny", 0, progress=False) == knob  # used as is, not regenerated
    msgs = [r.getMessage() for r in caplog.records if "differ" in r.getMessage()]
    assert len(msgs) == 1 and "track_background" in msgs[0] and str(knob) in msgs[0]


def test_ensure_synthetic_waits_for_a_concurrent_generation(tmp_path) -> None:
    """Parallel experiments share one data root: a second caller waits on the lock next to the root (here
    held by the test) instead of clearing and writing the folder another process is generating."""
    import threading

    from scwm.utils import exclusive_lock
    from training.datasets import ensure_synthetic

    root = tmp_path / "tiny-seed0"
    done: list[object] = []
    with exclusive_lock(tmp_path / ".tiny-seed0.lock"):
        t = threading.Thread(target=lambda: done.append(ensure_synthetic(root, "tiny", 0, progress=False)))
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive() and not root.exists()  # waiting, nothing written
    t.join(timeout=120)
    assert done == [root] and (root / "meta.json").is_file()


def test_cpu_bf16_probe_uses_torch_then_cpuinfo(monkeypatch, tmp_path) -> None:
    import training.runtime as runtime

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert runtime.cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not runtime.cpu_has_native_bf16()
    # without torch's probes, the /proc/cpuinfo flags decide
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    real_read = runtime.Path.read_text
    for flags, expected in (("fpu avx2 fma", False), ("fpu avx512f avx512_bf16", True)):
        monkeypatch.setattr(runtime.Path, "read_text", lambda self, *a, _f=flags, **k:
                            f"flags\t: {_f}\n" if str(self) == "/proc/cpuinfo" else real_read(self, *a, **k))
        assert runtime.cpu_has_native_bf16() is expected


def test_check_precision_warns_only_when_precision_cannot_work(monkeypatch, caplog) -> None:
    import logging

    import training.runtime as runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="scwm"):
        runtime.check_precision(cpu, "fp32")
        assert not caplog.records
        runtime.check_precision(cpu, "bf16")
        assert "emulated" in caplog.records[-1].getMessage()
        runtime.check_precision(cpu, "amp")
        assert "needs CUDA" in caplog.records[-1].getMessage()
        n = len(caplog.records)
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
        runtime.check_precision(cpu, "bf16")
        assert len(caplog.records) == n


def test_checkpoint_fingerprint_accepts_the_old_config_dict() -> None:
    """Checkpoints written before fingerprints stored the config dict (old loss names, no resume-free fields):
    they still resume under the same config, and not under another."""
    from training.run import _stored_fingerprint

    cfg = preset_config("smoke", {"loss": {"nce_weighted": False}})
    old = cfg.model_dump()
    old["loss"]["weighted_nce"] = old["loss"].pop("nce_weighted")
    old["loss"]["wnce"] = old["loss"].pop("nce")
    for section, name in (("run", "resume"), ("run", "progress"), ("run", "eval_every"), ("optim", "epochs")):
        del old[section][name]
    assert _stored_fingerprint({"config": old}) == cfg.fingerprint(for_resume=True)
    assert _stored_fingerprint({"config": old}) != preset_config("smoke").fingerprint(for_resume=True)
    assert _stored_fingerprint({"fingerprint": cfg.fingerprint(for_resume=True)}) == cfg.fingerprint(for_resume=True)
    assert _stored_fingerprint({"config": {"loss": {"gone": 1}}}) is None


def test_evaluation_does_not_draw_from_the_global_rng() -> None:
    """Starting an evaluation loader's iterator draws a seed; it must come from the loader's own generator,
    or how often a run evaluates would change its training (it did, before the fix)."""
    from scwm.data.records import ImageRecord
    from training.features import eval_loader

    cfg = preset_config("smoke")
    loader = eval_loader([ImageRecord("unused.jpg", 1, 0)], cfg)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    iter(loader)
    assert torch.equal(torch.rand(3), expected)


def test_bn_chunk_scope_selects_the_layers() -> None:
    from scwm.models.chunked_bn import ChunkedBatchNorm1d, ChunkedBatchNorm2d
    from training.model_init import build_model

    chunked = (ChunkedBatchNorm1d, ChunkedBatchNorm2d)
    for scope, trunk, necks in (("all", True, True), ("trunk", True, False), ("necks", False, True)):
        cfg = preset_config("smoke", {"model": {"weights": None, "bn_chunks": 2, "bn_chunk_scope": scope}})
        net = build_model(cfg, torch.device("cpu"))
        assert isinstance(net.backbone.bn1, chunked) is trunk, scope
        assert isinstance(net.global_bn, chunked) is necks and isinstance(net.part_bn, chunked) is necks, scope
    plain = build_model(preset_config("smoke", {"model": {"weights": None, "bn_chunks": 1}}), torch.device("cpu"))
    assert not any(isinstance(m, chunked) for m in plain.modules())


def test_bn_chunks_count_chunks_of_the_global_batch() -> None:
    """``model.bn_chunks`` is per global batch: 4 chunks on 4 processes is one chunk per process."""
    import pytest

    from training.model_init import bn_chunks_per_process

    cfg = preset_config("market1501")
    assert cfg.model.bn_chunks == 4
    assert [bn_chunks_per_process(cfg, w) for w in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(ValueError, match=r"bn_chunks=4 .* over 3 processes; use a multiple of 3"):
        bn_chunks_per_process(cfg, 3)
    with pytest.raises(ValueError, match="SyncBatchNorm"):
        bn_chunks_per_process(preset_config("market1501", {"model": {"bn_chunks": 1}}), 4)


def test_calibrate_necks_sets_running_stats_of_the_pooled_target_features(tmp_path) -> None:
    """AdaBN for the necks: the running statistics become the mean / unbiased variance of the pooled features,
    computed here independently (trunk + Eq. 1 pooling by hand); ``parts`` leaves the global neck alone."""
    import numpy as np
    from PIL import Image

    from scwm.data.records import ImageRecord
    from scwm.models.scwm_net import part_pooling
    from training.features import eval_loader
    from training.model_init import build_model, calibrate_necks

    rng = np.random.RandomState(0)
    records = []
    for i in range(6):
        path = tmp_path / f"{i:04d}_c1s1_000000_00.png"
        Image.fromarray(rng.randint(0, 255, (64, 32, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(str(path), i, 0))
    for which in ("parts", "all"):
        cfg = preset_config("smoke", {"model": {"weights": None, "calibrate_necks": which},
                                      "data": {"height": 64, "width": 32}, "run": {"progress": False}})
        torch.manual_seed(0)
        net = build_model(cfg, torch.device("cpu")).eval()
        global_before = net.global_bn.running_mean.clone()
        calibrate_necks(net, records, cfg, torch.device("cpu"))
        images = torch.cat([b["image"] for b in eval_loader(records, cfg)])
        with torch.no_grad():
            fmap = net.backbone(images)
            parts = part_pooling(fmap, torch.softmax(net.part_head(fmap), dim=1)).flatten(1)
        torch.testing.assert_close(net.part_bn.running_mean, parts.mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net.part_bn.running_var, parts.var(0), rtol=1e-3, atol=1e-6)
        if which == "all":
            torch.testing.assert_close(net.global_bn.running_mean, fmap.mean(dim=(2, 3)).mean(0), rtol=1e-4,
                                       atol=1e-5)
        else:
            assert torch.equal(net.global_bn.running_mean, global_before)


def test_extract_keeps_no_autograd_graph(tmp_path) -> None:
    """Feature extraction runs without autograd: an embedding that kept its graph would hold every batch's
    activations (a market evaluation grew past 10 GB when the decorator went missing)."""
    import numpy as np
    from PIL import Image

    from scwm.data.records import ImageRecord
    from training.features import eval_loader, extract
    from training.model_init import build_model

    path = tmp_path / "0001_c1s1_000000_00.png"
    Image.fromarray(np.zeros((64, 32, 3), dtype=np.uint8)).save(path)
    cfg = preset_config("smoke", {"model": {"weights": None}, "data": {"height": 64, "width": 32},
                                  "run": {"progress": False}})
    net = build_model(cfg, torch.device("cpu"))
    out = extract(net, eval_loader([ImageRecord(str(path), 1, 0)], cfg), torch.device("cpu"), progress=False)
    assert not out["global"].requires_grad and not out["parts"].requires_grad
    assert net.training  # the previous mode is restored


def test_memory_normalization_flag_reaches_the_weighted_update() -> None:
    """``--loss.memory_normalization``: with equal weights, the per-cluster reading of Eq. 8 moves centroid 0
    with the mean of its two samples, the printed batch-wide one with a quarter of each (4 samples in the batch);
    checked against Eq. 9 computed by hand."""
    from training.stages import build_memory

    torch.manual_seed(0)
    unit = torch.nn.functional.normalize
    g, p = unit(torch.randn(8, 6), dim=1), unit(torch.randn(8, 2, 6), dim=2)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    f, fp = unit(torch.randn(4, 6), dim=1), unit(torch.randn(4, 2, 6), dim=2)
    for norm, share in (("cluster", 0.5), ("batch", 0.25)):
        cfg = preset_config("synthetic", {"loss": {"memory_normalization": norm}})
        mem = build_memory(g, p, labels, 4, cfg)
        m = cfg.loss.memory_momentum
        c0 = mem.global_centroids[0].clone()
        mem.update(f, fp, torch.tensor([0, 0, 1, 1]), torch.full((4,), 0.5), torch.full((4, 2), 0.5))
        expected = unit(m * c0 + (1 - m) * share * (f[0] + f[1]), dim=0)
        assert torch.allclose(mem.global_centroids[0], expected, atol=1e-6), norm


def test_clustering_stage_runs_the_neighbour_searches_on_the_training_device(tmp_path, monkeypatch) -> None:
    """Jaccard + DBSCAN and the cross agreement get the training device (on CUDA their k-NN searches run on the
    GPU, not on the extracted CPU copies); the spies record it and leave the results to the real functions."""
    import numpy as np
    from PIL import Image

    import training.stages as stages
    from scwm.data.records import ImageRecord
    from training.model_init import build_model

    rng = np.random.RandomState(0)
    records = []
    for i in range(8):
        path = tmp_path / f"{i // 2:04d}_c{1 + i % 2}s1_000000_00.png"
        Image.fromarray(rng.randint(0, 255, (64, 32, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(str(path), i // 2, i % 2))
    seen: dict[str, object] = {}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            seen[name] = kwargs.get("device")
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(stages, "pseudo_labels", spy("pseudo_labels", stages.pseudo_labels))
    monkeypatch.setattr(stages, "cross_agreement", spy("cross_agreement", stages.cross_agreement))
    cfg = preset_config("smoke", {"model": {"weights": None}, "data": {"height": 64, "width": 32},
                                  "run": {"progress": False}})
    device = torch.device("cpu")
    targets = stages.clustering_stage(build_model(cfg, device), records, cfg, 0, device, None)
    assert seen == {"pseudo_labels": device, "cross_agreement": device}
    assert targets.alpha_parts.shape[0] == len(records) and len(targets.labels) == len(records)


def test_ema_update_matches_hand_computation_and_skips_classifiers() -> None:
    """--model.ema_decay: t <- d t + (1 - d) s for parameters and BN statistics, counters copied, classifiers
    (rebuilt per epoch, other shapes) untouched; computed here from the state dicts by hand."""
    from training.ema import ema_update_, make_teacher

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
            self.classifier = torch.nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.trunk(x)

    torch.manual_seed(0)
    student = Net()
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    student(torch.randn(2, 3, 8, 8))  # moves the BN statistics and the counter
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    s = student.state_dict()
    teacher.classifier = torch.nn.Linear(4, 7)  # another epoch's number of clusters
    t0_cls = teacher.classifier.weight.clone()
    ema_update_(teacher, student, 0.9)
    got = teacher.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        k = f"trunk.{k}"
        torch.testing.assert_close(got[k], 0.9 * t0[k] + 0.1 * s[k], msg=k)
    assert int(got["trunk.1.num_batches_tracked"]) == int(s["trunk.1.num_batches_tracked"]) == 1
    assert torch.equal(teacher.classifier.weight, t0_cls)
    with pytest.raises(ValueError, match="decay"):
        ema_update_(teacher, student, 1.0)


def test_build_model_passes_the_part_pooling_grad_flag() -> None:
    """``--model.part_pooling_grad false`` reaches the network the trainer builds (default: pooling gradients on)."""
    from training.model_init import build_model

    for flag in (True, False):
        cfg = preset_config("smoke", {"model": {"weights": None, "part_pooling_grad": flag},
                                      "run": {"progress": False}})
        assert build_model(cfg, torch.device("cpu")).part_pooling_grad is flag
    assert preset_config("synthetic").model.part_pooling_grad is True
