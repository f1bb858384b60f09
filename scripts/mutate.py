"""Mutation testing: do the tests notice when the code is wrong?

An AST mutator over one module: it flips comparisons (< ↔ <=, > ↔ >=, == ↔ !=, is ↔ is
not, in ↔ not in), arithmetic (+ ↔ -, * ↔ /), min ↔ max, and ↔ or, negates conditions
(if / while / ternary), changes constants (numbers n → n + 1 and 0 ↔ 1, booleans
flipped), makes functions return None and deletes statements (assignments, augmented
assignments, calls). A sample of the mutants (fixed seed) is applied one at a time to a
copy of the package, and the given tests run against it; a mutant is killed when they
fail. Mutants that cannot change behaviour are listed in EQUIVALENT with the reason and
left out of the score.

    python scripts/mutate.py service/hazardwatch/detect/detector.py tests/detect \\
        --sample 120 --json mutants.json

Docstrings, logging calls and `__slots__` are not mutated.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Mutants that cannot change what the module does, keyed by (module, the mutated line's
# text, mutation), with the reason. Keyed by text, not number, so edits elsewhere keep them.
_UNREAD_INIT = (
    "_Channel.__init__ gives every slot a value; this one is always set again before it is "
    "read (on entering pending, on start or on end)"
)
_NO_CONTOUR = (
    "unreachable: with any changed pixel (changed_fraction > 0) findContours finds a contour"
)
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("detect/evidence.py", "@dataclass(frozen=True, slots=True)", "constant True -> False"): (
        "EvidenceParams is never assigned to after construction: frozen only guards that"
    ),
    ("detect/thresholds.py", "@dataclass(frozen=True, slots=True)", "constant True -> False"): (
        "Fit is never assigned to after construction: frozen only guards that"
    ),
    (
        "detect/thresholds.py",
        "profiles.append(x if len(runs) == 1 else np.quantile(x, grid))",
        "constant 1 -> 0",
    ): (
        "for one run, the 5th, 50th and 95th percentiles of its 101 percentiles are its own "
        "(grid points 5, 50 and 95): the same band"
    ),
    ("detect/thresholds.py", "for i in range(1, x.size):", "constant 1 -> 0"): (
        "smoothing the first sample again: its Δt to the last sample is clamped at 0, so "
        "α = 0 and it stays itself"
    ),
    (
        "detect/thresholds.py",
        "return np.array([s[a:b].max() for a, b in zip(starts, ends, strict=True)])",
        "constant True -> False",
    ): "every run that starts ends (the edges are padded with zeros): the lists are as long",
    ("detect/thresholds.py", "for i in range(1, values.size):", "constant 1 -> 0"): (
        "stepping the first sample again at its own time: Δt = 0 changes no state"
    ),
    (
        "detect/thresholds.py",
        "return u + beta * math.log(per_day_above_u / per_day) if per_day_above_u > per_day else u",
        "Gt -> GtE",
    ): "at equality log(1) = 0: both branches give u",
    ("detect/thresholds.py", "highest: float = 0.0", "constant 0.0 -> 1.0"): (
        "a replay maximum of at least 1 floors the threshold at 1.5 or 3, both below "
        "MIN_THRESHOLD (4)"
    ),
    (
        "detect/thresholds.py",
        "self._bursts.append(excursion_peaks(np.where(bursts > k, bursts - k, 0.0)) + k)",
        "Gt -> GtE",
    ): "a burst z exactly at the reference gives bursts - k = 0 either way: no excursion",
    (
        "detect/thresholds.py",
        "return abs(math.log(ratio)) <= math.log(factor) + 1e-3",
        "LtE -> Lt",
    ): (
        "a ratio of rates exactly 1e-3 beyond a factor of two in log: no replay rate "
        "(5-30 fps) and no frame rate read from times lands on it"
    ),
    (
        "detect/thresholds.py",
        "r for r, fps in zip(rates[1:], replay_fps, strict=True) if _within(fps / own, NEAR)",
        "constant True -> False",
    ): "rates holds one entry per replay rate after the footage's own: the lengths are equal",
    (
        "detect/thresholds.py",
        "for replays, fps in zip(rates[1:], replay_fps, strict=True):",
        "constant True -> False",
    ): "rates holds one entry per replay rate after the footage's own: the lengths are equal",
    ("detect/thresholds.py", "@dataclass(slots=True)", "constant True -> False"): (
        "_Replays without slots: the same fields, only more memory"
    ),
    ("detect/evidence.py", "if was_zero and self.statistic > 0.0:", "Gt -> GtE"): (
        "also setting run_start on samples where the statistic stays at zero: it is set "
        "again at the first positive sample, the only value ever read"
    ),
    ("storage/fences.py", "@dataclass(frozen=True, slots=True)", "constant True -> False"): (
        "Fence is never assigned to after construction, and slots only save memory"
    ),
    (
        "storage/fences.py",
        ".with_for_update(read=True)",
        "constant True -> False",
    ): (
        "an exclusive lock instead of a shared one: the instance's writes are one thread's, "
        "so nothing waits that did not, and a draw waits either way"
    ),
    ("handoff/reorder.py", "self._pushed = {}", "delete Assign"): (
        "the cameras pushed since the last call are looked at again on every later call: "
        "the same frames leave, only `due` costs more (what the set is for: bench/"
        "events_capacity.py at 1,000 cameras)"
    ),
    ("detect/channel.py", "self.threshold = math.inf", "delete Assign"): (
        "_new_channel sets it on every evidence channel, and only evidence channels read it"
    ),
    ("detect/channel.py", "self.burst = math.inf", "delete Assign"): (
        "_new_channel sets it on every evidence channel, and only evidence channels read it"
    ),
    ("detect/channel.py", "@dataclass(frozen=True, slots=True)", "constant True -> False"): (
        "OpenEvent is never assigned to after construction: frozen only guards that"
    ),
    (
        "detect/channel.py",
        'reported_peak = _or_inf(saved.get("reported_peak"), -math.inf)',
        "drop unary USub",
    ): (
        "saved as None only by a channel out of any event (reset_run): an event's start or "
        "continuation sets reported_peak before it is read"
    ),
    ("detect/channel.py", "self.reported_peak = -math.inf", "drop unary USub"): (
        "reset_run's value is read only after an event's start or continuation sets it, "
        "and a checkpoint stores either infinity as null"
    ),
    ("detect/detector.py", "self.state_since = t", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.opened_by = (0.0, 0.0)", "constant 0.0 -> 1.0"): _UNREAD_INIT,
    (
        "detect/detector.py",
        "if evidence.run_start > ch.last_end:  # a run that began after the last event",
        "Gt -> GtE",
    ): (
        "a run starts at a sample after the one that ended the last event (that sample is "
        "handled as the event's end), so run_start never equals last_end"
    ),
    ("detect/detector.py", "self.opened_by = (0.0, 0.0)", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.onset = t", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", 'self.event_id = ""', "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.peak = -math.inf", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.peak = -math.inf", "drop unary USub"): _UNREAD_INIT,
    ("detect/detector.py", "self.peak_at = t", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.peak_ref: Any = None", "delete AnnAssign"): _UNREAD_INIT,
    ("detect/detector.py", "self.reported_peak = -math.inf", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.reported_peak = -math.inf", "drop unary USub"): _UNREAD_INIT,
    ("detect/detector.py", "self.total = 0.0", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.total = 0.0", "constant 0.0 -> 1.0"): _UNREAD_INIT,
    ("detect/detector.py", "self.count = 0", "delete Assign"): _UNREAD_INIT,
    ("detect/detector.py", "self.count = 0", "constant 0 -> 1"): _UNREAD_INIT,
    (
        "detect/detector.py",
        "self.onset_samples: list[tuple[float, float, Any]] = []",
        "delete AnnAssign",
    ): _UNREAD_INIT,
    (
        "detect/detector.py",
        "if ch.state == ChannelState.IDLE and signal > p.enter_threshold:",
        "Gt -> GtE",
    ): (
        "a signal exactly at enter then enters pending and leaves it on the same sample "
        "(staying pending needs more than enter): no state anything reads changes"
    ),
    # MotionGate.__init__: _resize_state sets these on the first frame, before any read.
    ("motion/gate.py", "self._previous: npt.NDArray[np.uint8] | None = None", "delete AnnAssign"): (
        "set again by _resize_state on the first frame before it is read"
    ),
    (
        "motion/gate.py",
        "self._keep: npt.NDArray[np.uint8] | None = None  # 255 where motion counts",
        "delete AnnAssign",
    ): "set again by _resize_state on the first frame before it is read",
    ("motion/gate.py", "self._small_size = (0, 0)", "delete Assign"): (
        "set again by _resize_state on the first frame before it is read"
    ),
    ("motion/gate.py", "self._small_size = (0, 0)", "constant 0 -> 1"): (
        "set again by _resize_state on the first frame before it is read"
    ),
    (
        "motion/gate.py",
        "code = cv2.COLOR_BGR2GRAY if small.shape[2] == 3 else cv2.COLOR_BGRA2GRAY",
        "negate IfExp condition",
    ): "OpenCV's BGR2GRAY and BGRA2GRAY both take 3 or 4 channels and weigh B, G, R alike",
    (
        "motion/gate.py",
        "code = cv2.COLOR_BGR2GRAY if small.shape[2] == 3 else cv2.COLOR_BGRA2GRAY",
        "Eq -> NotEq",
    ): "OpenCV's BGR2GRAY and BGRA2GRAY both take 3 or 4 channels and weigh B, G, R alike",
    (
        "motion/gate.py",
        "_, changed = cv2.threshold(diff, p.threshold, 255, cv2.THRESH_BINARY)",
        "constant 255 -> 256",
    ): "the maximum value saturates to 255 in an 8-bit image",
    ("motion/gate.py", "if changed_fraction == 0.0:", "constant 0.0 -> 1.0"): (
        "a frame without change then finds no contour and returns the same no-motion result"
    ),
    ("motion/gate.py", "return MotionResult(False, 0.0, None, changed_fraction)", "return None"): (
        _NO_CONTOUR
    ),
    (
        "motion/gate.py",
        "return MotionResult(False, 0.0, None, changed_fraction)",
        "constant False -> True",
    ): _NO_CONTOUR,
    (
        "motion/gate.py",
        "return MotionResult(False, 0.0, None, changed_fraction)",
        "constant 0.0 -> 1.0",
    ): _NO_CONTOUR,
}


@dataclass(frozen=True)
class Mutant:
    index: int  # position among the module's mutation points
    line: int
    description: str


_COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BINOP_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
}


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _is_logging(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id in ("log", "logging", "logger")
    )


class _Points(ast.NodeVisitor):
    """Collects (node path, kind) of every mutation point in a stable order."""

    def __init__(self) -> None:
        self.points: list[tuple[int, str, int]] = []  # (node id in walk order, kind, line)
        self._order: dict[int, int] = {}

    def collect(self, tree: ast.AST) -> list[tuple[int, str, int]]:
        for i, node in enumerate(ast.walk(tree)):
            self._order[id(node)] = i
        for node in ast.walk(tree):
            self._node(node)
        return self.points

    def _add(self, node: ast.AST, kind: str) -> None:
        self.points.append((self._order[id(node)], kind, getattr(node, "lineno", 0)))

    def _node(self, node: ast.AST) -> None:  # noqa: PLR0912 - one case per node type
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in _COMPARE_SWAP:
                    self._add(node, f"compare:{k}")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
            self._add(node, "binop")
        elif isinstance(node, ast.BoolOp):
            self._add(node, "boolop")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
            self._add(node, "unary")
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            self._add(node, "constant")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("min", "max"):
                self._add(node, "minmax")
        elif isinstance(node, ast.If | ast.While | ast.IfExp):
            self._add(node, "negate")
        elif (
            isinstance(node, ast.Return)
            and node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)
        ):
            self._add(node, "return")
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Module | ast.If | ast.For):
            for field in ("body", "orelse"):
                for stmt in getattr(node, field, []):
                    if _is_docstring(stmt, node) or _is_logging(stmt):
                        continue
                    if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Expr):
                        if isinstance(stmt, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == "__slots__" for t in stmt.targets
                        ):
                            continue
                        if isinstance(node, ast.ClassDef | ast.Module):
                            continue  # declarations, not behaviour
                        self._add(stmt, "delete")


def _mutate(tree: ast.AST, order: int, kind: str) -> tuple[ast.AST, str]:  # noqa: PLR0911, PLR0912
    tree = copy.deepcopy(tree)
    target = next(n for i, n in enumerate(ast.walk(tree)) if i == order)
    if kind.startswith("compare:"):
        assert isinstance(target, ast.Compare)
        k = int(kind.split(":")[1])
        old = type(target.ops[k])
        target.ops[k] = _COMPARE_SWAP[old]()
        return tree, f"{old.__name__} -> {type(target.ops[k]).__name__}"
    if kind == "binop":
        assert isinstance(target, ast.BinOp)
        old_op = type(target.op)
        target.op = _BINOP_SWAP[old_op]()
        return tree, f"{old_op.__name__} -> {type(target.op).__name__}"
    if kind == "boolop":
        assert isinstance(target, ast.BoolOp)
        new = ast.Or() if isinstance(target.op, ast.And) else ast.And()
        desc = f"{type(target.op).__name__} -> {type(new).__name__}"
        target.op = new
        return tree, desc
    if kind == "unary":
        assert isinstance(target, ast.UnaryOp)
        return _replace(tree, target, target.operand), f"drop unary {type(target.op).__name__}"
    if kind == "constant":
        assert isinstance(target, ast.Constant)
        value = target.value
        if isinstance(value, bool):
            new_value: object = not value
        elif value == 0:
            new_value = type(value)(1)
        elif value == 1:
            new_value = type(value)(0)
        else:
            new_value = value + 1
        target.value = new_value
        return tree, f"constant {value!r} -> {new_value!r}"
    if kind == "minmax":
        assert isinstance(target, ast.Call) and isinstance(target.func, ast.Name)
        old_name = target.func.id
        target.func.id = "max" if old_name == "min" else "min"
        return tree, f"{old_name} -> {target.func.id}"
    if kind == "negate":
        assert isinstance(target, ast.If | ast.While | ast.IfExp)
        target.test = ast.UnaryOp(op=ast.Not(), operand=target.test)
        return tree, f"negate {type(target).__name__} condition"
    if kind == "return":
        assert isinstance(target, ast.Return)
        target.value = ast.Constant(value=None)
        return tree, "return None"
    if kind == "delete":
        return _replace(tree, target, ast.Pass()), f"delete {type(target).__name__}"
    raise ValueError(kind)


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> ast.AST:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return tree
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return tree
    raise ValueError("node not found")


def run(
    module: Path, tests: list[str], sample: int, seed: int, timeout_s: float
) -> dict[str, object]:
    source = module.read_text()
    tree = ast.parse(source)
    points = _Points().collect(tree)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(points)), min(sample, len(points))))
    rel = module.resolve().relative_to(REPO)
    package_rel = Path(*rel.parts[1:])  # below service/
    results = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy_root = Path(tmp) / "service"
        shutil.copytree(REPO / "service", copy_root)
        for data in ("config", "migrations"):  # found relative to the package's files
            shutil.copytree(REPO / data, Path(tmp) / data)
        target = copy_root / package_rel
        env = dict(os.environ, PYTHONPATH=str(copy_root), PYTHONDONTWRITEBYTECODE="1")
        for n, i in enumerate(chosen, start=1):
            order, kind, line = points[i]
            mutated, description = _mutate(tree, order, kind)
            code = ast.unparse(ast.fix_missing_locations(mutated))
            text = source.splitlines()[line - 1].strip() if line else ""
            key = (str(package_rel).removeprefix("hazardwatch/"), text, description)
            if key in EQUIVALENT:
                results.append({"line": line, "mutation": description, "status": "equivalent"})
                continue
            target.write_text(code)
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        "-x",
                        "-q",
                        "-p",
                        "no:cacheprovider",
                        "--hypothesis-seed=0",
                        *tests,
                    ],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    timeout=timeout_s,
                    check=False,
                )
                status = "survived" if proc.returncode == 0 else "killed"
            except subprocess.TimeoutExpired:
                status = "killed"  # a hang is noticed too
            seconds = time.monotonic() - started
            results.append({"line": line, "mutation": description, "status": status})
            print(f"[{n}/{len(chosen)}] line {line:4d} {description:<40} {status} ({seconds:.1f}s)")
        target.write_text(source)
    judged = [r for r in results if r["status"] != "equivalent"]
    killed = sum(r["status"] == "killed" for r in judged)
    return {
        "module": str(rel),
        "tests": tests,
        "points": len(points),
        "sampled": len(chosen),
        "seed": seed,
        "equivalent": len(results) - len(judged),
        "killed": killed,
        "score": killed / len(judged) if judged else None,
        "survivors": [r for r in judged if r["status"] == "survived"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", type=Path)
    parser.add_argument("tests", nargs="+")
    parser.add_argument("--sample", type=int, default=120, help="mutants to try (default 120)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    report = run(args.module, args.tests, args.sample, args.seed, args.timeout)
    print(
        f"\n{report['module']}: {report['killed']} of "
        f"{report['sampled'] - report['equivalent']} mutants killed "  # type: ignore[operator]
        f"({report['score']:.0%}); {report['equivalent']} equivalent left out"
    )
    for s in report["survivors"]:  # type: ignore[attr-defined]
        print(f"  survived: line {s['line']}: {s['mutation']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
