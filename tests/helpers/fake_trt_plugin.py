"""A stand-in for ``tensorrt`` and ``tensorrt.plugin`` (QDP) that checks what TensorRT checks.

Written for vmaedet's tests from TensorRT's documented behaviour and a reading of the
``tensorrt.plugin`` package of TensorRT 10.x/11.x (``_validate.py``, ``_lib.py``, ``_plugin_class.py``,
``_utils.py``, ``_tensor.py``, ``_top_level.py``) and of onnx-tensorrt's plugin importer; no code is
copied.  What it reproduces:

* decorators (``register``, ``impl``, ``autotune``, ``aot_impl``) validate the decorated function with
  ``inspect.signature`` and ``issubclass(annotation, TensorDesc/Tensor)`` on the *annotation
  objects*: string annotations (``from __future__ import annotations``) fail as in TensorRT, with
  ``TypeError: issubclass() arg 1 must be a class``;
* attribute annotations must be ``int/float/bytes/bool/str`` or ``numpy.typing.NDArray[dtype]`` of a
  serialisable dtype; tensors first, then attributes; no defaults; reserved names refused; the
  return annotations (``TensorDesc``/``Tuple[TensorDesc]``, ``List[AutoTuneCombination]``,
  ``Tuple[str|bytes, str|bytes, KernelLaunchParams, SymExprs]``, ``None``) and the exact argument
  schemas (``…, outputs, stream[, tactic]`` / ``…, outputs`` / ``…, outputs, tactic``);
* how attributes reach the plugin: the ONNX parser turns a FLOAT node attribute into a 1-element
  FLOAT32 field and an INT into a 1-element INT32 field, in the order of the creator's field names
  (= registration order); the creator converts a built-in annotation with ``annotation(field.data)``
  (``int(array([7]))``, a ``TypeError`` on NumPy ≥ 2.4) and an ``NDArray`` one with ``astype``;
* how TensorRT calls the functions: ``register`` with keyword attributes, ``autotune``/``impl`` with
  the attributes they name, ``aot_impl`` with *all* attributes positionally in field order, and
  the type checks TensorRT applies to what ``aot_impl`` returns.

Symbolic shapes are small expression trees that :meth:`SymIntExpr.evaluate` resolves against
concrete dimensions, so tests can check launch parameters for given shapes.
"""

from __future__ import annotations

import builtins
import enum
import importlib.machinery
import inspect
import sys
import types
import typing
from typing import Any, Callable

import numpy as np

# ---------------------------------------------------------------------------------------------
# tensorrt (the few names the plugin module uses)
# ---------------------------------------------------------------------------------------------


class DataType(enum.Enum):
    FLOAT = "FP32"
    HALF = "FP16"
    INT32 = "INT32"
    INT64 = "INT64"
    BF16 = "BF16"
    INT8 = "INT8"


class PluginFieldType(enum.Enum):
    FLOAT16 = np.float16
    FLOAT32 = np.float32
    FLOAT64 = np.float64
    INT8 = np.int8
    INT16 = np.int16
    INT32 = np.int32
    INT64 = np.int64
    CHAR = np.uint8
    UNKNOWN = np.uint8


class PluginField:
    """``name``, ``data`` (always a 1-D NumPy array, as the bindings expose it), ``type``."""

    def __init__(self, name: str, data: Any = None, type: PluginFieldType = PluginFieldType.UNKNOWN) -> None:  # noqa: A002
        self.name = name
        self.type = type
        if isinstance(data, (bytes, bytearray)):
            self.data = np.frombuffer(bytes(data), dtype=np.uint8).copy()
        else:
            self.data = np.asarray(data if data is not None else [], dtype=type.value).reshape(-1)


class PluginFieldCollection(list):
    pass


