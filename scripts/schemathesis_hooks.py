"""Schemathesis hooks for scripts/schemathesis.sh: the few rules of the server that the
OpenAPI document cannot state (JSON Schema has no "an OpenSSH key that decodes", "ids unique
within a list", "low <= high in a CPU list"; utoipa's derive cannot emit "a GPU resource needs
gpu_specs"), and JSON Schema's `integer` admits `519.0`, which the server's integer fields
(serde's u32) refuse. Generated bodies are brought within them, so positive data stays positive."""

import base64
from datetime import datetime, timedelta, timezone
import os
import re

import schemathesis

_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")


def _relay_key() -> str:
    # A fresh ed25519 key per case: a key another miner holds is answered 409.
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)
    return "ssh-ed25519 " + base64.b64encode(blob).decode() + " schemathesis"


def _cpu_list(value: str) -> str:
    parts = []
    for part in value.split(","):
        m = _RANGE.match(part)
        if m and int(m.group(1)) > int(m.group(2)):
            part = f"{m.group(2)}-{m.group(1)}"
        parts.append(part)
    return ",".join(parts)


def _resources(resources: list) -> None:
    seen = set()
    for i, r in enumerate(resources):
        if not isinstance(r, dict):
            continue
        rid = r.get("id")
        if isinstance(rid, str):
            while rid in seen:
                rid = f"{rid[:120]}-{i}"
            seen.add(rid)
            r["id"] = rid
        kind = r.get("resource_type")
        if isinstance(kind, str) and kind.upper() == "GPU" and not isinstance(r.get("gpu_specs"), dict):
            r["gpu_specs"] = {"gpu_name": "schemathesis GPU"}
        cpu = r.get("cpu_specs")
        if isinstance(cpu, dict) and isinstance(cpu.get("online_cpus"), str):
            cpu["online_cpus"] = _cpu_list(cpu["online_cpus"])


def _integers(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integers(v) for v in value]
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    return value


@schemathesis.hook
def map_case(context, case):
    case.body = _body(case.body)
    return case


def _body(body):
    if not isinstance(body, dict):
        return body
    body = _integers(body)
    if isinstance(body.get("public_key"), str):
        body["public_key"] = _relay_key()
    if isinstance(body.get("relay_key"), str):
        body["relay_key"] = _relay_key()
    # A key's expiry must lie ahead (a rule of time, which a schema cannot say).
    if body.get("action") == "authorize_key" and isinstance(body.get("expires_at"), str):
        body["expires_at"] = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    if isinstance(body.get("compute_resources"), list):
        _resources(body["compute_resources"])
    return body
