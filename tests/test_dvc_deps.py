"""DVC deps that cannot drift: every input a stage reads is in its `deps:` or `params:`, and every dep exists.

Code. A stage's code is the static import closure (`test_layering.import_graph`: every import, function-local
ones included) of the module(s) its `cmd` runs (`python -m cptlaw.stages.X`), plus the modules that its
composed config instantiates (`_target_: cptlaw....`, e.g. the sweep callback), plus the package `__init__`
of every module in it (Python runs them on import). Every file of the closure must be a dep, or lie under a
dep directory.

Config. Every stage composes `conf/config.yaml` (config_name="config"): the defaults list (one file per
group), the profile `conf/profile/${profile}.yaml` (a `_global_` patch) and the files its command line names
(`+sweep=...`, `hydra/launcher=...`). Depending on all of them would re-run every stage on any config edit,
so the rule is per top-level key the stage reads:

- keys read: `cfg.<key>`, `cfg["<key>"]`, `cfg[CONST]`, `cfg.get("<key>")` (receiver named `cfg`/`config`,
  as everywhere in src/cptlaw) in any file of the closure, closed over `${key...}` interpolations
  (`${oc.select:key...}` too) in the values of those keys and in the command-line files;
- `conf/config.yaml` (the defaults list, `seed`, `threads`, ...) and every command-line file (sweep,
  launcher) other than the profile: a dep (or a whole file under `params:`);
- a read key filled by a group file (`conf/<key>/<option>.yaml`): that file is a dep, or under `params:`
  as a whole file (`- conf/<key>/<option>.yaml:`);
- a read key that any profile sets: listed under `params:` for `conf/profile/${profile}.yaml` (or the
  profile file is a dep). DVC fails on a listed key that a profile lacks, so every listed key must be in
  every profile file too (checked).

Not inputs: `hydra` (run dirs, sweeper wiring; the sweep files are deps anyway), `profile_name` (the name
of the chosen profile, which the `profile` param already tracks: checked to equal the file name),
whole-config dumps into MLflow artifacts / provenance records (metadata beside the results, like the git
revision), and the git-ignored per-machine `conf/local/default.yaml` (an optional default: it cannot be a
dep, DVC would fail where it is absent).

Deps that are no file in the checkout must be an output of some stage (DVC makes them); anything else
(e.g. a deleted module) fails here, one line per missing dep naming stage and path.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from functools import cache
from pathlib import Path

import yaml

from tests.test_layering import ROOT, import_graph

CONF = ROOT / "conf"
STAGE_CMD = re.compile(r"python\s+-m\s+(cptlaw\.stages\.\w+)((?:\s+(?!&&)\S+)*)")
INTERPOLATION = re.compile(r"\$\{(?:oc\.select:)?([A-Za-z_][\w.]*)")
CONFIG_RECEIVERS = {"cfg", "config"}
NOT_INPUTS = {"hydra", "profile_name"}
PROFILE_PARAMS = "conf/profile/${profile}.yaml"

# Gaps present when this test was written that dvc.yaml alone cannot close: (stage, key) -> why. The test
# names each one (a warning on every run) and fails once it is closed, so that the entry is removed.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def _yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@cache
def dvc_stages() -> dict:
    return _yaml(ROOT / "dvc.yaml")["stages"]


@cache
def profiles() -> dict[str, dict]:
    return {p.stem: _yaml(p) for p in sorted((CONF / "profile").glob("*.yaml"))}


def _expand(path: str) -> list[str]:
    """`path` with `${profile}` replaced by every profile (the dvc.yaml template variable)."""
    return [path.replace("${profile}", p) for p in profiles()] if "${profile}" in path else [path]


def _covered(path: str, listed: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in listed)


def _deps(stage: dict) -> list[str]:
    return [str(d) for d in stage.get("deps", [])]


def _params(stage: dict) -> dict[str, list[str] | None]:
    """params: file -> listed keys (None: the whole file); bare names are keys of params.yaml."""
    out: dict[str, list[str] | None] = {}
    for item in stage.get("params", []):
        if isinstance(item, str):
            keys = out.setdefault("params.yaml", [])
            if keys is not None:
                keys.append(item)
        else:
            for f, keys in item.items():
                out[f] = list(keys) if keys else None
    return out


def _whole_file_tracked(path: str, stage: dict) -> bool:
    params = _params(stage)
    return _covered(path, _deps(stage)) or (path in params and params[path] is None)


def _commands(stage: dict) -> list[tuple[str, list[str]]]:
    """(stage module, its command-line overrides) for each `python -m cptlaw.stages.X ...` of `cmd`."""
    cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " && ".join(stage["cmd"])
    return [(m.group(1), shlex.split(m.group(2))) for m in STAGE_CMD.finditer(cmd)]


def _all_outs() -> list[str]:
    outs = []
    for stage in dvc_stages().values():
        for kind in ("outs", "metrics", "plots"):
            for o in stage.get(kind, []):
                outs.append(next(iter(o)) if isinstance(o, dict) else str(o))
    return outs


def _config_defaults() -> dict[str, str]:
    """group -> option of conf/config.yaml's defaults list (`_self_` and `optional` dropped)."""
    out = {}
    for item in _yaml(CONF / "config.yaml")["defaults"]:
        if isinstance(item, dict):
            ((key, option),) = item.items()
            out[key.removeprefix("optional ").strip()] = str(option)
    return out


