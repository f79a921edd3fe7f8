"""What the bundle ships: only the host libraries something in it links to,
and the licence text of every third-party component in it.

Used by guiapp.spec at build time (in the build's virtual environment, where
PyInstaller is importable). The licence texts go to ``_internal/licenses/``:

    python/<distribution>-<version>/...  the licence files each wheel carries
    python/Python-<version>/LICENSE.txt   the interpreter and its standard library
    debian/<package>/copyright            each Debian package a library came from
    debian/packages.txt                   those packages with their versions
    common/                               texts a wheel refers to but does not carry

and every bundled distribution and Debian package must have a row in
packaging/THIRD_PARTY.md (the build stops otherwise), so that file stays the
true list.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

LICENCE_FILE = re.compile(r"(^|/)(licen[cs]e|copying|notice|authors|thirdpartynotices)[^/]*$", re.IGNORECASE)
# Distributions whose wheel has no licence file: the standard text they name.
COMMON_TEXTS = {
    "pyside6-essentials": ("LGPL-3.0.txt", "GPL-3.0.txt"),
    "shiboken6": ("LGPL-3.0.txt", "GPL-3.0.txt"),
    "flatbuffers": ("Apache-2.0.txt",),
    # Its Python and mask code come from pycocotools (BSD-2-Clause); its wheel carries only Apache-2.0.
    "faster-coco-eval": ("BSD-2-Clause-cocoapi.txt",),
}
OWN = {"guiapp"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---- libraries

def needed_only(binaries: list[tuple]) -> list[tuple]:
    """``binaries`` without the top-level (host) libraries that no kept binary
    links to. PyInstaller collects the dependencies of every Qt plugin before
    the spec drops plugins, so without this the GTK theme plugin's GTK, cairo,
    pango and Kerberos libraries ship although nothing loads them, and which of
    them ship depends on what the build host happens to have installed."""
    if not sys.platform.startswith("linux"):
        return binaries
    from PyInstaller.depend.bindepend import get_imports  # ldd: the whole closure

    ext = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    needed: set[str] = set()
    for dest, src, _ in binaries:
        if ("/" in dest or dest.endswith(ext)) and os.path.isfile(src):
            for name, path in get_imports(src):
                needed.add(os.path.basename(name))
                if path:
                    needed.add(os.path.basename(path))
    # libpython is opened by the bootloader, not linked.
    return [b for b in binaries if "/" in b[0] or b[0] in needed or b[0].startswith("libpython")]


# ---- licences

def licence_datas(toc_sources: set[str], own: Path, third_party_md: Path, common_dir: Path, workdir: Path) -> list[tuple[str, str, str]]:
    """PyInstaller DATA entries (destination, source, "DATA") for THIRD_PARTY.md
    and the licence texts of everything with files among ``toc_sources`` (the
    real paths of what the bundle holds; ``own`` is the app's folder). Raises
    SystemExit naming what packaging/THIRD_PARTY.md lacks."""
    listed = listed_in(third_party_md)
    datas: list[tuple[str, str]] = [(str(third_party_md), ".")]  # (source, destination folder)
    missing: list[str] = []

    for dist, files in bundled_distributions(toc_sources):
        name, version = canonical(dist.metadata["Name"]), dist.version
        dest = f"licenses/python/{name}-{version}"
        if listed.get(name) != version:
            missing.append(f"{name} {version} (Python package)")
        texts = [f for f in files if LICENCE_FILE.search(str(f)) and not str(f).endswith((".py", ".pyc"))]
        for f in texts:
            rel = re.sub(r"^[^/]+\.dist-info/(licenses/)?", "", str(f))  # keep the layout below dist-info
            datas.append((str(dist.locate_file(f)), os.path.join(dest, os.path.dirname(rel))))
        for t in COMMON_TEXTS.get(name, ()):
            datas.append((str(common_dir / t), dest))
        if not texts and name not in COMMON_TEXTS:
            missing.append(f"{name}: its wheel has no licence file; add the text it names to COMMON_TEXTS")

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    datas.append((str(stdlib / "LICENSE.txt"), f"licenses/python/Python-{sys.version.split()[0]}"))

    packages = debian_packages(toc_sources, own)
    for pkg in sorted(packages):
        if canonical(pkg) not in listed:
            missing.append(f"{pkg} (Debian package)")
        copyright_file = Path("/usr/share/doc") / pkg / "copyright"
        if not copyright_file.is_file():
            raise SystemExit(f"No {copyright_file}: the licence of {pkg}, whose library the bundle ships, is unknown.")
        datas.append((str(copyright_file.resolve()), f"licenses/debian/{pkg}"))
    if packages:
        listing = workdir / "packages.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{p} {v}\n" for p, v in sorted(packages.items())))
        datas.append((str(listing), "licenses/debian"))

    if missing:
        raise SystemExit(
            "The bundle ships components packaging/THIRD_PARTY.md does not list (name and version):\n  "
            + "\n  ".join(missing) + "\nCheck their licences and add a row for each."
        )
    return [(os.path.normpath(os.path.join(folder, os.path.basename(src))), src, "DATA") for src, folder in datas]


def listed_in(third_party_md: Path) -> dict[str, str]:
    """First and second cell of every table row: {canonical name: version}."""
    rows = {}
    for line in third_party_md.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("-: "):
            rows[canonical(cells[0])] = cells[1]
    return rows


def bundled_distributions(toc_sources: set[str]):
    """(distribution, its files) for every installed distribution with at
    least one file in the bundle, except this app."""
    seen = set()
    for dist in importlib.metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name in OWN or name in seen:
            continue
        files = list(dist.files or [])
        if any(os.path.realpath(dist.locate_file(f)) in toc_sources for f in files):
            seen.add(name)
            yield dist, files


def debian_packages(toc_sources: set[str], own: Path) -> dict[str, str]:
    """{package: version} of the Debian packages that own a bundled file.
    Files from the build environment, from ``own`` (the app) and from the
    interpreter's own tree need no package; any other file stops the build."""
    inside = [os.path.realpath(sys.prefix), os.path.realpath(own)]
    if sys.base_prefix != "/usr":  # pyenv, python.org: the interpreter's own tree
        inside.append(os.path.realpath(sys.base_prefix))
    host = sorted(p for p in toc_sources if os.path.isfile(p) and not any(p.startswith(d + os.sep) for d in inside))
    if not host:
        return {}
    if not sys.platform.startswith("linux") or not Path("/var/lib/dpkg").is_dir():
        raise SystemExit("Files from outside the build environment, and no dpkg to say where they come from:\n  " + "\n  ".join(host[:20]))
    owners = _dpkg_owners(host)
    # merged /usr: dpkg may have recorded a file under /lib rather than /usr/lib
    alt = {(p[4:] if p.startswith("/usr/") else "/usr" + p): p for p in host if p not in owners}
    owners.update({alt[a]: pkg for a, pkg in _dpkg_owners(list(alt)).items()})
    unknown = [p for p in host if p not in owners]
    if unknown:
        raise SystemExit("Bundled files no Debian package owns (licence unknown):\n  " + "\n  ".join(unknown[:20]))
    packages = sorted(set(owners.values()))
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *packages], capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


def _dpkg_owners(paths: list[str]) -> dict[str, str]:
    """{path: package} for the paths dpkg knows (one query for all)."""
    if not paths:
        return {}
    out = subprocess.run(["dpkg-query", "-S", *paths], capture_output=True, text=True)
    owners = {}
    for line in out.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        if path in paths:
            owners[path] = pkgs.split(",")[0].split(":")[0].strip()  # "libfoo:amd64" -> "libfoo"
    return owners
