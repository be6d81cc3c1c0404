"""The int8 graph analysis of benchmarks/bench_int8.py on a tiny exported residual network (fp32, S8 and U8
activations, per-channel and per-tensor weights)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from torch import nn

from benchmarks.bench_int8 import analyze_graph, quantize


class _Tiny(nn.Module):
    """Stem conv + relu, one residual block, and a head conv reading the block output (shared input)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.c1 = nn.Conv2d(16, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.stem(images))
        y = torch.relu(self.c2(torch.relu(self.c1(x))) + x)
        return self.head(y), y.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.onnx.export(
        _Tiny().eval(),
        (torch.randn(2, 3, 16, 8),),
        buf,
        dynamo=False,
        input_names=["images"],
        output_names=["parts", "feat"],
        dynamic_axes={"images": {0: "n"}},
        opset_version=17,
    )
    fp32 = d / "tiny.onnx"
    fp32.write_bytes(buf.getvalue())
    calib = np.random.default_rng(0).standard_normal((16, 3, 16, 8)).astype(np.float32)
    return {
        "fp32": fp32,
        "u8": quantize(fp32, d / "u8.onnx", calib, act="U8", weight="S8", per_channel=True),
        "u8_tensor": quantize(fp32, d / "u8t.onnx", calib, act="U8", weight="S8", per_channel=False),
        "s8": quantize(fp32, d / "s8.onnx", calib, act="S8", weight="S8", per_channel=True),
        "qop": quantize(fp32, d / "qop.onnx", calib, act="U8", weight="S8", per_channel=True, fmt="QOperator"),
    }


def test_fp32_has_no_quantized_nodes(models: dict[str, Path], tmp_path: Path) -> None:
    a = analyze_graph(models["fp32"], tmp_path / "opt.onnx")
    assert (tmp_path / "opt.onnx").is_file()
    assert a.convs == 4 and a.fused_convs == 0 and len(a.float_convs) == 4
    assert a.activation_type == "-" and a.weight_type == "-" and a.per_channel is None
    assert "QuantizeLinear" not in a.ops and a.shared_input == []


def test_u8_qdq_fuses_every_conv(models: dict[str, Path]) -> None:
    a = analyze_graph(models["u8"])
    assert a.ops["QuantizeLinear"] > 0 and a.ops["Conv"] == 4
    assert a.fused_convs == 4 and a.float_convs == [] and a.float_share == "0/4"
    assert (a.activation_type, a.weight_type, a.per_channel) == ("U8", "S8", True)
    assert a.optimized_ops.get("QLinearAdd", 0) == 1


def test_per_tensor_and_s8_and_qoperator_are_told_apart(models: dict[str, Path]) -> None:
    assert analyze_graph(models["u8_tensor"]).per_channel is False
    s8 = analyze_graph(models["s8"])
    assert (s8.activation_type, s8.weight_type) == ("S8", "S8")
    # every float conv that reads a shared DequantizeLinear is listed, and such convs exist in this graph
    assert set(s8.shared_input) <= set(s8.float_convs)
    assert s8.fused_convs + len(s8.float_convs) == 4
    q = analyze_graph(models["qop"])
    assert q.ops.get("QLinearConv") == 4 and q.convs == 4 and q.fused_convs == 4
    assert (q.activation_type, q.weight_type, q.per_channel) == ("U8", "S8", True)


def test_quantized_model_is_valid_onnx(models: dict[str, Path]) -> None:
    onnx.checker.check_model(onnx.load(str(models["u8"])))


def _served_copy(src: Path, dst: Path, **extra: str) -> Path:
    """``src`` with the scwm metadata an exported model carries (spec, embedding size, fingerprint), renamed to
    the engine's output names."""
    from scwm.models import ModelSpec
    from serving.engine import META_PREFIX
    from serving.export import model_fingerprint

    m = onnx.load(str(src))
    names = {"parts": "part_probs", "feat": "global_feat"}
    for n in m.graph.node:
        n.output[:] = [names.get(o, o) for o in n.output]
    for o in m.graph.output:
        o.name = names.get(o.name, o.name)
    m.graph.node.append(onnx.helper.make_node("Identity", ["global_feat"], ["part_feats"]))
    m.graph.output.append(onnx.helper.make_tensor_value_info("part_feats", onnx.TensorProto.FLOAT, None))
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=16, width=8)
    meta = {"spec": json.dumps(spec.to_dict()), "embedding_size": "16", "fingerprint": model_fingerprint(m), **extra}
    onnx.helper.set_model_props(m, {f"{META_PREFIX}{k}": v for k, v in meta.items()})
    onnx.save(m, str(dst))
    return dst


