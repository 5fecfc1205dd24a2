"""simulate() equals `pbill simulate` on the same file."""

import json
import os
import subprocess
from decimal import Decimal

import pytest

from private_billing import simulate

from conftest import REPO, community_dict


def pbill(*args):
    """Runs the repository's pbill (cargo builds it if needed)."""
    env = dict(os.environ)
    cmd = ["cargo", "run", "--release", "--quiet", "--bin", "pbill", "--", *args]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("model", ["ucs", "ucs-reference", "proportional"])
def test_simulate_equals_pbill_simulate(tmp_path, model):
    path = tmp_path / "community.json"
    path.write_text(json.dumps(community_dict(households=4, slots=10, seed=11)))
    out = tmp_path / "bills.json"
    pbill("simulate", "--input", str(path), "--output", str(out), "--model", model)
    expected = json.loads(out.read_text())
    assert expected["model"] == model
    from_file = simulate(path, model=model)
    from_dict = simulate(json.loads(path.read_text()), model=model)
    plain = simulate(str(path), model=model, plaintext=True)
    assert list(from_file) == [b["id"] for b in expected["bills"]]
    for b in expected["bills"]:
        for got in (from_file, from_dict, plain):
            bill = got[b["id"]]
            assert bill.bill == Decimal(b["bill"])
            assert bill.reward == Decimal(b["reward"])
            assert bill.total == Decimal(b["total"])


def test_simulate_refuses_like_pbill(tmp_path):
    c = community_dict(households=2, slots=3)
    with pytest.raises(ValueError, match="at least 3 are required"):
        simulate(c)
    with pytest.raises(ValueError, match="at least 3 are required"):
        simulate(c, plaintext=True)
    c = community_dict(households=3, slots=3)
    c["households"][1]["actual_kwh"] = c["households"][1]["actual_kwh"][:2]
    with pytest.raises(ValueError, match=r"households\[1\].*actual_kwh has 2 values"):
        simulate(c)
    c = community_dict(households=3, slots=3)
    c["prices"]["retail"][0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        simulate(c)
    with pytest.raises(ValueError, match="unknown billing model"):
        simulate(community_dict(), model="flat")
    with pytest.raises(FileNotFoundError):
        simulate(tmp_path / "missing.json")
    with pytest.raises(TypeError):
        simulate([1, 2, 3])


def test_simulate_takes_numpy_and_decimal_values():
    import numpy as np

    c = community_dict(households=3, slots=4, seed=2)
    expected = simulate(c, plaintext=True)
    c2 = json.loads(json.dumps(c))
    c2["prices"]["trading"] = np.array(c["prices"]["trading"])
    c2["households"][0]["actual_kwh"] = [Decimal(str(v)) for v in c["households"][0]["actual_kwh"]]
    assert simulate(c2) == expected
