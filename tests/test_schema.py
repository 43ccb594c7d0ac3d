"""schemas/specgrad.schema.json is generated from the registries; the two cannot drift."""
import json

from jsonschema import Draft202012Validator

from conftest import ROOT, run_cli
from specgrad.data.sources import SOURCES
from specgrad.graph.formula import public_ops
from specgrad.init import INITIALIZERS
from specgrad.layers import LAYERS
from specgrad.losses import LOSSES
from specgrad.optim.optimizers import OPTIMIZERS
from specgrad.optim.schedules import SCHEDULES
from specgrad.spec.schema import build_schema


def test_committed_schema_is_the_generated_one():
    committed = json.loads((ROOT / "schemas" / "specgrad.schema.json").read_text())
    assert committed == build_schema(), "regenerate with: specgrad schema > schemas/specgrad.schema.json"
    Draft202012Validator.check_schema(committed)


def test_cli_prints_the_schema():
    assert json.loads(run_cli("schema").stdout) == build_schema()


def test_schema_accepts_exactly_the_registered_names():
    props = build_schema()["properties"]
    assert props["optimizer"]["properties"]["type"]["enum"] == OPTIMIZERS.names()
    assert props["data"]["properties"]["source"]["enum"] == SOURCES.names()
    assert props["loss"]["else"]["properties"]["type"]["enum"] == LOSSES.names()
    assert props["schedule"]["else"]["properties"]["type"]["enum"] == SCHEDULES.names()
    init = props["model"]["properties"]["params"]["additionalProperties"]["properties"]["init"]
    assert init["else"]["properties"]["type"]["enum"] == INITIALIZERS.names()
    node = build_schema()["$defs"]["node"]["additionalProperties"]["else"]
    assert node["else"]["properties"]["op"]["enum"] == public_ops()
    assert node["then"]["properties"]["layer"]["enum"] == LAYERS.names()