_NP_FIELD_TYPES = {np.dtype(np.int8): PluginFieldType.INT8, np.dtype(np.int16): PluginFieldType.INT16,
                   np.dtype(np.int32): PluginFieldType.INT32, np.dtype(np.int64): PluginFieldType.INT64,
                   np.dtype(np.float16): PluginFieldType.FLOAT16, np.dtype(np.float32): PluginFieldType.FLOAT32,
                   np.dtype(np.float64): PluginFieldType.FLOAT64, np.dtype(np.bool_): PluginFieldType.INT8}
_BUILTIN_FIELD_TYPES = {int: PluginFieldType.INT64, float: PluginFieldType.FLOAT64, bool: PluginFieldType.INT8}


def make_tensorrt_module() -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-fake"
    trt.__path__ = []  # a package, so "import tensorrt.plugin" resolves through sys.modules
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None, is_package=True)  # find_spec() works
    trt.DataType = DataType
    trt.float32 = DataType.FLOAT
    trt.float16 = DataType.HALF
    trt.int32 = DataType.INT32
    trt.int64 = DataType.INT64
    trt.bfloat16 = DataType.BF16
    trt.PluginField = PluginField
    trt.PluginFieldType = PluginFieldType
    trt.PluginFieldCollection = PluginFieldCollection
    return trt


# ---------------------------------------------------------------------------------------------
# tensorrt.plugin: symbolic expressions, descriptors, launch parameters
# ---------------------------------------------------------------------------------------------


class SymExpr:
    """Base of symbolic expressions."""


class SymIntExpr(SymExpr):
    """A tree: ``("const", v)``, ``("dim", name)`` or ``(op, left, right)``; :meth:`evaluate` resolves it."""

    def __init__(self, value: Any = None) -> None:
        if isinstance(value, SymIntExpr):
            self._node = value._node
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            self._node = ("const", int(value))
        elif value is None:
            self._node = ("fake",)
        else:
            raise ValueError(f"{type(self).__name__} takes an int or a symbolic expression, got {type(value).__name__}")

    @classmethod
    def dim(cls, name: str) -> "SymIntExpr":
        e = cls()
        e._node = ("dim", name)
        return e

    def _op(self, op: str, other: Any) -> "SymIntExpr":
        if not isinstance(other, SymIntExpr):
            other = SymIntExpr(other)
        e = type(self)() if isinstance(self, ShapeExpr) else SymIntExpr()
        e._node = (op, self._node, other._node)
        return e

    def __add__(self, other: Any) -> "SymIntExpr":
        return self._op("+", other)

    def __sub__(self, other: Any) -> "SymIntExpr":
        return self._op("-", other)

    def __mul__(self, other: Any) -> "SymIntExpr":
        return self._op("*", other)

    def __floordiv__(self, other: Any) -> "SymIntExpr":
        return self._op("//", other)

    def __bool__(self) -> bool:
        raise RuntimeError("Cannot evaluate symbolic expression as boolean")

    def __index__(self) -> int:
        raise TypeError("a symbolic expression is not an int (TensorRT resolves it at run time)")

    def evaluate(self, dims: dict[str, int]) -> int:
        def ev(node: tuple) -> int:
            kind = node[0]
            if kind == "const":
                return node[1]
            if kind == "dim":
                return int(dims[node[1]])
            if kind == "fake":
                raise ValueError("a fake (shape-less) expression has no value")
            a, b = ev(node[1]), ev(node[2])
            return {"+": a + b, "-": a - b, "*": a * b, "//": a // b, "cdiv": -(-a // b),
                    "max": builtins.max(a, b), "min": builtins.min(a, b)}[kind]
        return ev(self._node)


class SymInt32(SymIntExpr):
    pass


class ShapeExpr(SymInt32):
    pass


class SymExprs:
    def __init__(self, length: int) -> None:
        self._exprs: list[Any] = [None] * length

    @classmethod
    def from_tuple(cls, exprs: Any) -> "SymExprs":
        items = [e if isinstance(e, SymExpr) else SymInt32(e) for e in exprs]
        inst = cls(len(items))
        inst._exprs = items
        return inst

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._exprs)

    def __getitem__(self, i: int) -> Any:
        return self._exprs[i]

    def __len__(self) -> int:
        return len(self._exprs)


