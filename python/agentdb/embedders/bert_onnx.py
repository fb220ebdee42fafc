"""A BERT sentence encoder as an ONNX graph, built from ``model.safetensors`` without PyTorch.

The weights of a sentence-transformers BERT model (all-MiniLM-L6-v2 and its kin) are read with
numpy (:func:`read_safetensors`: the format is an 8-byte header length, a JSON header and raw
little-endian tensors), and :func:`build_encoder` writes an ONNX graph with ``onnx.helper`` that
maps ``input_ids`` / ``attention_mask`` (int64, ``[batch, seq]``) to mean-pooled, L2-normalised
sentence vectors (``[batch, hidden]``), the same computation as sentence-transformers'
``Transformer -> Pooling(mean) -> Normalize``. onnxruntime then runs it (and can quantize it).

>>> import numpy as np
>>> hdr = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
>>> import io, struct
>>> buf = io.BytesIO(struct.pack("<Q", len(hdr)) + hdr + np.float32([1, 2]).tobytes())
>>> read_safetensors(buf)["w"].tolist()
[1.0, 2.0]
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["BertConfig", "build_encoder", "read_safetensors"]

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "F64": np.float64,
           "I64": np.int64, "I32": np.int32, "I8": np.int8, "U8": np.uint8}
_MAX_HEADER = 100 << 20


def read_safetensors(source: str | Path | IO[bytes]) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a numpy array (bf16 is widened to float32).

    A malformed file raises :class:`~agentdb.errors.InvalidArgumentError` naming the problem.
    See the module docstring for an example.
    """
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return read_safetensors(f)
    head = source.read(8)
    if len(head) != 8:
        raise InvalidArgumentError("not a safetensors file: shorter than its 8-byte header")
    (n,) = struct.unpack("<Q", head)
    if not 2 <= n <= _MAX_HEADER:
        raise InvalidArgumentError(f"not a safetensors file: header length {n}")
    try:
        header = json.loads(source.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgumentError(f"not a safetensors file: bad JSON header ({exc})") from None
    data = source.read()
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = spec["dtype"], [int(s) for s in spec["shape"]]
            start, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InvalidArgumentError(f"safetensors entry {name!r} is malformed") from None
        if dtype not in _DTYPES or not 0 <= start <= end <= len(data):
            raise InvalidArgumentError(f"safetensors entry {name!r}: dtype {dtype!r} or "
                                       f"offsets {start}..{end} unsupported")
        raw = data[start:end]
        if dtype == "BF16":  # the upper half of a float32
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
        if arr.size != math.prod(shape):
            raise InvalidArgumentError(f"safetensors entry {name!r}: {arr.size} values for "
                                       f"shape {shape}")
        out[name] = arr.reshape(shape)
    return out


class BertConfig:
    """The shape of a BERT encoder, read from its ``config.json``.

    >>> BertConfig({"hidden_size": 384, "num_attention_heads": 12, "num_hidden_layers": 6}).head_dim
    32
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        try:
            self.hidden = int(raw["hidden_size"])
            self.heads = int(raw["num_attention_heads"])
            self.layers = int(raw["num_hidden_layers"])
        except (KeyError, TypeError, ValueError):
            raise InvalidArgumentError("config.json lacks hidden_size / num_attention_heads / "
                                       "num_hidden_layers") from None
        self.eps = float(raw.get("layer_norm_eps", 1e-12))
        self.act = str(raw.get("hidden_act", "gelu"))
        if self.hidden % self.heads:
            raise InvalidArgumentError(f"hidden_size {self.hidden} is not a multiple of "
                                       f"num_attention_heads {self.heads}")
        if self.act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
            raise InvalidArgumentError(f"unsupported hidden_act {self.act!r}")
        self.head_dim = self.hidden // self.heads

    @classmethod
    def from_file(cls, path: str | Path) -> BertConfig:
        """Read ``config.json``."""
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))


def _weights(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strip a ``bert.`` / ``model.`` prefix so names start at ``embeddings.`` / ``encoder.``."""
    out = {}
    for name, arr in tensors.items():
        for prefix in ("bert.", "model.", "0.auto_model."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = arr
    return out


def build_encoder(tensors: dict[str, np.ndarray], config: BertConfig, *,
                  opset: int = 17) -> Any:
    """The sentence encoder as an ``onnx.ModelProto`` (needs the ``onnx`` package).

    Inputs ``input_ids`` and ``attention_mask`` (int64 ``[batch, seq]``); output ``embedding``
    (float32 ``[batch, hidden]``, mean-pooled over the mask and L2-normalised).

    >>> import numpy as np
    >>> cfg = BertConfig({"hidden_size": 4, "num_attention_heads": 2, "num_hidden_layers": 0})
    >>> w = {"embeddings.word_embeddings.weight": np.eye(5, 4, dtype=np.float32),
    ...      "embeddings.position_embeddings.weight": np.zeros((8, 4), np.float32),
    ...      "embeddings.token_type_embeddings.weight": np.zeros((2, 4), np.float32),
    ...      "embeddings.LayerNorm.weight": np.ones(4, np.float32),
    ...      "embeddings.LayerNorm.bias": np.zeros(4, np.float32)}
    >>> build_encoder(w, cfg).graph.output[0].name
    'embedding'
    """
    from onnx import TensorProto, helper, numpy_helper

    w = _weights(tensors)
    nodes: list[Any] = []
    inits: list[Any] = []
    count = [0]

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def weight(name: str, transpose: bool = False) -> str:
        if name not in w:
            raise InvalidArgumentError(f"the weights lack tensor {name!r}")
        arr = w[name].astype(np.float32)
        return const(name, arr.T if transpose else arr)

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        count[0] += 1
        out = f"{op.lower()}_{count[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, weight(f"{prefix}.weight"),
                                           weight(f"{prefix}.bias")], axis=-1,
                    epsilon=config.eps)

    def linear(x: str, prefix: str) -> str:
        return node("Add", [node("MatMul", [x, weight(f"{prefix}.weight", True)]),
                            weight(f"{prefix}.bias")])

    h, heads, hd = config.hidden, config.heads, config.head_dim
    one = const("one_i64", np.array([1], np.int64))

    # embeddings: word + position + token type 0, then LayerNorm
    word = node("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
    seq = node("Shape", ["input_ids"], start=1, end=2)  # [seq], 1-D
    pos = node("Slice", [weight("embeddings.position_embeddings.weight"),
                         const("zero_i64", np.array([0], np.int64)), seq,
                         const("axis0", np.array([0], np.int64))])
    token_type = const("token_type_0",
                       w["embeddings.token_type_embeddings.weight"][0].astype(np.float32)
                       if "embeddings.token_type_embeddings.weight" in w
                       else np.zeros(h, np.float32))
    x = layer_norm(node("Add", [node("Add", [word, pos]), token_type]), "embeddings.LayerNorm")

    # attention bias: 0 where attended, a large negative number on padding: [batch, 1, 1, seq]
    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("one_f", np.array(1.0, np.float32)), maskf]),
                        const("neg_big", np.array(-1e4, np.float32))])
    bias = node("Unsqueeze", [bias, const("axes12", np.array([1, 2], np.int64))])
    split_shape = const("split_heads", np.array([0, 0, heads, hd], np.int64))
    merge_shape = const("merge_heads", np.array([0, 0, h], np.int64))
    scale = const("attn_scale", np.array(1.0 / math.sqrt(hd), np.float32))
    sqrt2 = const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    half = const("half", np.array(0.5, np.float32))
    one_f = "one_f"

    for i in range(config.layers):
        p = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.query"),
                                                split_shape])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.key"),
                                                split_shape])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.value"),
                                                split_shape])], perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(node("Add", [linear(ctx, f"{p}.attention.output.dense"), x]),
                       f"{p}.attention.output.LayerNorm")
        inner = linear(x, f"{p}.intermediate.dense")
        gelu = node("Mul", [node("Mul", [inner, half]),
                            node("Add", [node("Erf", [node("Div", [inner, sqrt2])]), one_f])])
        x = layer_norm(node("Add", [linear(gelu, f"{p}.output.dense"), x]),
                       f"{p}.output.LayerNorm")

    # mean pooling over the mask, then L2 normalisation
    m3 = node("Unsqueeze", [maskf, const("axis2", np.array([2], np.int64))])
    summed = node("ReduceSum", [node("Mul", [x, m3]), one], keepdims=0)
    counts = node("Max", [node("ReduceSum", [m3, one], keepdims=0),
                          const("tiny_count", np.array(1e-9, np.float32))])
    pooled = node("Div", [summed, counts])
    norm = node("Max", [node("Sqrt", [node("ReduceSum", [node("Mul", [pooled, pooled]),
                                                         one], keepdims=1)]),
                        const("tiny_norm", np.array(1e-12, np.float32))])
    nodes.append(helper.make_node("Div", [pooled, norm], ["embedding"], name="normalize"))

    graph = helper.make_graph(
        nodes, "agentdb_sentence_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", h])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="agentdb")
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime >= 1.17
    return model
