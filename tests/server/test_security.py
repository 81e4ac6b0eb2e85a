"""The API key: 401 without it or with a wrong one, health and the page open, and no serving off loopback without it."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cxrseg.cli import main
from cxrseg.data.synthetic import phantom
from cxrseg.errors import CxrsegError
from cxrseg.server import app as server_app
from cxrseg.server.app import ServerSettings, create_app, is_loopback

KEY = "correct-horse-battery-staple"
SEGMENT, HEALTH, MODELS = "/api/v1/segment", "/api/v1/health", "/api/v1/models"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(phantom("COVID-19", 128, np.random.default_rng(0))[0]).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def keyed(pipeline) -> Iterator[TestClient]:
    with TestClient(create_app(ServerSettings(api_key=KEY), pipeline=pipeline)) as client:
        yield client


# -- the key on the API --------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {},
    bearer("wrong"),
    bearer(KEY[:-1]),
    bearer(KEY + "x"),
    bearer(""),
    {"Authorization": KEY},  # no scheme
    {"Authorization": f"Basic {KEY}"},  # another scheme
    {"X-API-Key": KEY},  # another header
], ids=["none", "wrong", "prefix", "longer", "empty", "no-scheme", "basic", "other-header"])
def test_api_calls_without_the_right_key_get_401_json(keyed, headers):
    for response in (keyed.get(MODELS, headers=headers),
                     keyed.post(SEGMENT, files={"file": ("x.png", png(), "image/png")}, headers=headers)):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert ("wrong API key" if headers.get("Authorization") else "API key") in response.json()["detail"]


def test_the_right_key_opens_the_api(keyed, pipeline):
    assert keyed.get(MODELS, headers=bearer(KEY)).json()["lung"]["stage"] == "lung"
    r = keyed.post(SEGMENT, files={"file": ("x.png", png(), "image/png")}, headers=bearer(KEY))
    assert r.status_code == 200, r.text
    assert r.json()["figures"]["file"] == "x.png"
    # The scheme's case does not matter (RFC 9110); the key's does.
    assert keyed.get(MODELS, headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    assert keyed.get(MODELS, headers=bearer(KEY.upper())).status_code == 401


def test_health_page_and_docs_stay_open(keyed):
    health = keyed.get(HEALTH)
    assert health.status_code == 200 and health.json()["auth_required"] is True
    for path in ("/", "/static/app.js", "/docs", "/openapi.json", "/docs-assets/swagger-ui-bundle.js"):
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/api/v1/nothing-here").status_code == 401  # unknown API paths do not reveal themselves


def test_without_a_key_on_loopback_nothing_is_asked(pipeline):
    with TestClient(create_app(ServerSettings(), pipeline=pipeline)) as client:
        assert client.get(HEALTH).json()["auth_required"] is False
        assert client.get(MODELS).status_code == 200
        assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(keyed):
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(64):  # 4 MB; the TestClient would read all of it at the app's first receive()
            sent += 65536
            yield b"\0" * 65536

    r = keyed.post(SEGMENT, content=endless(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 401
    assert sent == 0  # not one chunk of the file was asked for
    r = keyed.post(SEGMENT, content=b"", headers={"content-length": "2000000000"})
    assert r.status_code == 401  # the key comes before the size limit: nothing is said to a stranger


def test_openapi_declares_the_bearer_key_for_docs(keyed):
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "the server's API key"}
    paths = schema["paths"]
    assert paths[SEGMENT]["post"]["security"] == [{"apiKey": []}]
    assert paths[MODELS]["get"]["security"] == [{"apiKey": []}]
    assert "401" in paths[SEGMENT]["post"]["responses"]
    assert "security" not in paths[HEALTH]["get"]


# -- no serving off loopback without a key -----------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org", ""])
def test_settings_refuse_a_non_loopback_host_without_a_key(host):
    with pytest.raises(CxrsegError, match="without an API key.*CXRSEG_API_KEY"):
        ServerSettings(host=host).check()
    ServerSettings(host=host, api_key=KEY).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_needs_no_key(host):
    assert is_loopback(host)
    ServerSettings(host=host).check()


@pytest.mark.parametrize("key", ["with space", " padded", "ключ", "tab\tkey", ""])
def test_a_key_that_cannot_travel_in_a_header_is_refused(key):
    with pytest.raises(CxrsegError, match="API key"):
        ServerSettings(api_key=key).check()


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cxrseg", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_serve_on_all_interfaces_without_a_key_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.delenv("CXRSEG_API_KEY", raising=False)

    def no_models(settings):
        raise AssertionError("models were loaded before the settings were checked")

    monkeypatch.setattr(server_app, "load_pipeline", no_models)
    code, out, err = run_main(monkeypatch, capsys, "serve", "--host", "0.0.0.0")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: refusing to serve on 0.0.0.0 without an API key"), err
    assert "--api-key" in lines[0] and "CXRSEG_API_KEY" in lines[0]
    assert "Traceback" not in out + err


@pytest.mark.parametrize("how", ["option", "environment"])
def test_serve_with_a_key_starts_and_the_key_guards_the_api(monkeypatch, capsys, pipeline, how):
    import uvicorn

    started = {}
    monkeypatch.setattr(server_app, "load_pipeline", lambda settings: pipeline)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    monkeypatch.delenv("CXRSEG_API_KEY", raising=False)
    args = ["serve", "--host", "0.0.0.0", "--port", "8123", "--upload-timeout", "7"]
    if how == "option":
        args += ["--api-key", KEY]
    else:
        monkeypatch.setenv("CXRSEG_API_KEY", KEY)
    code, _, err = run_main(monkeypatch, capsys, *args)  # returns at once: uvicorn.run is the stub
    assert code == 0, err
    assert KEY not in err  # the key is never echoed
    assert started["host"] == "0.0.0.0" and started["port"] == 8123
    assert started["timeout_keep_alive"] > 0  # idle keep-alive connections are closed
    app = started["app"]
    assert app.state.settings.api_key == KEY and app.state.settings.upload_timeout_s == 7
    with TestClient(app) as client:
        assert client.get(MODELS).status_code == 401
        assert client.get(MODELS, headers=bearer(KEY)).status_code == 200
