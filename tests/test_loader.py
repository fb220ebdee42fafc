"""The loader: native vs fallback selection, the one warning, and AGENTDB_SIMD forcing.

Each case runs in a fresh interpreter, because the choice is made once at import."""

from __future__ import annotations

import json
import subprocess
import sys

import agentdb
import pytest
from _child import child_env


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "always", "-c", code], env=child_env(**env),
                          capture_output=True, text=True, timeout=120)


def test_fallback_warns_once_with_reason_and_works():
    code = ("import warnings, json, numpy as np\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import agentdb\n"
            "    import agentdb as again\n"
            "i = agentdb.HNSWIndex(4); i.add([1, 2], np.eye(4)[:2])\n"
            "print(json.dumps({'info': agentdb.native_info(), 'n': len(w), "
            "'msg': [str(x.message) for x in w], 'hit': int(i.search(np.eye(4)[1], k=1)[0][0])}))")
    out = run(code, AGENTDB_NATIVE="0")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["info"]["native"] is False
    assert "AGENTDB_NATIVE=0" in res["info"]["reason"]
    native_warnings = [m for m in res["msg"] if "native core did not load" in m]
    assert len(native_warnings) == 1 and "AGENTDB_NATIVE=0" in native_warnings[0]
    assert res["hit"] == 2


@pytest.mark.skipif(not agentdb.native_info()["native"], reason="native core not built")
@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_agentdb_simd_forces_a_path(path):
    if path not in agentdb.native_info()["supported"]:
        pytest.skip(f"{path} not supported on this CPU")
    code = ("import json, agentdb\n"
            "print(json.dumps(agentdb.native_info()))")
    out = run(code, AGENTDB_SIMD=path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["forced"] == path
    assert set(info["simd"].values()) == {path}
