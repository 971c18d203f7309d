"""``labrig schema`` describes what the loader accepts: every library protocol and the
README example validate against it, and files the loader refuses for their shape fail."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from labrig.orchestrator.cli import app
from labrig.protocols import ProtocolError, load_protocol_text
from labrig.protocols.library import library_names, library_path
from labrig.protocols.schema import SCHEMA_DIALECT, SCHEMA_ID, input_schema
from labrig.protocols.yamlsafe import read_yaml

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = input_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # a valid draft 2020-12 schema
    return cls(schema)  # type: ignore[no-any-return]


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"## Protocols\s+```yaml\n(.*?)```", text, re.S)
    assert m, "the README's protocol example"
    return m.group(1)


def test_schema_has_dialect_and_id() -> None:
    s = input_schema()
    assert s["$schema"] == SCHEMA_DIALECT and s["$id"] == SCHEMA_ID
    res = CliRunner().invoke(app, ["schema"])
    assert res.exit_code == 0
    assert json.loads(res.stdout) == s


@pytest.mark.parametrize("name", library_names())
def test_every_library_protocol_validates(validator: Any, name: str) -> None:
    data = read_yaml(library_path(name).read_text(encoding="utf-8")).data
    errors = [e.message for e in validator.iter_errors(data)]
    assert not errors, errors


def test_the_readme_example_validates(validator: Any) -> None:
    text = _readme_example()
    load_protocol_text(text)  # the loader accepts it ...
    errors = [e.message for e in validator.iter_errors(read_yaml(text).data)]
    assert not errors, errors  # ... and so does the schema


INVALID = {
    "unknown field": "name: x\nlimits: {voltage_V: [2, 3.7], current_abs_mA: 5}\n"
    "sequence: [Rest for 1 h]\ncolour: red\n",
    "no sequence": "name: x\n",
    "empty sequence": "name: x\nsequence: []\n",
    "not a step verb": "name: x\nsequence: [Dance at 1C]\n",
    "step object of no kind": "name: x\nsequence: [{step: dance}]\n",
    "repeat as text": "name: x\nsequence: [{repeat: many, steps: [Rest for 1 h]}]\n",
    "a number where a window goes": "name: x\nlimits: {voltage_V: 3.7}\nsequence: [Rest for 1 h]\n",
    "unknown limit": "name: x\nlimits: {voltage_max: 3.7}\nsequence: [Rest for 1 h]\n",
    "cell as a list": "name: x\ncell: [1, 2]\nsequence: [Rest for 1 h]\n",
    "checkpoint position": "name: x\nsequence: [{repeat: 2, steps: [Rest for 1 h], "
    "checkpoints: [{every: 1, position: middle, steps: [Rest for 1 h]}]}]\n",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_files_fail_the_schema_and_the_loader(validator: Any, case: str) -> None:
    text = INVALID[case]
    assert list(validator.iter_errors(read_yaml(text).data)), case
    with pytest.raises(ProtocolError):
        load_protocol_text(text)


def test_the_published_schema_file_is_current() -> None:
    path = ROOT / "docs" / "protocol.schema.json"
    from labrig.protocols.schema import input_schema_text

    assert path.read_text(encoding="utf-8") == input_schema_text(), (
        "regenerate with: labrig schema --out docs/protocol.schema.json"
    )
