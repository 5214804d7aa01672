"""``bridge contract schemas|asyncapi [--out DIR]``: the published contract, printed or written.

The JSON Schema of every topic's values and the AsyncAPI document (bridge/contract), so a
downstream team can vendor them into its own repository. Needs no configuration. A directory
that cannot be written exits 2 with a message naming it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from bridge.contract.asyncapi import asyncapi_yaml
from bridge.contract.catalog import SCHEMA_NAMES, schema_text


def files(what: str) -> dict[str, str]:
    """File name -> text, as ``--out`` writes them."""
    if what == "asyncapi":
        return {"asyncapi.yaml": asyncapi_yaml()}
    return {f"{name}.schema.json": schema_text(name) for name in SCHEMA_NAMES}


def contract(what: str, out_dir: str | None, stdout: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    found = files(what)
    if out_dir is None:
        if what == "asyncapi":
            stdout.write(found["asyncapi.yaml"])
        else:  # one JSON object: file name -> schema
            parts = [f'"{name}": {text.strip()}' for name, text in found.items()]
            stdout.write("{\n" + ",\n".join(parts) + "\n}\n")
        return 0
    target = Path(out_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name, text in found.items():
            (target / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"bridge contract: cannot write to {out_dir}: {reason}", file=sys.stderr)
        return 2
    for name in found:
        stdout.write(f"wrote {target / name}\n")
    return 0
