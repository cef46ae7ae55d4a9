"""The package's offline switches: set on import unless the user set them; lifted only for hub weights the user
asked for (the network itself is sealed and checked in test_sealed.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, os
import fashion2stage
from fashion2stage.offline import SWITCHES, hub_allowed
from huggingface_hub import constants
with hub_allowed():
    inside = constants.is_offline_mode()
print(json.dumps({"env": {k: os.environ.get(k) for k in SWITCHES}, "hub_offline": constants.is_offline_mode(),
                  "inside": inside}))
"""


def _probe(**user_env) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_ALBUMENTATIONS_UPDATE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE")}
    env.update(user_env)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_switches_are_set_on_import_and_lifted_only_for_asked_hub_weights():
    r = _probe()
    assert r["env"] == {"NO_ALBUMENTATIONS_UPDATE": "1", "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    assert r["hub_offline"] is True and r["inside"] is False


def test_a_users_own_settings_win():
    r = _probe(HF_HUB_OFFLINE="1", YOLO_OFFLINE="0")
    assert r["env"]["YOLO_OFFLINE"] == "0"
    assert r["hub_offline"] is True and r["inside"] is True  # the user said offline: hub weights stay offline too
    r = _probe(HF_HUB_OFFLINE="0")
    assert r["hub_offline"] is False and r["inside"] is False