class ShapeExprs(SymExprs):
    @classmethod
    def from_tuple(cls, exprs: Any) -> "ShapeExprs":
        items = [e if isinstance(e, ShapeExpr) else ShapeExpr(e) for e in exprs]
        inst = cls(len(items))
        inst._exprs = items
        return inst


class SymIntExprs(SymExprs):
    @classmethod
    def from_tuple(cls, exprs: Any) -> "SymIntExprs":
        items = [e if isinstance(e, SymIntExpr) else SymIntExpr(e) for e in exprs]
        inst = cls(len(items))
        inst._exprs = items
        return inst


def cdiv(first: Any, second: Any) -> ShapeExpr:
    if isinstance(first, int) and isinstance(second, int):
        raise ValueError("Both arguments cannot be 'int's")
    return (first if isinstance(first, SymIntExpr) else ShapeExpr(first))._op("cdiv", second)  # type: ignore[return-value]


def max(first: Any, second: Any) -> ShapeExpr:  # noqa: A001 - tensorrt.plugin.max
    if isinstance(first, int) and isinstance(second, int):
        raise ValueError("Both arguments cannot be 'int's")
    return (first if isinstance(first, SymIntExpr) else ShapeExpr(first))._op("max", second)  # type: ignore[return-value]


def min(first: Any, second: Any) -> ShapeExpr:  # noqa: A001 - tensorrt.plugin.min
    if isinstance(first, int) and isinstance(second, int):
        raise ValueError("Both arguments cannot be 'int's")
    return (first if isinstance(first, SymIntExpr) else ShapeExpr(first))._op("min", second)  # type: ignore[return-value]


class TensorDesc:
    def __init__(self, shape_expr: ShapeExprs | None = None, dtype: DataType | None = None) -> None:
        self.shape_expr = shape_expr
        self.dtype = dtype
        self.format = "LINEAR"

    @property
    def ndim(self) -> int:
        return len(self.shape_expr)  # type: ignore[arg-type]

    def like(self) -> "TensorDesc":
        return TensorDesc(self.shape_expr, self.dtype)


class Tensor:
    """What ``impl`` receives; tests give it a concrete NumPy array in ``array``."""

    def __init__(self, array: np.ndarray | None = None, dtype: DataType | None = None) -> None:
        self.array = array
        self.dtype = dtype
        self.shape = tuple(array.shape) if array is not None else ()
        self.data_ptr = 0


def from_shape_expr(shape_expr: Any, dtype: DataType) -> TensorDesc:
    exprs = ShapeExprs.from_tuple(shape_expr) if isinstance(shape_expr, tuple) else shape_expr
    if not isinstance(exprs, ShapeExprs):
        raise ValueError(f"from_shape_expr takes a tuple or ShapeExprs, got {type(shape_expr).__name__}")
    return TensorDesc(exprs, dtype)


class KernelLaunchParams:
    _FIELDS = ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "shared_mem")

    def __init__(self) -> None:
        for name in self._FIELDS:
            self.__dict__[name] = SymInt32(0 if name == "shared_mem" else 1)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._FIELDS:
            raise AttributeError(f"KernelLaunchParams object has no attribute '{name}'")
        self.__dict__[name] = SymInt32(value)  # ints and symbolic expressions only, as in TensorRT


class AutoTuneCombination:
    """``"FP32|FP16, FP32"``: one comma-separated entry per input/output position."""

    _TYPES = {"FP32", "FP16", "BF16", "INT8", "INT32", "INT64", "BOOL", "FP8", "INT4", "UINT8"}

    def __init__(self, io_types: str | None = None, layouts: str | None = None, tactics: list[int] | None = None) -> None:
        self.positions: list[set[str]] = []
        if io_types is not None:
            for entry in io_types.split(","):
                types_ = {t.strip() for t in entry.split("|")}
                unknown = types_ - self._TYPES
                if unknown:
                    raise ValueError(f"Unknown data type string(s) {sorted(unknown)} in {io_types!r}")
                self.positions.append(types_)
        self.tactics = tactics