CPU = ["CPUExecutionProvider"]


@pytest.fixture(autouse=True)
def _no_precision_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCWM_PRECISION", raising=False)


@pytest.fixture
def served(models: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """An export folder as ``serving.export`` leaves it: ``model.onnx`` (fp32) and ``model.int8-static.onnx`` (the
    U8S8 recipe, with its ``quantization`` metadata and the fp32 file's fingerprint), plus 6 gallery images."""
    from serving.export import INT8_STATIC_RECIPE

    d = tmp_path / "exports"
    d.mkdir()
    fp32 = _served_copy(models["fp32"], d / "model.onnx", precision="fp32")
    link = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}["scwm.fingerprint"]
    recipe = json.dumps(INT8_STATIC_RECIPE)
    int8 = _served_copy(
        models["u8"], d / "model.int8-static.onnx", precision="int8-static", quantization=recipe, fp32_fingerprint=link
    )
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)).save(gallery / f"{i:04d}_c1s1_{i}.png")
    return {"fp32": fp32, "int8": int8, "gallery": gallery, "dir": d}


def _cuda_listed() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def test_auto_on_the_cpu_serves_a_valid_sibling(served: dict[str, Path]) -> None:
    from serving.engine import OnnxEngine, resolve_model_path

    for providers in (CPU, None) if not _cuda_listed() else (CPU,):  # None: select_providers picks the CPU here
        eng = OnnxEngine(served["fp32"], providers=providers)  # no precision, no $SCWM_PRECISION: auto
        assert eng.requested_path == served["fp32"] and eng.model_path == served["int8"]
        assert (eng.requested_precision, eng.precision, eng.served_precision) == ("auto", "int8", "int8-static")
        assert eng.providers == CPU
    assert resolve_model_path(served["fp32"], CPU) == served["int8"]
    assert resolve_model_path(served["fp32"], CPU, "auto") == served["int8"]
    eng = OnnxEngine(served["fp32"], providers=CPU, precision="fp32")  # fp32: the file given
    assert (eng.model_path, eng.precision, eng.served_precision) == (served["fp32"], "fp32", "fp32")
    eng = OnnxEngine(served["int8"], providers=CPU, precision="fp32")  # fp32 serves any file as given
    assert eng.model_path == served["int8"] and eng.served_precision == "int8-static"


def test_auto_without_a_valid_sibling_serves_fp32(served: dict[str, Path], models: dict[str, Path]) -> None:
    from serving.engine import OnnxEngine, resolve_model_path

    served["int8"].unlink()
    eng = OnnxEngine(served["fp32"], providers=CPU)
    assert (eng.model_path, eng.precision, eng.served_precision) == (served["fp32"], "fp32", "fp32")
    assert resolve_model_path(served["fp32"], CPU, "auto") == served["fp32"]
    _served_copy(models["s8"], served["int8"], precision="int8-static")  # the old S8 recipe: no quantization metadata
    eng = OnnxEngine(served["fp32"], providers=CPU)
    assert (eng.model_path, eng.precision, eng.served_precision) == (served["fp32"], "fp32", "fp32")
    served["int8"].write_bytes(b"not an onnx file")  # unreadable: auto still serves the fp32 file
    assert OnnxEngine(served["fp32"], providers=CPU).model_path == served["fp32"]


