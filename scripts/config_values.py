"""Where the config's values live: list the YAML leaves under ``conf/`` that restate what the
composed config would hold without them, and freeze / check the composed configs.

    python scripts/config_values.py restated       # YAML leaves equal to the schema default at their key
    python scripts/config_values.py redundant      # YAML leaves that change no composition
    python scripts/config_values.py freeze         # write tests/data/composed_configs.json
    python scripts/config_values.py check [--pairs]  # compose again, compare with the frozen file

The frozen file holds the default composition in full and, for every group option alone (and
for the combinations of :func:`combos`), what it changes from the default; tests/test_config_values.py
composes them again and compares, so removing a value from YAML (or moving it into the schema)
that changes a composed config fails there. Cache keys are built from the composed config.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tinyfw.__main__ as entry  # noqa: E402 - registers the schema and the resolver
from tinyfw.config import Config  # noqa: E402

FROZEN = ROOT / "tests" / "data" / "composed_configs.json"
GROUPS = ("teacher", "student", "corpus", "task", "recipe", "ablation", "preset", "experiment")
GLOBAL = ("recipe", "ablation", "preset", "experiment")  # groups that set keys of other groups


def options(conf: Path = entry.CONF_DIR) -> Dict[str, List[str]]:
    """Every option of each config group (file stems under ``conf/<group>/``)."""
    return {g: sorted(p.stem for p in (conf / g).glob("*.yaml")) for g in GROUPS}


def flat(d: Any, prefix: str = "") -> Dict[str, Any]:
    """A nested dict as ``{dotted.key: leaf}`` (lists and empty dicts are leaves)."""
    if not isinstance(d, dict) or not d:
        return {prefix: d}
    return {k: v for key, sub in d.items() for k, v in flat(sub, f"{prefix}.{key}" if prefix else str(key)).items()}


def composed(conf: Path, overrides: List[str]) -> Dict[str, Any]:
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)


def combos(opts: Dict[str, List[str]], pairs: bool = False) -> Iterator[Tuple[str, ...]]:
    """The override sets checked: none, each option alone, each option with preset=paper and
    with experiment=smoke (the groups that set keys of other groups come after them), and
    (``pairs``) every pair of options of two groups and every recipe x ablation x preset x experiment."""
    yield ()
    singles = [f"{g}={o}" for g in GROUPS for o in opts[g]]
    yield from ((s,) for s in singles)
    seen = set()
    for extra in ("preset=paper", "experiment=smoke"):
        seen.update(tuple(sorted((s, extra))) for s in singles if s.split("=")[0] != extra.split("=")[0])
    seen.update(tuple(sorted((r, "preset=paper", "experiment=smoke"))) for r in singles if r.startswith("recipe="))
    if pairs:
        for g1, g2 in itertools.combinations(GROUPS, 2):
            seen.update(tuple(sorted((f"{g1}={o1}", f"{g2}={o2}"))) for o1, o2 in itertools.product(opts[g1], opts[g2]))
        for chosen in itertools.product(*[[None] + opts[g] for g in GLOBAL]):
            seen.add(tuple(sorted(f"{g}={o}" for g, o in zip(GLOBAL, chosen) if o is not None)))
    seen.discard(())
    yield from sorted(seen)


def delta(base: Dict[str, Any], other: Dict[str, Any]) -> Dict[str, Any]:
    """The leaves of ``other`` that differ from ``base`` (``"<absent>"`` for a removed key)."""
    fb, fo = flat(base), flat(other)
    out = {k: v for k, v in fo.items() if k not in fb or fb[k] != v}
    out.update({k: "<absent>" for k in fb if k not in fo})
    return dict(sorted(out.items()))


def digest(d: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def snapshot(conf: Path = entry.CONF_DIR, pairs: bool = False) -> Dict[str, Any]:
    """The default composition and, per override set, its delta from it (singles) or its digest."""
    opts = options(conf)
    default = composed(conf, [])
    out: Dict[str, Any] = {"default": default, "options": {}, "combos": {}}
    for c in combos(opts, pairs):
        if not c:
            continue
        cfg = composed(conf, list(c))
        if len(c) == 1:
            out["options"][c[0]] = delta(default, cfg)
        else:
            out["combos"][" ".join(c)] = digest(cfg)
    return out


def yaml_leaves(conf: Path = entry.CONF_DIR) -> Iterator[Tuple[str, str, Any]]:
    """(file, dotted key in the composed config, value) of every value a YAML file sets."""
    for path in sorted(conf.glob("*.yaml")) + sorted(p for g in GROUPS for p in (conf / g).glob("*.yaml")):
        text = path.read_text()
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}  # OmegaConf's YAML: 5e-5 a float
        data.pop("defaults", None)
        data.pop("hydra", None)
        group = path.parent.name
        prefix = "" if path.parent == conf or "@package _global_" in text else group
        for key, value in flat(data).items():
            yield str(path.relative_to(conf)), f"{prefix}.{key}" if prefix else key, value


@functools.lru_cache(maxsize=None)
def schema_default(key: str) -> Any:
    """The schema's value at ``key`` (``"<missing>"`` where it has none)."""
    node = OmegaConf.structured(Config)
    try:
        value = OmegaConf.select(node, key, throw_on_missing=True)
    except Exception:  # MISSING: no default
        return "<missing>"
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, enum_to_str=True)
    return getattr(value, "value", value)


