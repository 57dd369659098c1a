"""Local models served in process by ONNX Runtime, with bounded concurrency.

Sessions run on a small thread pool (ONNX Runtime releases the GIL while it computes), and each
deployment also has its own semaphore, so a slow model cannot take every thread. Compute time is
measured around ``session.run`` and metered in whole milliseconds, rounded up.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from creditgate.errors import InvalidInput, UpstreamError
from creditgate.gateway.deployments import Deployment

THREADS_MAX: Final = 4
ITEMS_MAX: Final = 10_000
ELEMENTS_MAX: Final = 1_000_000
SESSIONS_MAX: Final = 64
_DTYPES: Final = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
                  "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(string)": "object",
                  "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


@dataclass(frozen=True, slots=True)
class Prediction:
    outputs: dict[str, Any]
    items: int
    compute_ms: int
    compute_us: int


class LocalModels:
    def __init__(self, load_bytes: Callable[[str], bytes], *, threads: int = 2) -> None:
        assert 1 <= threads <= THREADS_MAX
        self._load_bytes = load_bytes
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="creditgate-onnx")
        self._sessions: dict[tuple[str, str | None], Any] = {}
        # Per deployment: (updated_at_us, concurrency_max) of the version that made the semaphore.
        self._slots: dict[str, tuple[int, int, asyncio.Semaphore]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def predict(self, deployment: Deployment, inputs: Any) -> Prediction:
        session = await self._session(deployment)
        feeds, items = _feeds(session, inputs)
        async with self._slot(deployment):
            run: Awaitable[tuple[list[Any], int]] = asyncio.get_running_loop().run_in_executor(
                self._pool, _timed_run, session, feeds)
            try:
                values, elapsed_ns = await asyncio.wait_for(run, deployment.timeout_ms / 1000)
            except TimeoutError:
                raise UpstreamError(f"the local model {deployment.name} took longer than "
                                    f"{deployment.timeout_ms / 1000:g} s") from None
            except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own types for bad shapes
                raise InvalidInput(f"the model refused the inputs: {error}", param="inputs") from None
        names = [output.name for output in session.get_outputs()]
        # Made JSON-safe here, before the pipeline settles: an answer that failed to serialise
        # after the charge was posted would bill the client for a 500.
        outputs = {name: _json_safe(value, name) for name, value in zip(names, values, strict=True)}
        compute_us = max(1, elapsed_ns // 1000)
        return Prediction(outputs=outputs, items=items, compute_ms=max(1, math.ceil(elapsed_ns / 1e6)),
                          compute_us=compute_us)

    def _slot(self, deployment: Deployment) -> asyncio.Semaphore:
        """The deployment's semaphore, made anew when its concurrency_max changed: requests in
        flight release the one they took, so until they end both limits count (as for upstream
        deployments, see Upstreams.slot). A request that read the deployment before the change
        (an older snapshot) takes the newer semaphore instead of bringing the old limit back."""
        known = self._slots.get(deployment.id)
        if known is None or (known[1] != deployment.concurrency_max and deployment.updated_at_us >= known[0]):
            known = (deployment.updated_at_us, deployment.concurrency_max,
                     asyncio.Semaphore(deployment.concurrency_max))
            self._slots[deployment.id] = known
        return known[2]

    async def _session(self, deployment: Deployment) -> Any:
        key = (deployment.id, deployment.model_sha256)
        session = self._sessions.get(key)
        if session is None:
            session = await asyncio.to_thread(self._open, deployment, key)
        return session

    def _open(self, deployment: Deployment, key: tuple[str, str | None]) -> Any:
        import onnxruntime

        with self._lock:
            if key in self._sessions:
                return self._sessions[key]
            options = onnxruntime.SessionOptions()
            # Parallelism comes from the pool; one thread per run keeps runs from fighting.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            try:
                session = onnxruntime.InferenceSession(self._load_bytes(deployment.id), options,
                                                       providers=["CPUExecutionProvider"])
            except Exception as error:  # noqa: BLE001 - ONNX Runtime's own types for a bad file
                raise UpstreamError(f"the model of {deployment.name} could not be loaded: {error}") from None
            if len(self._sessions) >= SESSIONS_MAX:
                self._sessions.clear()
            self._sessions[key] = session
            return session


def check_model(model_bytes: bytes, param: str) -> None:
    """Refuse, before it is stored, a file that ONNX Runtime cannot load: a deployment that
    would fail every prediction is better refused at upload, naming the field."""
    try:
        import onnxruntime
    except ImportError:
        raise InvalidInput("local models need ONNX Runtime on the server: install creditgate[onnx]",
                           param=param) from None
    try:
        onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - ONNX Runtime's own types for a bad file
        raise InvalidInput(f"{param} is not a model ONNX Runtime can load: {str(error)[:300]}",
                           param=param) from None


def _timed_run(session: Any, feeds: dict[str, Any]) -> tuple[list[Any], int]:
    started = time.perf_counter_ns()
    values = session.run(None, feeds)
    return values, time.perf_counter_ns() - started


def _feeds(session: Any, inputs: Any) -> tuple[dict[str, Any], int]:
    """JSON inputs to arrays: ``{"X": [[...]]}``, or a bare list for a single-input model."""
    import numpy

    declared = session.get_inputs()
    if isinstance(inputs, list) and len(declared) == 1:
        inputs = {declared[0].name: inputs}
    if not isinstance(inputs, dict):
        raise InvalidInput("inputs must be an object of input name to nested lists", param="inputs")
    feeds: dict[str, Any] = {}
    items = 0
    for spec in declared:
        if spec.name not in inputs:
            raise InvalidInput(f"missing input {spec.name!r}", param=f"inputs.{spec.name}")
        try:
            # errstate: a cast that overflows (1e300 to float32, 1e30 to int64) raises instead of
            # warning and going on with infinity or garbage.
            with numpy.errstate(over="raise", invalid="raise"):  # (underflow to 0 is fine)
                array = numpy.asarray(inputs[spec.name], dtype=_DTYPES.get(spec.type, "float32"))
            written = numpy.asarray(inputs[spec.name])  # the values as the client wrote them
        except (TypeError, ValueError, OverflowError, FloatingPointError) as error:
            # NumPy 2 raises OverflowError for a number out of range of an integer input (300 for
            # uint8, -1 for an unsigned type, 2**63 for int64): the client's mistake, not ours.
            raise InvalidInput(f"input {spec.name!r}: {error}", param=f"inputs.{spec.name}") from None
        # A cast would change what the client asked silently: 1.5 to an integer input becomes 1.
        if array.dtype.kind in "iu" and written.dtype.kind == "f" and not numpy.array_equal(array, written):
            raise InvalidInput(f"input {spec.name!r} takes integers", param=f"inputs.{spec.name}")
        if array.size > ELEMENTS_MAX:
            raise InvalidInput(f"input {spec.name!r} has more than {ELEMENTS_MAX} values",
                               param=f"inputs.{spec.name}")
        feeds[spec.name] = array
        items = max(items, int(array.shape[0]) if array.ndim else 1)
    if items > ITEMS_MAX:
        raise InvalidInput(f"at most {ITEMS_MAX} items per request", param="inputs")
    return feeds, max(items, 1)


def _json_safe(value: Any, name: str) -> Any:
    """One model output as plain JSON values: lists, str-keyed dicts, ints, floats, str, bool.

    ONNX Runtime answers tensors as arrays, but sequences as lists (of arrays, or of dicts for
    maps, such as a scikit-learn classifier's ZipMap output ``[{0: 0.98, 1: 0.02}]`` with int64
    keys), none of which orjson writes. A value that cannot be JSON at all is the model's fault.
    """
    import numpy

    if isinstance(value, numpy.ndarray):
        if value.dtype.kind in "biuf":
            return value.tolist()  # already Python ints, floats and bools, at C speed
        return _json_safe(value.tolist(), name)  # string tensors are object arrays: check each
    if isinstance(value, numpy.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {_json_key(key, name): _json_safe(item, name) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, name) for item in value]
    raise UpstreamError(f"the output {name!r} of the model holds a {type(value).__name__}, "
                        "which cannot be answered as JSON")


def _json_key(key: Any, name: str) -> str:
    import numpy

    if isinstance(key, numpy.generic):
        key = key.item()
    if isinstance(key, (str, int)) and not isinstance(key, bool):
        return str(key)  # ONNX map keys are strings or integers; JSON keys are strings
    raise UpstreamError(f"the output {name!r} of the model has a map key of type {type(key).__name__}, "
                        "which cannot be answered as JSON")