# ---------------------------------------------------------------------------------------------
# validation (TensorRT's rules, re-implemented)
# ---------------------------------------------------------------------------------------------

_SERIALISABLE_BUILTINS = (int, float, bytes, bool, str)
_SERIALISABLE_NP = (np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, bool, np.bool_)
_RESERVED_NAMESPACES = {"", "trt", "tensorrt", "std"}
_RESERVED_ATTR_NAMES = {"outputs", "stream", "tactic"}
_EMPTY = inspect.Parameter.empty


def _is_ndarray_annotation(ann: Any) -> bool:
    return ann is np.ndarray or typing.get_origin(ann) is np.ndarray


def _ndarray_dtype(ann: Any) -> Any:
    args = typing.get_args(ann)
    if len(args) >= 2 and typing.get_args(args[1]):
        return typing.get_args(args[1])[0]
    raise AttributeError("Annotate numpy array attributes using 'numpy.typing.NDArray[dtype]'")


class PluginDef:
    def __init__(self, plugin_id: str) -> None:
        self.plugin_id = plugin_id
        self.register_func: Callable | None = None
        self.input_tensor_names: list[str] = []
        self.input_attrs: dict[str, Any] = {}
        self.num_outputs = 0
        self.impl_func: Callable | None = None
        self.impl_attr_names: list[str] = []
        self.expects_tactic = False
        self.autotune_func: Callable | None = None
        self.autotune_attr_names: list[str] = []
        self.aot_impl_func: Callable | None = None
        self.aot_impl_attr_names: list[str] = []


QDP_REGISTRY: dict[str, PluginDef] = {}


def _parse_register(func: Callable, lazy: bool) -> tuple[list[str], dict[str, Any]]:
    sig = inspect.signature(func)
    tensors: list[str] = []
    attrs: dict[str, Any] = {}
    for idx, (name, p) in enumerate(sig.parameters.items()):
        if p.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            raise ValueError(f"Argument {name} is not a positional-or-keyword or keyword-only arg")
        if p.annotation is _EMPTY:
            raise ValueError(f"Argument {name} does not have a type annotation")
        if p.default is not _EMPTY:
            raise ValueError(f"Argument {name} has a default value. Default values are not supported yet.")
        if issubclass(p.annotation, TensorDesc):  # a string annotation raises TypeError here, as in TensorRT
            if attrs:
                raise ValueError(f"TensorDescs args and attribute args cannot be interspersed: {sig}")
            tensors.append(name)
            continue
        if idx == 0:
            raise ValueError(f"TensorDescs args should come first, followed by attributes: {sig}")
        if name in _RESERVED_ATTR_NAMES:
            raise ValueError(f"'{name}' is not allowed as a plugin attribute name.")
        ann = p.annotation
        if ann not in _SERIALISABLE_BUILTINS:
            if not _is_ndarray_annotation(ann):
                raise ValueError(f"Attribute '{name}' of type {ann} is not a supported serializable type.")
            if not lazy:
                if ann is np.ndarray:
                    raise ValueError("annotate numpy array attributes using 'numpy.typing.NDArray[dtype]'")
                if _ndarray_dtype(ann) not in _SERIALISABLE_NP:
                    raise ValueError(f"Attribute '{name}' is not a supported numpy array type.")
        attrs[name] = ann
    return tensors, attrs


