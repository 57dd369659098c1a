"""Deploy the demo ONNX model through the API and predict through the gateway."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
from tests.e2e.gateway.conftest import Stack
from tests.support.servers import serve

from creditgate.gateway.demo_model import DEMO_INPUT, demo_model_bytes
from creditgate.gateway.deployments import MODEL_BYTES_MAX
from creditgate.ledger.credits import format_amount, parse_amount

ONNX_PRICES = {"requests": "0.001", "items": "0.0001", "compute_ms": "0.01", "per": 1}


def test_upload_multipart_then_predict_charges_measured_compute(stack: Stack) -> None:
    model = demo_model_bytes()
    response = stack.admin.post("/api/v1/deployments", files={"file": ("iris.onnx", model)},
                                data={"name": "iris", "backend": "onnx", "timeout_s": "1", "prices": '{"requests": "0.001", '
                                      '"items": "0.0001", "compute_ms": "0.01", "per": 1}'})
    assert response.status_code == 201, response.text
    assert response.json()["backend"] == "onnx" and response.json()["kind"] == "predict"
    # The hold covers the whole timeout of compute (1 s = 10 credits); the charge is what ran.
    org_id, _, secret = stack.org_with_key("ml", "50")
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}) as client:
        answer = client.post("/v1/predict/iris", json={"inputs": {"X": DEMO_INPUT}})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["outputs"]["label"] == [0, 2]
        usage = body["usage"]
        assert usage["items"] == 2 and usage["compute_ms"] >= 1
        expected = (parse_amount("0.001") + 2 * parse_amount("0.0001")
                    + usage["compute_ms"] * parse_amount("0.01"))
        assert answer.headers["x-creditgate-cost"] == format_amount(expected)
        balance = stack.services.ledger.balance(org_id)
        assert balance.available == parse_amount("50") - expected and balance.pending == 0
        [row] = stack.usage_rows()
        assert row["meters"] == {"requests": 1, "items": 2, "compute_ms": usage["compute_ms"]}
        bad = client.post("/v1/predict/iris", json={"inputs": {"X": [["not", "numbers"]]}})
        assert bad.status_code == 422
        assert stack.services.ledger.balance(org_id).pending == 0


def test_upload_base64_json(stack: Stack) -> None:
    encoded = base64.b64encode(demo_model_bytes()).decode()
    response = stack.admin.post("/api/v1/deployments", json={
        "name": "iris-b64", "backend": "onnx", "model_base64": encoded, "prices": ONNX_PRICES, "timeout_s": 1})
    assert response.status_code == 201, response.text
    _, _, secret = stack.org_with_key("ml", "50")
    answer = httpx.post(f"{stack.url}/v1/predict/iris-b64", json={"inputs": DEMO_INPUT},
                        headers={"authorization": f"Bearer {secret}"})
    assert answer.status_code == 200 and answer.json()["outputs"]["label"] == [0, 2]
    # 1e300 does not fit the model's float32 input: a 422, not a prediction on infinity.
    too_big = httpx.post(f"{stack.url}/v1/predict/iris-b64", json={"inputs": [[1e300, 1.0, 1.0, 1.0]]},
                         headers={"authorization": f"Bearer {secret}"})
    assert too_big.status_code == 422 and too_big.json()["error"]["param"] == "inputs.X", too_big.text


def test_deployment_management(stack: Stack, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cryptography.fernet import Fernet

    monkeypatch.setenv("CREDITGATE_SECRET_KEY", Fernet.generate_key().decode())
    created = stack.deploy(name="mock-gpt", api_key="sk-upstream-secret")
    assert "api_key" not in created and created["has_stored_api_key"] is True
    assert "sk-upstream-secret" not in stack.admin.get("/api/v1/deployments").text
    updated = stack.admin.patch("/api/v1/deployments/mock-gpt", json={"concurrency_max": 3})
    assert updated.status_code == 200 and updated.json()["concurrency_max"] == 3
    # The stored key is not sent to a new host unless it is given again.
    base_url = created["base_url"]
    moved = stack.admin.patch("/api/v1/deployments/mock-gpt", json={"base_url": "http://198.51.100.7/v1"})
    assert moved.status_code == 422 and moved.json()["error"]["param"] == "api_key", moved.text
    assert stack.admin.get("/api/v1/deployments/mock-gpt").json()["base_url"] == base_url
    same = stack.admin.patch("/api/v1/deployments/mock-gpt", json={"base_url": base_url + "/"})
    assert same.status_code == 200, same.text
    rekeyed = stack.admin.patch("/api/v1/deployments/mock-gpt", json={
        "base_url": "http://198.51.100.7/v1", "api_key": "sk-other"})
    assert rekeyed.status_code == 200 and rekeyed.json()["has_stored_api_key"] is True
    dropped = stack.admin.patch("/api/v1/deployments/mock-gpt", json={"base_url": base_url, "api_key": None})
    assert dropped.status_code == 200 and dropped.json()["has_stored_api_key"] is False
    assert stack.admin.get(f"/api/v1/deployments/{created['id']}").json()["name"] == "mock-gpt"
    assert stack.admin.post("/api/v1/deployments", json={"name": "x", "backend": "openai"}).status_code == 422
    assert stack.admin.post("/api/v1/deployments", json={
        "name": "mock-gpt", "backend": "openai", "base_url": "http://127.0.0.1:1/v1",
        "prices": {"input_tokens": "1"}}).status_code == 409
    assert stack.admin.delete("/api/v1/deployments/mock-gpt").status_code == 200
    assert stack.admin.get("/api/v1/deployments/mock-gpt").status_code == 404
    _, _, secret = stack.org_with_key("acme", "1")
    org_key = httpx.get(f"{stack.url}/api/v1/deployments", headers={"authorization": f"Bearer {secret}"})
    assert org_key.status_code == 403


# ---------------------------------------------------------------- models built in the test


def onnx_model_bytes(nodes: list[Any], inputs: list[Any], outputs: list[Any]) -> bytes:
    """A model built in the test with onnx's helper API: nothing to train or download."""
    from onnx import checker, helper

    graph = helper.make_graph(nodes, "test", inputs, outputs)
    # IR 8 / opset 17: what the bundled ONNX Runtime reads, whatever onnx's own default is.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def integer_model_bytes() -> bytes:
    """X (uint8) and N (int64) come back unchanged."""
    from onnx import TensorProto, helper

    return onnx_model_bytes(
        [helper.make_node("Identity", ["X"], ["X_out"]), helper.make_node("Identity", ["N"], ["N_out"])],
        [helper.make_tensor_value_info("X", TensorProto.UINT8, [None, 2]),
         helper.make_tensor_value_info("N", TensorProto.INT64, [None, 1])],
        [helper.make_tensor_value_info("X_out", TensorProto.UINT8, [None, 2]),
         helper.make_tensor_value_info("N_out", TensorProto.INT64, [None, 1])])


