"""``continuity generators``: what a pipeline engineer needs before choosing a backend."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from continuity.cli import app
from generators import list_generators


def test_every_generator_with_options_defaults_and_weights():
    result = CliRunner().invoke(app, ["generators", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)["generators"]}
    assert set(rows) == set(list_generators())
    ip = rows["ip-adapter"]
    assert ip["needs_model"] and ip["adapter"] == "required" and "h94/IP-Adapter" in ip["weights"]
    options = {o["name"]: o for o in ip["options"]}
    assert options["num_inference_steps"]["default"] == 25 and "int" in options["num_inference_steps"]["type"]
    assert "pipeline" not in options and "token_cache" not in options  # set by the loader, not --option
    assert not rows["animatic"]["needs_model"] and rows["animatic"]["available"]
    assert "LoRA" in rows["wan-m2v"]["weights"] or "lora" in str(rows["wan-m2v"]["adapter"])