def _parse_register_return(func: Callable) -> int:
    ret = inspect.signature(func).return_annotation
    if ret is _EMPTY:
        raise ValueError("No return annotation found for register function.")
    if typing.get_origin(ret) is tuple:
        args = typing.get_args(ret)
        for a in args:
            if not issubclass(a, TensorDesc):
                raise ValueError(f"Return types can only be TensorDesc or Tuple[TensorDesc]; got {ret}")
        return len(args)
    if not inspect.isclass(ret) or not issubclass(ret, TensorDesc):
        raise ValueError(f"Return types can only be TensorDesc or Tuple[TensorDesc]; got {ret}")
    return 1


def _check_outputs_annotation(ann: Any, cls: type, what: str) -> None:
    if typing.get_origin(ann) is not tuple:
        raise ValueError(f"'outputs' should be of type Tuple[{cls.__name__}]. Received {ann}.")
    for a in typing.get_args(ann):
        if not issubclass(a, cls):
            raise ValueError(f"'outputs' of the {what} function should be a Tuple[{cls.__name__}], got {ann}")


def _check_params(func: Callable, pdef: PluginDef, tensor_cls: type, what: str,
                  extra: dict[str, Callable[[Any], None]]) -> list[str]:
    """Shared rules of impl/autotune/aot_impl: optional annotations, checked when present."""
    sig = inspect.signature(func)
    attr_names: list[str] = []
    for name, p in sig.parameters.items():
        ann = p.annotation
        if ann is _EMPTY:
            if name in pdef.input_attrs:
                attr_names.append(name)
            continue
        if name in extra:
            extra[name](ann)
        elif issubclass(ann, tensor_cls):  # a string annotation raises TypeError here
            if name not in pdef.input_tensor_names:
                raise ValueError(f"Unexpected tensor '{name}' in the {what} function; expected one of {pdef.input_tensor_names}")
        else:
            if name not in pdef.input_attrs:
                raise ValueError(f"Unexpected attribute '{name}' in the {what} function; expected one of {list(pdef.input_attrs)}")
            if ann != pdef.input_attrs[name]:
                raise ValueError(f"Attribute '{name}' has a type annotation different from the one at registration "
                                 f"({ann} != {pdef.input_attrs[name]})")
            attr_names.append(name)
    return attr_names


def _expect_schema(func: Callable, pdef: PluginDef, attr_names: list[str], tail: str, what: str) -> None:
    names = list(inspect.signature(func).parameters)
    chosen = [n for n in pdef.input_attrs if n in attr_names]  # registration order
    expected = "(" + ", ".join([*pdef.input_tensor_names, *chosen]) + tail + ")"
    got = "(" + ", ".join(names) + ")"
    if got != expected:
        raise ValueError(f"Signature of the {what} function {got} does not match the expected schema {expected}")


def _int_annotation(name: str) -> Callable[[Any], None]:
    def check(ann: Any) -> None:
        if not issubclass(ann, int):
            raise ValueError(f"'{name}' input argument should be an int")
    return check


def _validate_impl(func: Callable, pdef: PluginDef) -> tuple[list[str], bool]:
    names = inspect.signature(func).parameters
    tactic = "tactic" in names
    attr_names = _check_params(func, pdef, Tensor, "impl", {
        "outputs": lambda a: _check_outputs_annotation(a, Tensor, "impl"),
        "stream": _int_annotation("stream"), "tactic": _int_annotation("tactic")})
    _expect_schema(func, pdef, attr_names, ", outputs, stream" + (", tactic" if tactic else ""), "impl")
    ret = inspect.signature(func).return_annotation
    if ret is not _EMPTY and ret is not None:
        raise ValueError("Return annotation should be None.")
    return attr_names, tactic


