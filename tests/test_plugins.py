"""Custom code found the way Python users expect: the README's guardrail, written in the user's own folder outside
the repo, runs with the README's command (no PYTHONPATH); ``plugins=`` imports a file from elsewhere; a failed lookup
is one line saying which module and why, and writes nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from planner.apps.plugins import LookupFailed, load_plugins, locate

ROOT = Path(__file__).resolve().parent.parent
TINY = ["episodes=1", "planner.num_samples=16", "planner.num_elites=4", "planner.iterations=1", "planner.horizon=3"]


def readme_guardrail() -> tuple[str, list[str]]:
    """The README's "Write your own guardrail" code block and its `jepa-mpc benchmark ...` command."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Write your own guardrail") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"`(jepa-mpc benchmark [^`]*my_module[^`]*)`", section).group(1)
    return code, command.split()[1:]


def jepa_mpc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script (as a user runs it), from ``cwd``, without PYTHONPATH."""
    script = shutil.which("jepa-mpc", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-c", "from planner.cli import main; main()"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_the_readme_guardrail_runs_from_the_users_folder(tmp_path):
    code, args = readme_guardrail()
    assert "signed_margin" in code  # so the plots show its margin, not a flat 0
    (tmp_path / "my_module.py").write_text(code)
    result = jepa_mpc([*args, f"out={tmp_path / 'out'}", *TINY], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "default+ceiling(z_max=0.3)" in summary  # the extra guardrail is in the label, not just "default"
    assert "outputs:" in result.stderr  # the closing line says where the outputs are


def test_a_failed_lookup_is_one_line_naming_the_module_and_writes_nothing(tmp_path):
    (tmp_path / "broken.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "envs.py").write_text("raise SystemExit('the current folder shadowed the envs package')\n")
    for target, why in [
        ("my_modul.Ceiling", "no module named 'my_modul' in the installed packages or the current directory"),
        ("broken.Ceiling", "importing module 'broken' failed at broken.py:1: ModuleNotFoundError"),
    ]:
        result = jepa_mpc(["benchmark", f"+guardrails.c._target_={target}", f"out={tmp_path / 'out'}"], cwd=tmp_path)
        assert result.returncode != 0 and why in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert "HYDRA_FULL_ERROR" not in result.stderr and "shadowed" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli.log").exists()


def test_plugins_imports_a_file_from_another_folder(tmp_path):
    code, _ = readme_guardrail()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "my_guards_elsewhere.py").write_text(code.replace('"ceiling"', '"ceiling_elsewhere"'))
    (tmp_path / "run").mkdir()
    args = ["benchmark", "task=reach", "plugins=[../lib/my_guards_elsewhere.py]", f"out={tmp_path / 'out'}", *TINY]
    args += ["+guardrails.ceiling._target_=my_guards_elsewhere.Ceiling"]
    result = jepa_mpc(args, cwd=tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]


def test_locate_and_load_plugins_in_process(tmp_path, monkeypatch):
    from planner.guardrails import MinHeight

    assert locate("planner.guardrails.MinHeight") is MinHeight
    with pytest.raises(LookupFailed, match="has no 'MinHeigth'; it defines: .*MinHeight"):
        locate("planner.guardrails.MinHeigth")
    with pytest.raises(LookupFailed, match="not a module.Name path"):
        locate("MinHeight")
    (tmp_path / "syntax_error_mod.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LookupFailed, match=r"importing module 'syntax_error_mod' failed at syntax_error_mod.py:1"):
        locate("syntax_error_mod.X")
    (tmp_path / "plugin_ok_mod.py").write_text("VALUE = 3\n")
    (module,) = load_plugins([str(tmp_path / "plugin_ok_mod.py")])
    assert module.VALUE == 3 and locate("plugin_ok_mod.VALUE") == 3
    with pytest.raises(LookupFailed, match="no file"):
        load_plugins([str(tmp_path / "missing.py")])
