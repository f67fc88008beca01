"""Mutation testing of the method core: how many small changes to `dreammix_core` the core tier catches.

    python tests/mutation_report.py [--work DIR] [--modules inpainting/blend,training/loop,...]

Copies the repository's tracked files into DIR (default: a fresh temporary folder), runs mutmut over
`dreammix_core/` with the core tier as its test suite, and prints the killed share per module and in
all, plus the surviving mutants' names (inspect one with `cd DIR && mutmut show NAME`). Needs
`pip install mutmut` (3.x) in the running interpreter's environment. About 30 minutes on 2 cores
(some 4200 mutants).

Torch's thread pool does not survive mutmut's fork per mutant (children hang and are counted as
timeouts), so the run uses one thread.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
[tool.mutmut]
source_paths = [{sources}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-c", "tests/pytest.ini"]
pytest_add_cli_args_test_selection = ["tests/core"]
also_copy = [{also_copy}]
"""


def copy_tracked_files(work: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def configure(work: Path, modules: list[str] | None) -> None:
    sources = [f"dreammix_core/{m}.py" for m in modules] if modules else ["dreammix_core/"]
    also_copy = [p.name for p in work.iterdir() if p.name not in {"dreammix_core", "tests", "mutants"}]
    if modules:  # the core's other modules, unmutated: mutmut copies only the sources into its tree
        rest = (p.relative_to(work).as_posix() for p in sorted((work / "dreammix_core").rglob("*.py")))
        also_copy += [path for path in rest if path not in sources]
        for path in also_copy:  # mutmut copies files, not the folders they sit in
            (work / "mutants" / path).parent.mkdir(parents=True, exist_ok=True)
    with open(work / "pyproject.toml", "a") as config:
        config.write(CONFIG.format(sources=_quoted(sources), also_copy=_quoted(also_copy)))


def mutmut(work: Path, *args: str, capture: bool = False) -> str:
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mutmut", *args]
    done = subprocess.run(command, cwd=work, env=env, capture_output=capture, text=True)
    if done.returncode:
        raise SystemExit(f"mutmut {' '.join(args)} failed ({done.returncode})")
    return done.stdout or ""


def report(results: str) -> int:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    survivors = []
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name.startswith("dreammix_core."):
            continue
        module = name.rsplit(".", 1)[0].removeprefix("dreammix_core.")
        counts[module][status] += 1
        if status not in ("killed", "timeout"):
            survivors.append(f"{name}: {status}")
    total = collections.Counter()
    print(f"{'module':32} {'mutants':>8} {'killed':>8} {'share':>7}")
    for module, counter in sorted(counts.items()):
        total += counter
        killed = counter["killed"] + counter["timeout"]
        print(f"{module:32} {sum(counter.values()):8} {killed:8} {killed / sum(counter.values()):7.1%}")
    killed = total["killed"] + total["timeout"]
    print(f"{'all':32} {sum(total.values()):8} {killed:8} {killed / max(sum(total.values()), 1):7.1%}")
    print(f"statuses: {dict(total)} (timeouts count as killed: the mutant hung the tests)")
    print("survivors:\n  " + "\n  ".join(survivors))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="folder for the copy (kept, for `mutmut show`)")
    parser.add_argument(
        "--modules", help="comma-separated module paths under dreammix_core, e.g. inpainting/blend (default: all)"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dreammix-mutation-"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work} is not empty: give a new folder")
    work.mkdir(parents=True, exist_ok=True)
    copy_tracked_files(work)
    configure(work, args.modules.split(",") if args.modules else None)
    mutmut(work, "run")
    print(f"mutants in {work}")
    return report(mutmut(work, "results", "--all", "true", capture=True))


if __name__ == "__main__":
    raise SystemExit(main())