def _validate_autotune(func: Callable, pdef: PluginDef) -> list[str]:
    attr_names = _check_params(func, pdef, TensorDesc, "autotune", {
        "outputs": lambda a: _check_outputs_annotation(a, TensorDesc, "autotune")})
    _expect_schema(func, pdef, attr_names, ", outputs", "autotune")
    ret = inspect.signature(func).return_annotation
    if ret is not _EMPTY:
        if typing.get_origin(ret) is list:
            for a in typing.get_args(ret):
                if not issubclass(a, AutoTuneCombination):
                    raise ValueError(f"Return types can only be AutoTuneCombination or List[AutoTuneCombination]; got {ret}")
        elif not inspect.isclass(ret) or not issubclass(ret, AutoTuneCombination):
            raise ValueError(f"Return types can only be AutoTuneCombination or List[AutoTuneCombination]; got {ret}")
    return attr_names


def _is_str_or_bytes(ann: Any) -> bool:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return all(a is str or a is bytes for a in typing.get_args(ann))
    return ann is str or ann is bytes


def _validate_aot_impl(func: Callable, pdef: PluginDef) -> list[str]:
    attr_names = _check_params(func, pdef, TensorDesc, "aot_impl", {
        "outputs": lambda a: _check_outputs_annotation(a, TensorDesc, "aot_impl"),
        "tactic": _int_annotation("tactic")})
    _expect_schema(func, pdef, attr_names, ", outputs, tactic", "aot_impl")
    ret = inspect.signature(func).return_annotation
    if ret is _EMPTY:
        raise ValueError("No return annotation found for aot_impl function.")
    args = typing.get_args(ret)
    if typing.get_origin(ret) is not tuple or len(args) != 4:
        raise ValueError(f"Return annotation is {ret}; expected Tuple[str|bytes, str|bytes, KernelLaunchParams, SymExprs]")
    for i in (0, 1):
        if not _is_str_or_bytes(args[i]):
            raise ValueError(f"Return annotation at {i} is {args[i]}; expected str or bytes")
    if not issubclass(args[2], KernelLaunchParams):
        raise ValueError(f"Return annotation at 2 is {args[2]}; expected KernelLaunchParams")
    if not issubclass(args[3], SymExprs):
        raise ValueError(f"Return annotation at 3 is {args[3]}; expected a SymExprs")
    return attr_names


# ---------------------------------------------------------------------------------------------
# decorators
# ---------------------------------------------------------------------------------------------


def register(plugin_id: str, lazy_register: bool = False) -> Callable:
    def decorator(func: Callable) -> Callable:
        ns, name = plugin_id.split("::")
        if "." in ns or "." in name:
            raise ValueError(f"namespace and name cannot contain '.': {plugin_id}")
        if ns in _RESERVED_NAMESPACES:
            raise ValueError(f"Provided namespace {ns} is a reserved namespace")
        if plugin_id in QDP_REGISTRY:
            raise ValueError(f"already has a definition for '{name}'")
        tensors, attrs = _parse_register(func, lazy_register)
        pdef = PluginDef(plugin_id)
        pdef.register_func, pdef.input_tensor_names, pdef.input_attrs = func, tensors, attrs
        pdef.num_outputs = _parse_register_return(func)
        QDP_REGISTRY[plugin_id] = pdef
        return func
    return decorator


def _registered(plugin_id: str) -> PluginDef:
    if plugin_id not in QDP_REGISTRY:
        raise ValueError(f"Plugin {plugin_id} is not registered. Did you register it with tensorrt.plugin.register API?")
    return QDP_REGISTRY[plugin_id]


def impl(plugin_id: str) -> Callable:
    def decorator(func: Callable) -> Callable:
        pdef = _registered(plugin_id)
        pdef.impl_attr_names, pdef.expects_tactic = _validate_impl(func, pdef)
        pdef.impl_func = func
        return func
    return decorator


def autotune(plugin_id: str) -> Callable:
    def decorator(func: Callable) -> Callable:
        pdef = _registered(plugin_id)
        pdef.autotune_attr_names = _validate_autotune(func, pdef)
        pdef.autotune_func = func
        return func
    return decorator


def aot_impl(plugin_id: str) -> Callable:
    def decorator(func: Callable) -> Callable:
        pdef = _registered(plugin_id)
        pdef.aot_impl_attr_names = _validate_aot_impl(func, pdef)
        pdef.aot_impl_func = func
        return func
    return decorator