def test_a_sibling_of_another_model_is_never_served(
    served: dict[str, Path], models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A sibling left by an earlier export (e.g. one with --no-int8 since) belongs to another model."""
    from serving.engine import OnnxEngine
    from serving.export import INT8_STATIC_RECIPE

    recipe = json.dumps(INT8_STATIC_RECIPE)
    _served_copy(models["u8"], served["int8"], precision="int8-static", quantization=recipe, fp32_fingerprint="0" * 64)
    assert OnnxEngine(served["fp32"], providers=CPU).model_path == served["fp32"]
    assert "was exported from another model" in caplog.text
    with pytest.raises(ValueError, match=r"cannot serve it: .*int8-static\.onnx was exported from another model"):
        OnnxEngine(served["fp32"], providers=CPU, precision="int8")
    # written before the fp32_fingerprint key: the two files must come from one export (scwm.exported_at)
    _served_copy(models["fp32"], served["fp32"], precision="fp32", exported_at="2026-12-01T10:00:00+00:00")
    _served_copy(models["u8"], served["int8"], precision="int8-static", quantization=recipe,
                 exported_at="2026-11-30T09:00:00+00:00")
    assert OnnxEngine(served["fp32"], providers=CPU).model_path == served["fp32"]
    _served_copy(models["u8"], served["int8"], precision="int8-static", quantization=recipe,
                 exported_at="2026-12-01T10:00:00+00:00")
    assert OnnxEngine(served["fp32"], providers=CPU).model_path == served["int8"]


def test_auto_with_a_gpu_provider_serves_the_file_given(served: dict[str, Path]) -> None:
    from serving.engine import resolve_model_path

    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_model_path(served["fp32"], gpu) == served["fp32"]
    assert resolve_model_path(served["fp32"], gpu, "auto") == served["fp32"]
    assert resolve_model_path(served["fp32"], ["CUDAExecutionProvider"], "auto") == served["fp32"]
    assert resolve_model_path(served["fp32"], CPU, "auto") == served["int8"]  # the providers decide
    with pytest.raises(ValueError, match="CPU provider alone"):
        resolve_model_path(served["fp32"], gpu, "int8")


def test_int8_serves_the_sibling_on_the_cpu(served: dict[str, Path]) -> None:
    from serving.engine import OnnxEngine

    eng = OnnxEngine(served["fp32"], precision="int8")  # providers default to the CPU alone
    assert eng.model_path == served["int8"] and eng.requested_path == served["fp32"]
    assert eng.providers == CPU and (eng.precision, eng.served_precision) == ("int8", "int8-static")
    fp32 = OnnxEngine(served["fp32"], providers=CPU, precision="fp32")
    assert eng.fingerprint != fp32.fingerprint
    assert eng.run(np.zeros((2, 3, 16, 8), np.float32))["global_feat"].shape == (2, 16)
    assert OnnxEngine(served["int8"], providers=CPU, precision="int8").model_path == served["int8"]
    with pytest.raises(ValueError, match=r"precision must be one of auto\|fp32\|int8, got 'as-is'"):
        OnnxEngine(served["fp32"], providers=CPU, precision="as-is")


def test_precision_env_variable(served: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.engine import OnnxEngine

    monkeypatch.setenv("SCWM_PRECISION", "fp32")  # forces the file given although a valid sibling exists
    assert OnnxEngine(served["fp32"], providers=CPU).model_path == served["fp32"]
    assert OnnxEngine(served["fp32"], providers=CPU, precision="auto").model_path == served["int8"]  # arg wins
    monkeypatch.setenv("SCWM_PRECISION", "int8")
    assert OnnxEngine(served["fp32"]).model_path == served["int8"]
    assert OnnxEngine(served["fp32"], providers=CPU, precision="fp32").model_path == served["fp32"]  # arg wins
    monkeypatch.setenv("SCWM_PRECISION", "bf16")
    with pytest.raises(ValueError, match=r"SCWM_PRECISION='bf16' .*auto\|fp32\|int8"):
        OnnxEngine(served["fp32"], providers=CPU)


def test_missing_or_old_sibling_is_a_clear_error_for_int8(served: dict[str, Path], models: dict[str, Path]) -> None:
    from serving.engine import OnnxEngine

    served["int8"].unlink()
    with pytest.raises(ValueError, match=r"model\.int8-static\.onnx, which does not exist.*serving\.export "
                                         r"--checkpoint CKPT --out .*model\.onnx"):
        OnnxEngine(served["fp32"], providers=CPU, precision="int8")
    _served_copy(models["s8"], served["int8"], precision="int8-static")  # the old S8 recipe: no metadata
    with pytest.raises(ValueError, match=r"model\.int8-static\.onnx lacks the 'scwm\.quantization'.*serving\.export"):
        OnnxEngine(served["fp32"], providers=CPU, precision="int8")


def test_an_index_serves_the_precision_it_was_built_with(served: dict[str, Path], tmp_path: Path) -> None:
    from serving import index as ix
    from serving.retriever import Retriever

    # built at fp32 (as on a GPU box) while a valid int8 sibling exists: reopened without a precision, it serves fp32
    g = ix.build_index(served["fp32"], [served["gallery"]], tmp_path / "idx32", progress=False, precision="fp32")
    assert g.manifest["model_precision"] == "fp32" and g.manifest["model_path"] == str(served["fp32"].resolve())
    r = Retriever.load(tmp_path / "idx32", providers=CPU)
    assert (r.engine.model_path, r.engine.precision) == (served["fp32"].resolve(), "fp32") and len(r) == 6
    with pytest.raises(ix.ModelMismatchError, match=r"built at fp32 \(--precision fp32\) but --precision int8"):
        Retriever.load(tmp_path / "idx32", providers=CPU, precision="int8")
    with pytest.raises(ix.ModelMismatchError, match=r"\(fp32, .*--precision fp32"):  # auto on the CPU: the sibling
        Retriever.load(tmp_path / "idx32", providers=CPU, precision="auto")
    # built with the default (auto): int8-static, and served so when reopened, also from the fp32 model's path
    g = ix.build_index(served["fp32"], [served["gallery"]], tmp_path / "idx8", progress=False)
    assert g.manifest["model_precision"] == "int8-static" and g.manifest["model_path"] == str(served["int8"].resolve())
    for model in (None, served["fp32"]):
        r = Retriever.load(tmp_path / "idx8", model_path=model)
        assert r.engine.model_path.name == served["int8"].name and r.info()["model"]["precision"] == "int8-static"
    for model in (None, served["fp32"]):  # fp32 asked for: refused, also where the recorded file is the int8 one
        with pytest.raises(ix.ModelMismatchError, match=r"built at int8-static \(--precision int8\)"):
            Retriever.load(tmp_path / "idx8", model_path=model, precision="fp32")
    assert Retriever.load(tmp_path / "idx8", precision="auto").engine.served_precision == "int8-static"


def test_precision_env_fp32_is_forced_everywhere(
    served: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving import index as ix
    from serving.retriever import Retriever

    int8_index = ix.build_index(served["fp32"], [served["gallery"]], tmp_path / "idx8", progress=False).directory
    monkeypatch.setenv("SCWM_PRECISION", "fp32")
    g = ix.build_index(served["fp32"], [served["gallery"]], tmp_path / "idx", progress=False)  # would be auto
    assert g.manifest["model_precision"] == "fp32"
    assert Retriever.load(tmp_path / "idx", providers=CPU).engine.model_path == served["fp32"].resolve()
    with pytest.raises(ix.ModelMismatchError, match=r"SCWM_PRECISION=fp32 was asked for.*--precision int8"):
        Retriever.load(int8_index)  # the variable is not overridden by the manifest: fp32 or a refusal
    with pytest.raises(ix.ModelMismatchError, match=r"SCWM_PRECISION=fp32 was asked for.*--precision int8"):
        ix.add_to_index(int8_index, [served["gallery"]], progress=False)


def test_index_cli_precision_reaches_the_engine(
    served: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from serving import index as ix

    base = ["--images", str(served["gallery"]), "--no-progress"]
    out = tmp_path / "idx"
    assert ix.main(["build", "--model", str(served["fp32"]), "--out", str(out), *base, "--precision", "fp32"]) == 0
    assert json.loads((out / ix.MANIFEST).read_text())["model_precision"] == "fp32"  # auto would be int8-static
    auto = tmp_path / "auto"
    assert ix.main(["build", "--model", str(served["fp32"]), "--out", str(auto), *base]) == 0
    assert json.loads((auto / ix.MANIFEST).read_text())["model_precision"] == "int8-static"
    more = tmp_path / "more"
    more.mkdir()
    Image.new("RGB", (16, 32), (10, 200, 30)).save(more / "0100_c2s1_1.png")
    add = ["add", "--index", str(out), "--model", str(served["fp32"]), "--images", str(more), "--no-progress"]
    assert ix.main([*add, "--precision", "int8"]) == 2 and "--precision fp32" in capsys.readouterr().err
    assert ix.main(add) == 0  # no --precision: the index's (fp32), although the sibling exists
    assert ix.GalleryIndex.load(out).count == 7
    add8 = ["add", "--index", str(auto), "--images", str(more), "--no-progress"]
    assert ix.main([*add8, "--precision", "fp32"]) == 2 and "--precision int8" in capsys.readouterr().err
    assert ix.main(add8) == 0 and ix.GalleryIndex.load(auto).count == 7


def test_search_cli_precision_reaches_the_engine(served: dict[str, Path], tmp_path: Path) -> None:
    from serving import index as ix
    from serving import search

    ix.build_index(served["fp32"], [served["gallery"]], tmp_path / "idx", progress=False, precision="fp32")
    query = str(next(served["gallery"].iterdir()))
    argv = ["--index", str(tmp_path / "idx"), "--model", str(served["fp32"]), "--query", query, "--json"]
    assert search.main(argv) == 0  # the index's precision, not auto's int8 sibling
    assert search.main([*argv, "--precision", "int8"]) == 2
    assert search.main([*argv, "--precision", "fp32"]) == 0


def test_app_cli_precision_reaches_the_engine(
    served: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gradio", reason="the demo app needs gradio")
    import app
    from serving import index as ix

    ix.build_index(served["fp32"], [served["gallery"]], tmp_path / "idx", progress=False, precision="fp32")
    launched = []
    monkeypatch.setattr(app, "launch", lambda demo, *a, **k: launched.append(demo.scwm_state) or "")
    argv = ["--index", str(tmp_path / "idx"), "--model", str(served["fp32"]), "--providers", "CPUExecutionProvider"]
    assert app.main(argv) == 0
    r = launched[-1].retriever
    assert r is not None and r.engine.model_path == served["fp32"] and r.engine.precision == "fp32"
    assert app.main([*argv, "--precision", "int8"]) == 0
    assert launched[-1].retriever is None and "--precision fp32" in launched[-1].error
    ix.build_index(served["fp32"], [served["gallery"]], tmp_path / "idx8", progress=False, precision="int8")
    argv8 = ["--index", str(tmp_path / "idx8"), "--model", str(served["fp32"])]
    assert app.main(argv8) == 0 and launched[-1].retriever.engine.model_path == served["int8"]
    assert app.main([*argv8, "--precision", "fp32"]) == 0
    assert launched[-1].retriever is None and "--precision int8" in launched[-1].error


def test_export_int8_static_recipe_fuses_every_conv(models: dict[str, Path], tmp_path: Path) -> None:
    from serving.quantize import make_variant

    calib = np.random.default_rng(1).standard_normal((8, 3, 16, 8)).astype(np.float32)
    out = tmp_path / "v.onnx"
    make_variant(models["fp32"], onnx.load(str(models["fp32"])), "int8-static", out, calib)
    a = analyze_graph(out)
    assert (a.activation_type, a.weight_type, a.per_channel) == ("U8", "S8", True)
    assert a.fused_convs == a.convs == 4 and a.float_convs == []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[onnx.ModelProto]]:
    """A random resnet18 checkpoint at 64x32 (as in tests/e2e/test_serving_export.py)."""
    from scwm.models import ModelSpec, save_checkpoint

    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    ckpt = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    save_checkpoint(ckpt, spec.build().eval(), spec)
    return ckpt, []


def test_export_cli_writes_the_int8_sibling_unless_told_not_to(
    checkpoint: tuple[Path, list[onnx.ModelProto]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from serving import export as ex
    from serving.engine import OnnxEngine

    ckpt, traced = checkpoint
    real = ex._export_proto

    def trace_once(*args: object) -> onnx.ModelProto:  # the graph of one checkpoint is the same every time
        if not traced:
            traced.append(real(*args))
        copy = onnx.ModelProto()
        copy.CopyFrom(traced[0])
        return copy

    monkeypatch.setattr(ex, "_export_proto", trace_once)
    default, skipped = tmp_path / "default", tmp_path / "skipped"
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(default / "model.onnx")]) == 0
    assert sorted(p.name for p in default.iterdir()) == ["model.int8-static.onnx", "model.onnx"]
    assert "int8-static" in capsys.readouterr().out
    eng = OnnxEngine(default / "model.onnx", providers=CPU)  # auto: the sibling, with the recipe metadata
    assert eng.model_path == default / "model.int8-static.onnx"
    assert json.loads(eng.metadata["scwm.quantization"]) == ex.INT8_STATIC_RECIPE
    assert eng.metadata["scwm.fp32_fingerprint"] == OnnxEngine(default / "model.onnx", precision="fp32").fingerprint
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(skipped / "model.onnx"), "--no-int8"]) == 0
    assert sorted(p.name for p in skipped.iterdir()) == ["model.onnx"]
    assert OnnxEngine(skipped / "model.onnx", providers=CPU).model_path == skipped / "model.onnx"
    with pytest.raises(SystemExit):
        ex.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--no-int8", "--int8", "static"])
    assert "--no-int8 contradicts --int8 static" in capsys.readouterr().err
    # an int8 file that fails its check: left out by default, an error when asked for
    monkeypatch.setitem(ex.TOLERANCES, "int8-static", ex.Tolerance(None, 0.5, 1.01))
    failing = tmp_path / "failing"
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(failing / "model.onnx")]) == 0
    assert sorted(p.name for p in failing.iterdir()) == ["model.onnx"]
    assert "model.int8-static.onnx was not written" in capsys.readouterr().err
    asked = tmp_path / "asked"
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(asked / "model.onnx"), "--int8", "static"]) == 1
    assert "int8-static.onnx does not match PyTorch" in capsys.readouterr().err and not any(asked.glob("*"))


def test_default_export_map_benchmark_names_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import bench_int8_default

    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(SystemExit):
        bench_int8_default.main(["--export-dir", str(tmp_path), "--checkpoint", "x.pt", "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert str(tmp_path / "model.int8-static.onnx") in err and str(tmp_path / "model.onnx,") not in err
