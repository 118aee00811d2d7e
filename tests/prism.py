"""Stoplight Prism serving Twilio's own OpenAPI description on 127.0.0.1, for contract tests.

`prism mock --errors <spec>` checks each request against the spec: a request that breaks it
(a required field missing, a pattern or format not matched, a wrong content type) gets a 4xx
problem+json answer (422 for the body or path, 401 without Basic auth, 415 for another content
type) whose `validation` list names each violation; a request that keeps to it gets the spec's
example answer (201 with a fixed Message, not an echo of the request). Prism reports lesser
findings (warnings) in an `sl-violations` header. `--errors` also turns violations of the mock's
own answers into errors.

Use the `prism` fixture in a test file by importing it (`from tests.prism import prism`, with
`# noqa: F401` there and `# noqa: F811` where a test or fixture takes it as a parameter). It
skips with the reason when node, the installed Prism (`make contract-tools`) or the spec is
missing, and fails instead when ICSSI_CI is set: in CI the contract test must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response

from tests.net import free_port

ROOT = Path(__file__).resolve().parent.parent
# Beside the project, as in CI: ../shared/peers (read from there, never copied in).
SPEC_PATH = ROOT.parent / "shared" / "peers" / "twilio_api_v2010.json"
TOOLS = ROOT / "tests" / "contract"
PRISM_CLI = TOOLS / "node_modules" / "@stoplight" / "prism-cli"
PRISM_BIN = TOOLS / "node_modules" / ".bin" / "prism"
# Prism needs no real credentials, only Basic auth and an AccountSid of the spec's pattern.
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "contract-test-token"
START_TIMEOUT = 180.0


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason`, or fail with it when ICSSI_CI is set."""
    if os.environ.get("ICSSI_CI"):
        pytest.fail(f"{reason}; ICSSI_CI is set, so this test must run", pytrace=False)
    pytest.skip(reason)


def _version(text: str) -> tuple[int, ...]:
    """The numbers of a version such as v20.20.2 or >=18.20.1."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _node() -> str:
    """The node executable, checked against the version the installed Prism needs."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the Prism contract tests need Node.js")
    if not (PRISM_CLI / "package.json").is_file() or not PRISM_BIN.exists():
        unavailable(f"Prism is not installed in {TOOLS}: run `make contract-tools` (npm ci)")
    if not SPEC_PATH.is_file():
        unavailable(f"Twilio's OpenAPI description is not at {SPEC_PATH}")
    package = json.loads((PRISM_CLI / "package.json").read_text(encoding="utf-8"))
    needed = str(package.get("engines", {}).get("node", ""))
    found = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    if needed and _version(found.stdout) < _version(needed):
        version = found.stdout.strip()
        unavailable(f"Prism {package['version']} needs node {needed}, found {version}")
    return node


def served_spec(target: Path) -> Path:
    """Twilio's spec as Prism must read it, written to `target`.

    OpenAPI 3.0 encodes an array property of a form body as repeated keys (`MediaUrl=a&
    MediaUrl=b`: style form, explode true) when the spec declares no encoding, as Twilio's does
    not; Prism 5.14 applies only declared encodings and calls one MediaUrl "not an array"
    (stoplightio/prism#2473). So each such property gets that default written out, and nothing
    else changes. Prism still keeps only the last of repeated keys: the other URLs go unchecked.
    """
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    for item in spec["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("application/x-www-form-urlencoded")
            if not form:
                continue
            properties = form.get("schema", {}).get("properties", {})
            encoding = form.setdefault("encoding", {})
            for name, schema in properties.items():
                if schema.get("type") == "array" and name not in encoding:
                    encoding[name] = {"style": "form", "explode": True}
    target.write_text(json.dumps(spec), encoding="utf-8")
    return target


@dataclass(frozen=True)
class Prism:
    """A running Prism mock of Twilio's REST API: where it listens and how long it took."""

    base_url: str
    startup_seconds: float
    log: Path

    @property
    def account_sid(self) -> str:
        """An AccountSid Prism accepts."""
        return ACCOUNT_SID

    @property
    def auth_token(self) -> str:
        """A token for Basic auth (Prism checks only that there is one)."""
        return AUTH_TOKEN

    def log_tail(self, lines: int = 20) -> str:
        """The end of Prism's log, for failure messages."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Prism (the process this fixture started)."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    """Prism serving Twilio's spec on 127.0.0.1, once per session (it loads in seconds)."""
    node = _node()
    folder = tmp_path_factory.mktemp("prism")
    spec = served_spec(folder / "twilio_api_v2010.json")
    log = folder / "prism.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [node, str(PRISM_BIN.resolve()), "mock", "-h", "127.0.0.1", "-p", str(port)]
    started = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--errors", str(spec)], cwd=TOOLS, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"Prism exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                # Any answer (404 for /) means Prism has loaded the spec and listens.
                httpx.get(base_url, timeout=2, trust_env=False)
                break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > START_TIMEOUT:
                pytest.fail(f"Prism did not answer within {START_TIMEOUT} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield Prism(base_url, time.monotonic() - started, log)
    finally:
        _stop(process)


def violations(status: int, headers: Mapping[str, str], text: str) -> list[str]:
    """What Prism found wrong with a request: its 4xx problem+json, or its sl-violations header.

    Each as "location: message", e.g. "body: Request body must have required property 'To'".
    """
    found: list[dict[str, Any]] = []
    header = next((v for k, v in headers.items() if k.lower() == "sl-violations"), None)
    if header:
        found.extend(json.loads(header))
    if status >= 400:
        try:
            problem = json.loads(text)
        except ValueError:
            problem = {}
        if isinstance(problem, dict):
            found.extend(problem.get("validation") or [])
            if not problem.get("validation"):
                found.append({"location": [], "message": problem.get("title") or text})
    return [
        f"{'.'.join(str(part) for part in item.get('location', []))}: {item.get('message')}"
        for item in found
    ]


class RecordingHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # untyped base
    """The twilio client's own async HTTP client, keeping every response it got."""

    def __init__(self) -> None:
        """An HTTP client with an empty record."""
        super().__init__()
        self.responses: list[Response] = []

    async def request(self, *args: Any, **kwargs: Any) -> Response:
        """Send as the library does, and keep the response."""
        response = await super().request(*args, **kwargs)
        self.responses.append(response)
        return response

    def last_violations(self) -> list[str]:
        """Prism's findings on the last request sent."""
        last = self.responses[-1]
        return violations(last.status_code, dict(last.headers or {}), last.text)
