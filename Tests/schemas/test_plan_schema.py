"""Plan and live-state JSON against Schemas/plan.schema.json and Schemas/live-state.schema.json."""
import glob
import json
import os
import subprocess
import tempfile

import pytest
from jsonschema import Draft202012Validator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAN = json.load(open(os.path.join(ROOT, "Schemas", "plan.schema.json")))
LIVE = json.load(open(os.path.join(ROOT, "Schemas", "live-state.schema.json")))


def test_schemas_are_valid():
    Draft202012Validator.check_schema(PLAN)
    Draft202012Validator.check_schema(LIVE)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "Tests/Fixtures/plan/*/expected.json"))))
def test_golden_plans_validate(path):
    Draft202012Validator(PLAN).validate(json.load(open(path)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "Tests/Fixtures/plan/*/live.json"))))
def test_live_snapshots_validate(path):
    Draft202012Validator(LIVE).validate(json.load(open(path)))


def test_plan_schema_rejects_unknown_action():
    plan = json.load(open(sorted(glob.glob(os.path.join(ROOT, "Tests/Fixtures/plan/*/expected.json")))[0]))
    plan["changes"] = [{"action": "explode", "kind": "Server", "name": "x", "fields": [], "reason": "", "blocked": False}]
    assert list(Draft202012Validator(PLAN).iter_errors(plan))


@pytest.mark.skipif(not os.environ.get("MCPFLEET_BIN"), reason="MCPFLEET_BIN is not set (scripts/test.sh sets it)")
@pytest.mark.parametrize("env", ["local", "host", "cluster"])
def test_cli_plan_json_validates(env):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write('{"servers": [], "tenants": []}')
    r = subprocess.run([os.environ["MCPFLEET_BIN"], "plan", os.path.join(ROOT, "Manifests"), "--env", env, "--live", f.name, "-o", "json"],
                       capture_output=True, text=True)
    assert r.returncode in (1, 3), r.stderr
    Draft202012Validator(PLAN).validate(json.loads(r.stdout))