def sequence_model_bytes() -> bytes:
    """F (float) comes back split into a sequence of one-row tensors, which ONNX Runtime answers
    as a Python list of arrays rather than as one array."""
    from onnx import TensorProto, helper

    return onnx_model_bytes(
        [helper.make_node("SplitToSequence", ["F"], ["rows"])],
        [helper.make_tensor_value_info("F", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_sequence_value_info("rows", TensorProto.FLOAT, None)])


def zipmap_classifier_bytes() -> bytes:
    """The demo's iris classifier with skl2onnx's defaults: ZipMap on, so probabilities come out as
    a list of dicts keyed by the int64 class labels (the demo turns ZipMap off)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    return bytes(to_onnx(model, features[:1].astype("float32"), target_opset=17).SerializeToString())


def upload(stack: Stack, name: str, model: bytes) -> None:
    response = stack.admin.post("/api/v1/deployments", files={"file": (f"{name}.onnx", model)},
                                data={"name": name, "backend": "onnx", "timeout_s": "1",
                                      "prices": orjson.dumps(ONNX_PRICES).decode()})
    assert response.status_code == 201, response.text


def test_out_of_range_integer_inputs_are_422_and_charge_nothing(stack: Stack) -> None:
    upload(stack, "ints", integer_model_bytes())
    org_id, _, secret = stack.org_with_key("ml", "50")
    good = {"X": [[1, 255]], "N": [[-(2**63)]]}
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}) as client:
        answer = client.post("/v1/predict/ints", json={"inputs": good})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]["X_out"] == [[1, 255]]
        assert answer.json()["outputs"]["N_out"] == [[-(2**63)]]
        after_good = stack.services.ledger.balance(org_id).available
        assert after_good == parse_amount("50") - parse_amount(answer.headers["x-creditgate-cost"])
        # 300 and -1 do not fit uint8; 2**63 does not fit int64; 10**30 arrives as a float (orjson)
        # that does not fit int64 either. NumPy 2 raises OverflowError for each.
        for param, bad in [("inputs.X", {"X": [[300, 1]]}), ("inputs.X", {"X": [[-1, 1]]}),
                           ("inputs.N", {"N": [[2**63]]}), ("inputs.N", {"N": [[10**30]]}),
                           ("inputs.X", {"X": [[1.5, 1]]})]:  # not cut silently to 1
            refused = client.post("/v1/predict/ints", json={"inputs": {**good, **bad}})
            assert refused.status_code == 422, (bad, refused.text)
            error = refused.json()["error"]
            assert error["param"] == param and error["code"] == "invalid_input", error
            balance = stack.services.ledger.balance(org_id)
            assert balance.available == after_good and balance.pending == 0


def test_sequence_outputs_come_back_as_nested_lists(stack: Stack) -> None:
    upload(stack, "rows", sequence_model_bytes())
    org_id, _, secret = stack.org_with_key("ml", "50")
    answer = httpx.post(f"{stack.url}/v1/predict/rows", json={"inputs": {"F": [[0.5, 1.5], [2.5, 3.5]]}},
                        headers={"authorization": f"Bearer {secret}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"]["rows"] == [[[0.5, 1.5]], [[2.5, 3.5]]]
    cost = parse_amount(answer.headers["x-creditgate-cost"])
    assert cost > 0
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("50") - cost and balance.pending == 0


def test_zipmap_classifier_answers_probabilities_keyed_by_label(stack: Stack) -> None:
    upload(stack, "iris-zipmap", zipmap_classifier_bytes())
    org_id, _, secret = stack.org_with_key("ml", "50")
    answer = httpx.post(f"{stack.url}/v1/predict/iris-zipmap", json={"inputs": {"X": DEMO_INPUT}},
                        headers={"authorization": f"Bearer {secret}"})
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert outputs["output_label"] == [0, 2]
    probabilities = outputs["output_probability"]
    assert [sorted(row) for row in probabilities] == [["0", "1", "2"], ["0", "1", "2"]]
    assert max(probabilities[0], key=probabilities[0].get) == "0"
    assert max(probabilities[1], key=probabilities[1].get) == "2"
    cost = parse_amount(answer.headers["x-creditgate-cost"])
    usage = answer.json()["usage"]
    assert cost == (parse_amount("0.001") + 2 * parse_amount("0.0001")
                    + usage["compute_ms"] * parse_amount("0.01"))
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("50") - cost and balance.pending == 0
    [row] = stack.usage_rows()
    assert row["meters"] == {"requests": 1, "items": 2, "compute_ms": usage["compute_ms"]}


# ---------------------------------------------------------------- malformed uploads


def assert_refused(response: httpx.Response, param: str | None) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert set(error) >= {"type", "message", "param", "code"} and error["param"] == param, error


def assert_nothing_deployed(stack: Stack) -> None:
    assert stack.services.extras["gateway"].deployments.list() == []
    assert stack.admin.get("/api/v1/deployments").json()["data"] == []


FIELDS = {"name": "iris", "backend": "onnx", "timeout_s": "1"}


def test_malformed_multipart_upload_is_4xx_naming_the_part(stack: Stack) -> None:
    model = demo_model_bytes()
    post = stack.admin.post
    # No boundary in the content type: the body cannot be split into parts at all.
    assert_refused(post("/api/v1/deployments", content=b"--x\r\n\r\n--x--\r\n",
                        headers={"content-type": "multipart/form-data"}), None)
    # Parts Starlette refuses to parse: too many files, too many fields.
    assert_refused(post("/api/v1/deployments", data=FIELDS,
                        files=[("file", ("a.onnx", model)), ("file", ("b.onnx", model)),
                               ("file", ("c.onnx", model))]), "file")
    assert_refused(post("/api/v1/deployments", files={"file": ("iris.onnx", model)},
                        data={**FIELDS, **{f"tag{number}": "x" for number in range(60)}}), "deployment")
    # Parsed, but wrong: two models, a stray file, and the model as a text field.
    assert_refused(post("/api/v1/deployments", data=FIELDS,
                        files=[("file", ("a.onnx", model)), ("file", ("b.onnx", model))]), "file")
    assert_refused(post("/api/v1/deployments", data=FIELDS,
                        files=[("file", ("a.onnx", model)), ("weights", ("b.bin", b"x"))]), "weights")
    # (httpx sends fields alone url-encoded, so this multipart body is written by hand.)
    text_file = (b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\niris\r\n'
                 b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\niris.onnx\r\n--b--\r\n')
    assert_refused(post("/api/v1/deployments", content=text_file,
                        headers={"content-type": "multipart/form-data; boundary=b"}), "file")
    # The deployment part: not JSON, not an object, or a file instead of a text field.
    for part in ["{not json", '["iris", "onnx"]', "42"]:
        assert_refused(post("/api/v1/deployments", files={"file": ("iris.onnx", model)},
                            data={"deployment": part}), "deployment")
    assert_refused(post("/api/v1/deployments", files=[
        ("file", ("iris.onnx", model)), ("deployment", ("deployment.json", orjson.dumps(FIELDS)))]),
        "deployment")
    assert_nothing_deployed(stack)
    # The same fields, well formed, are accepted.
    accepted = post("/api/v1/deployments", files={"file": ("iris.onnx", model)},
                    data={"deployment": orjson.dumps({"name": "iris", "backend": "onnx", "timeout_s": 1,
                                                       "prices": ONNX_PRICES}).decode()})
    assert accepted.status_code == 201, accepted.text


def test_oversized_text_part_is_4xx_naming_the_deployment(stack: Stack) -> None:
    # On the standalone gateway app no body cap runs before the route, so Starlette's own per-part
    # limit is what refuses it (the full server caps uploads near the model size as well).
    from creditgate.gateway.routes import create_gateway_app

    too_long = b"x" * (MODEL_BYTES_MAX + 1)
    with serve(create_gateway_app(stack.services)) as url, \
            httpx.Client(base_url=url, headers=stack.admin.headers, timeout=60) as admin:
        response = admin.post("/api/v1/deployments", files={"file": ("iris.onnx", demo_model_bytes())},
                              data={**FIELDS, "description": too_long})
    assert_refused(response, "deployment")
    assert_nothing_deployed(stack)


def test_a_file_onnx_runtime_cannot_load_is_refused_at_upload_and_the_old_model_keeps_serving(
        stack: Stack) -> None:
    not_a_model = b"\x08\x07 this is not an ONNX graph" * 100
    encoded = base64.b64encode(not_a_model).decode()
    assert_refused(stack.admin.post("/api/v1/deployments", json={
        "name": "iris", "backend": "onnx", "model_base64": encoded, "prices": ONNX_PRICES, "timeout_s": 1}),
        "model_base64")
    assert_refused(stack.admin.post("/api/v1/deployments", files={"file": ("iris.onnx", not_a_model)},
                                    data={**FIELDS, "prices": orjson.dumps(ONNX_PRICES).decode()}), "file")
    assert_nothing_deployed(stack)

    created = stack.admin.post("/api/v1/deployments", json={
        "name": "iris", "backend": "onnx", "model_base64": base64.b64encode(demo_model_bytes()).decode(),
        "prices": ONNX_PRICES, "timeout_s": 1})
    assert created.status_code == 201, created.text
    assert_refused(stack.admin.patch("/api/v1/deployments/iris", json={"model_base64": encoded}), "model_base64")
    assert stack.admin.get("/api/v1/deployments/iris").json()["model_sha256"] == created.json()["model_sha256"]
    _, _, secret = stack.org_with_key("ml", "50")
    answer = httpx.post(f"{stack.url}/v1/predict/iris", json={"inputs": DEMO_INPUT},
                        headers={"authorization": f"Bearer {secret}"})
    assert answer.status_code == 200 and answer.json()["outputs"]["label"] == [0, 2]