def same(a: Any, b: Any) -> bool:
    """Equal as the typed config holds them (an int where the schema has a float is that float)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def restated(conf: Path = entry.CONF_DIR) -> List[Tuple[str, str, Any]]:
    """The YAML leaves whose value equals the schema default at their key."""
    return [(f, k, v) for f, k, v in yaml_leaves(conf) if same(schema_default(k), v)]


def redundant(conf: Path = entry.CONF_DIR) -> List[Tuple[str, str, Any]]:
    """The YAML leaves that change no composition: whatever option each group has, the files
    merged before theirs (config.yaml, then the groups in the defaults-list order) leave that
    key at the same value, so removing the leaf leaves every composed config as it is."""
    leaves: Dict[str, Dict[str, Any]] = {}
    for f, k, v in yaml_leaves(conf):
        leaves.setdefault(f, {})[k] = v
    opts = options(conf)

    def before(group: str, key: str) -> List[Any]:
        """Every value ``key`` can hold when ``group``'s file is merged."""
        out = []
        for g in reversed(GROUPS[:GROUPS.index(group)] if group in GROUPS else ()):
            values = [leaves[f"{g}/{o}.yaml"][key] for o in opts[g] if key in leaves[f"{g}/{o}.yaml"]]
            out += values
            if len(values) == len(opts[g]) and g not in ("ablation", "preset", "experiment"):
                return out  # every option sets it: nothing earlier shows through
        return out + [leaves["config.yaml"][key] if group in GROUPS and key in leaves["config.yaml"]
                      else schema_default(key)]

    return [(f, k, v) for f, k, v in yaml_leaves(conf)
            if all(same(b, v) for b in before(f.split("/")[0] if "/" in f else "", k))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["restated", "redundant", "freeze", "check"])
    ap.add_argument("--pairs", action="store_true", help="also every pair of options of two groups")
    ap.add_argument("--file", type=Path, default=FROZEN, help="the frozen file (default: %(default)s)")
    args = ap.parse_args()
    if args.what in ("restated", "redundant"):
        rows = restated() if args.what == "restated" else redundant()
        for file, key, value in rows:
            print(f"{file:32} {key:40} {value!r}")
        print(f"{len(rows)} leaves " + ("restate the schema default" if args.what == "restated"
                                       else "change no composed config"))
    elif args.what == "freeze":
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(json.dumps(snapshot(pairs=args.pairs), indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.file}")
    else:
        frozen = json.loads(args.file.read_text())
        now = snapshot(pairs=args.pairs)
        bad = [k for k in ("default",) if frozen[k] != now[k]]
        bad += [k for k, v in now["options"].items() if frozen["options"].get(k) != v]
        bad += [k for k, v in now["combos"].items() if k in frozen["combos"] and frozen["combos"][k] != v]
        missing = [k for k in now["combos"] if k not in frozen["combos"]]
        print(f"{len(now['options'])} options, {len(now['combos'])} combinations; "
              f"{len(missing)} not in the frozen file; differ: {bad or 'none'}")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