# ---------------------------------------------------------------------------------------------
# what TensorRT does with a registered plugin (simulated)
# ---------------------------------------------------------------------------------------------


def creator_field_types(plugin_id: str) -> dict[str, PluginFieldType]:
    """The creator's field names and types, in registration order (what the ONNX parser iterates)."""
    out = {}
    for name, ann in _registered(plugin_id).input_attrs.items():
        if _is_ndarray_annotation(ann):
            out[name] = _NP_FIELD_TYPES[np.dtype(_ndarray_dtype(ann))]
        elif ann in (str, bytes):
            out[name] = PluginFieldType.CHAR if ann is str else PluginFieldType.UNKNOWN
        else:
            out[name] = _BUILTIN_FIELD_TYPES[ann]
    return out


def onnx_node_fields(plugin_id: str, node_attrs: dict[str, Any]) -> list[PluginField]:
    """onnx-tensorrt's plugin importer: one field per creator field name found among the node's
    attributes, FLOAT → 1-element FLOAT32, INT → 1-element INT32 (other attributes ignored)."""
    fields = []
    for name in creator_field_types(plugin_id):
        if name not in node_attrs:
            continue
        value = node_attrs[name]
        if isinstance(value, float):
            fields.append(PluginField(name, np.array([value], dtype=np.float32), PluginFieldType.FLOAT32))
        elif isinstance(value, (int, np.integer)):
            fields.append(PluginField(name, np.array([value], dtype=np.int32), PluginFieldType.INT32))
        elif isinstance(value, (str, bytes)):
            fields.append(PluginField(name, value.encode() if isinstance(value, str) else value, PluginFieldType.CHAR))
        else:
            raise ValueError(f"unsupported ONNX attribute type for plugin field {name}: {type(value).__name__}")
    return fields


def create_plugin_attrs(plugin_id: str, fields: list[PluginField]) -> dict[str, Any]:
    """The creator's conversion of fields into the values passed to the decorated functions."""
    pdef = _registered(plugin_id)
    attrs: dict[str, Any] = {}
    for f in fields:
        if f.name not in pdef.input_attrs:
            raise AssertionError(f"Unexpected attribute {f.name} provided to create_plugin")
        ann = pdef.input_attrs[f.name]
        if _is_ndarray_annotation(ann):
            dtype = _ndarray_dtype(ann)
            attrs[f.name] = (np.frombuffer(f.data.tobytes(), dtype=np.float16) if dtype == np.float16
                             else f.data.astype(dtype))
        elif issubclass(ann, str):
            attrs[f.name] = f.data.tobytes().decode("utf-8")
        else:
            attrs[f.name] = ann(f.data)  # int(array([7])): TypeError on NumPy >= 2.4, as in TensorRT
    return attrs


def serialize_fields(plugin_id: str, attrs: dict[str, Any]) -> list[PluginField]:
    """What a JIT plugin writes into the engine (the attributes ``impl`` names), to be re-created on load."""
    pdef = _registered(plugin_id)
    fields = []
    for key, value in attrs.items():
        if key not in pdef.impl_attr_names:
            continue
        if isinstance(value, np.ndarray):
            fields.append(PluginField(key, value, _NP_FIELD_TYPES[np.dtype(value.dtype)]))
        elif isinstance(value, str):
            fields.append(PluginField(key, value.encode(), PluginFieldType.CHAR))
        elif isinstance(value, bytes):
            fields.append(PluginField(key, value, PluginFieldType.UNKNOWN))
        else:
            fields.append(PluginField(key, np.array([value]), _BUILTIN_FIELD_TYPES[type(value)]))
    return fields


def call_register(plugin_id: str, inputs: list[TensorDesc], attrs: dict[str, Any]) -> tuple[TensorDesc, ...]:
    out = _registered(plugin_id).register_func(*inputs, **attrs)  # type: ignore[misc]
    return out if isinstance(out, tuple) else (out,)