def composed_files(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """(top-level key -> its group file, command-line files other than the profile), paths repo-relative."""
    groups = _config_defaults()
    named: list[str] = []
    for o in overrides:
        if "=" not in o or o.startswith("-"):
            continue
        key, value = o.split("=", 1)
        key = key.lstrip("+~")
        if key == "profile" or "." in key:  # the profile: per key, below; `a.b=v`: a value, no file
            continue
        path = f"conf/{key}/{value}.yaml"
        if (ROOT / path).is_file():  # else a plugin's (e.g. hydra/launcher=joblib)
            named.append(path)
        groups.pop(key, None)
    group_files = {}
    for group, option in groups.items():
        path = f"conf/{group}/{option}.yaml"
        if group == "profile" or not (ROOT / path).is_file():  # profile: per key; local: git-ignored
            continue
        text = (ROOT / path).read_text(encoding="utf-8")
        if "@package _global_" not in text:
            group_files[group] = path
    return group_files, named


@cache
def _module_constants(name: str) -> dict[str, str]:
    tree = ast.parse(import_graph()[name].path.read_text(encoding="utf-8"))
    return {
        t.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def _is_config(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id in CONFIG_RECEIVERS) or (
        isinstance(node, ast.Attribute) and node.attr in CONFIG_RECEIVERS
    )


@cache
def keys_read(module: str) -> frozenset[str]:
    """Top-level config keys a module reads off a config object (see the module docstring)."""
    tree = ast.parse(import_graph()[module].path.read_text(encoding="utf-8"))
    consts, keys = _module_constants(module), set()
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_config(node.value) and id(node) not in called:
            keys.add(node.attr)
        elif isinstance(node, ast.Subscript) and _is_config(node.value):
            s = node.slice
            if isinstance(s, ast.Constant) and isinstance(s.value, str):
                keys.add(s.value)
            elif isinstance(s, ast.Name) and s.id in consts:
                keys.add(consts[s.id])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            # cfg.get("key"), OmegaConf.select(cfg, "key.sub")
            args = node.args if node.func.attr == "get" and _is_config(node.func.value) else node.args[1:]
            if node.func.attr == "select" and not _is_config(node.args[0]):
                continue
            if node.func.attr in ("get", "select") and args and isinstance(args[0], ast.Constant):
                if isinstance(args[0].value, str) and (
                    node.func.attr == "select" or _is_config(node.func.value)
                ):
                    keys.add(args[0].value.split(".")[0])
    return frozenset(keys)


def _module_of(dotted: str) -> str | None:
    modules, parts = import_graph(), dotted.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def _targets(path: str) -> set[str]:
    return {
        m for m in re.findall(r"_target_:\s*['\"]?(cptlaw[\w.]*)", (ROOT / path).read_text()) if _module_of(m)
    }


def closure(roots: set[str]) -> set[str]:
    """Modules reachable from `roots` by imports, with every parent package (its `__init__` runs too)."""
    graph, seen, todo = import_graph(), set(), list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += graph[m].internal
        todo += [".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)]
    return seen


def _subtree(data, path: str):
    """The value at dotted `path` (list indices dropped: a list counts whole), or None."""
    for part in [p for p in path.split(".") if p]:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _refs(text: str, known_top: set[str]) -> set[tuple[str, str]]:
    """(top-level key, dotted sub-path or "") of every `${key.sub...}` / `${oc.select:key...}` in `text`."""
    out = set()
    for ref in INTERPOLATION.findall(text):
        key, _, sub = re.sub(r"\[.*", "", ref).partition(".")
        if key in known_top:
            out.add((key, sub))
    return out


def _narrowest(reads: set[tuple[str, str]]) -> dict[str, set[str]]:
    """key -> sub-paths read ("" = the whole key), without paths already inside another one."""
    out: dict[str, set[str]] = {}
    for key, sub in reads:
        out.setdefault(key, set()).add(sub)
    for key, subs in out.items():
        out[key] = {s for s in subs if not any(o != s and (o == "" or s.startswith(o + ".")) for o in subs)}
    return out


@cache
def stage_inputs(name: str) -> tuple[frozenset[str], dict[str, str], tuple[str, ...], dict[str, set[str]]]:
    """(closure modules, group file per key, command-line files, config read: key -> sub-paths)."""
    stage = dvc_stages()[name]
    roots, group_files, named = set(), {}, []
    for module, overrides in _commands(stage):
        roots.add(module)
        g, n = composed_files(overrides)
        group_files |= g
        named += [p for p in n if p not in named]
    for f in ["conf/config.yaml", *group_files.values(), *named]:
        roots |= {_module_of(t) for t in _targets(f)}
    mods = closure(roots)

    cfg_yaml = _yaml(CONF / "config.yaml")
    known_top = set(cfg_yaml) | set(_config_defaults()) | {k for p in profiles().values() for k in p}
    # code reads a key whole; the command-line files are read whole (sweeper params, callbacks)
    reads = {(k, "") for m in mods for k in keys_read(m) if k in known_top}
    reads |= _refs("\n".join((ROOT / p).read_text() for p in named), known_top)
    global_files = [cfg_yaml, *profiles().values(), *(_yaml(ROOT / p) for p in named)]  # `_global_` patches
    done: set[tuple[str, str]] = set()
    while reads - done:  # close over the interpolations inside the values read
        key, sub = (reads - done).pop()
        done.add((key, sub))
        if key == "hydra":
            continue
        values = [_subtree(d.get(key), sub) for d in global_files if key in d]
        if key in group_files:
            values.append(_subtree(_yaml(ROOT / group_files[key]), sub))
        reads |= _refs(yaml.safe_dump([v for v in values if v is not None]), known_top)
    read = _narrowest(reads)
    return frozenset(mods), {k: v for k, v in group_files.items() if k in read}, tuple(named), read


STAGES = sorted(dvc_stages())


def test_every_stage_runs_a_cptlaw_stage_module():
    bad = [
        f"{s}: cmd runs no `python -m cptlaw.stages.<name>`" for s in STAGES if not _commands(dvc_stages()[s])
    ]
    bad += [
        f"{s}: cmd runs {m}, which is no module under src/cptlaw"
        for s in STAGES
        for m, _ in _commands(dvc_stages()[s])
        if m not in import_graph()
    ]
    assert not bad, "\n".join(bad)


def test_every_dep_exists():
    """A dep that is neither in the checkout nor made by a stage breaks `dvc repro` (it did: lm/packing.py)."""
    outs = _all_outs()
    missing = [
        f"{s}: dep {path} does not exist (and no stage outputs it)"
        for s in STAGES
        for dep in _deps(dvc_stages()[s])
        for path in _expand(dep)
        if not (ROOT / path).exists()
        and not _covered(path, outs)
        and not any(o.startswith(path + "/") for o in outs)
    ]
    assert not missing, "\n".join(missing)


def test_code_closure_is_in_deps():
    missing = []
    for s in STAGES:
        mods, *_ = stage_inputs(s)
        deps = _deps(dvc_stages()[s])
        for m in sorted(mods):
            rel = import_graph()[m].path.relative_to(ROOT).as_posix()
            if not _covered(rel, deps):
                missing.append(f"{s}: missing dep {rel} (imported by the stage's code)")
    assert not missing, "\n".join(missing)


def _listed_covers(listed: list[str] | None, full: str) -> bool:
    """A params list (None: whole file) tracks dotted `full` (listed itself or a parent of it)."""
    return listed is None or any(full == k or full.startswith(k + ".") for k in listed)


def test_composed_config_is_in_deps_or_params():
    missing = []
    for s in STAGES:
        stage = dvc_stages()[s]
        _, group_files, named, read = stage_inputs(s)
        params, deps = _params(stage), _deps(stage)
        for path in ["conf/config.yaml", *named]:
            if not _whole_file_tracked(path, stage):
                missing.append(f"{s}: missing dep {path} (composed by the stage's command)")
        for key, path in sorted(group_files.items()):
            for sub in sorted(read[key]):
                if _covered(path, deps) or (path in params and _listed_covers(params[path], sub)):
                    continue
                what = f"`{key}.{sub}`" if sub else f"`{key}`"
                hint = f"params {path}: {sub}" if sub else f"dep {path} (or it whole under params)"
                missing.append(f"{s}: missing {hint} (the stage reads {what})")
        profile_is_dep = _covered(PROFILE_PARAMS, deps)
        for key in sorted(set(read) - NOT_INPUTS):
            for sub in sorted(read[key]):
                full = f"{key}.{sub}" if sub else key
                if (s, full) in KNOWN_GAPS:
                    warnings.warn(
                        f"{s}: `{full}` is read but not tracked (KNOWN_GAPS): {KNOWN_GAPS[s, full]}",
                        stacklevel=1,
                    )
                    continue
                if profile_is_dep:
                    continue
                if PROFILE_PARAMS in params and _listed_covers(params[PROFILE_PARAMS], full):
                    continue
                setters = [p for p, d in profiles().items() if _subtree(d, full) is not None]
                if setters:
                    missing.append(
                        f"{s}: missing param {PROFILE_PARAMS}: {full} (the stage reads `{full}`; set by "
                        f"profile {', '.join(setters)})"
                    )
    assert not missing, "\n".join(missing)


def test_listed_params_exist_in_every_profile():
    """DVC fails (missing params) on a listed key that the chosen profile lacks."""
    missing = []
    for s in STAGES:
        params = _params(dvc_stages()[s])
        for f, keys in params.items():
            for path in _expand(f):
                if not (ROOT / path).is_file():
                    missing.append(f"{s}: params file {path} does not exist")
                    continue
                data = _yaml(ROOT / path)
                missing += [
                    f"{s}: param {k} is not in {path}" for k in keys or () if _subtree(data, k) is None
                ]
    assert not missing, "\n".join(missing)


def test_known_gaps_are_still_gaps():
    """Each KNOWN_GAPS entry: still read and still not tracked (else remove it)."""
    tracked = [
        f"{s}: `{key}` is tracked now: remove it from KNOWN_GAPS"
        for s, key in KNOWN_GAPS
        if key not in stage_inputs(s)[3]
        or _listed_covers(_params(dvc_stages()[s]).get(PROFILE_PARAMS, []), key)
    ]
    assert not tracked, "\n".join(tracked)


def test_profile_name_is_the_profile():
    """`profile_name` is exempt from params only because it is the `profile` param itself."""
    bad = [
        f"conf/profile/{p}.yaml: profile_name is {d.get('profile_name')!r}, not {p!r}"
        for p, d in profiles().items()
        if d.get("profile_name") != p
    ]
    assert not bad, "\n".join(bad)