def call_autotune(plugin_id: str, inputs: list[TensorDesc], attrs: dict[str, Any],
                  outputs: tuple[TensorDesc, ...]) -> list[AutoTuneCombination]:
    pdef = _registered(plugin_id)
    combos = pdef.autotune_func(*inputs, *[attrs[k] for k in pdef.autotune_attr_names], outputs)  # type: ignore[misc]
    combos = combos if isinstance(combos, list) else [combos]
    n_io = len(inputs) + len(outputs)
    for c in combos:
        if c.positions and len(c.positions) != n_io:
            raise ValueError(f"AutoTuneCombination has {len(c.positions)} positions for {n_io} inputs/outputs")
    return combos


def call_impl(plugin_id: str, inputs: list[Tensor], attrs: dict[str, Any], outputs: list[Tensor],
              stream: int = 0, tactic: int = 0) -> None:
    pdef = _registered(plugin_id)
    vals = [attrs[k] for k in pdef.impl_attr_names]
    if pdef.expects_tactic:
        pdef.impl_func(*inputs, *vals, outputs, stream, tactic)  # type: ignore[misc]
    else:
        pdef.impl_func(*inputs, *vals, outputs, stream=stream)  # type: ignore[misc]


def call_aot_impl(plugin_id: str, inputs: list[TensorDesc], attrs: dict[str, Any],
                  outputs: tuple[TensorDesc, ...], tactic: int = 0) -> tuple[Any, Any, KernelLaunchParams, SymExprs]:
    """TensorRT passes *all* attributes positionally (field order), then outputs and the tactic,
    and checks the types of what comes back."""
    pdef = _registered(plugin_id)
    name, code, params, extra = pdef.aot_impl_func(*inputs, *attrs.values(), outputs, tactic)  # type: ignore[misc]
    if not isinstance(name, (str, bytes)):
        raise TypeError(f"Kernel name must be a 'str' or 'bytes'. Got: {type(name)}.")
    if not isinstance(code, (str, bytes)):
        raise TypeError(f"PTX/CUBIN must be a 'str' or 'bytes'. Got: {type(code)}.")
    if not isinstance(params, KernelLaunchParams):
        raise TypeError(f"Launch params must be a 'tensorrt.plugin.KernelLaunchParams'. Got: {type(params)}.")
    if not isinstance(extra, SymExprs):
        raise TypeError(f"Extra args must be a 'tensorrt.plugin.SymIntExprs'. Got: {type(extra)}.")
    for arg in extra:
        if not isinstance(arg, SymInt32):
            raise TypeError(f"Extra args must be 'tensorrt.plugin.SymInt32'. Got: {type(arg)}.")
    return name, code, params, extra


def make_plugin_module(trt: types.ModuleType) -> types.ModuleType:
    mod = types.ModuleType("tensorrt.plugin")
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt.plugin", None)
    names = ["SymExpr", "SymIntExpr", "SymInt32", "ShapeExpr", "SymExprs", "ShapeExprs", "SymIntExprs", "TensorDesc",
             "Tensor", "KernelLaunchParams", "AutoTuneCombination", "from_shape_expr", "cdiv", "max", "min",
             "register", "impl", "autotune", "aot_impl"]
    this = sys.modules[__name__]
    for n in names:
        setattr(mod, n, getattr(this, n))
    mod.QDP_REGISTRY = QDP_REGISTRY
    return mod


def install(monkeypatch: Any) -> tuple[types.ModuleType, types.ModuleType]:
    """Put the stand-ins in ``sys.modules`` (``tensorrt``, ``tensorrt.plugin``) with an empty registry."""
    QDP_REGISTRY.clear()
    trt = make_tensorrt_module()
    trtp = make_plugin_module(trt)
    trt.plugin = trtp
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    return trt, trtp
