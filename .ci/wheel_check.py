"""Check a repaired Linux wheel of convx (issue 13): what .ci/wheel verifies.

    python .ci/wheel_check.py REPAIRED.whl [--unrepaired WHEEL.whl] [--forbid PATH ...]

* the tag is manylinux_X_Y_<arch> (filename and WHEEL file);
* the wheel holds the extension convx/_core*.so, convx/py.typed and
  convx/_core.pyi (the typing work adds those two), and no C source (the
  generated _core.c) nor Cython's annotation HTML;
* libgomp is vendored: the extension NEEDs a libgomp-<hash>.so that the wheel
  carries under convx_numpy.libs/, and nothing else outside the manylinux
  policy's system libraries;
* the extension's RPATH / RUNPATH entries are all $ORIGIN-relative (the
  unrepaired wheel carries the build interpreter's library directory);
* every shared object is stripped: no .symtab, no .debug_* sections; with
  --unrepaired, the extension's size before and after is printed, and the
  stripped one must be at most half the size;
* no build-machine path (each --forbid PATH, e.g. the clone and the build
  directory; and build's /build-via-sdist-, pip's /build-env- directories)
  appears in a shared object.

Needs binutils' readelf.  Prints what it found; exits 1 with one line per
failed check.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import zipfile

EXT = re.compile(r"^convx/_core\.[^/]*\.so$")
GOMP = re.compile(r"^convx_numpy\.libs/(libgomp-[0-9a-f]+\.so[.0-9]*)$")


def readelf(*args):
    return subprocess.run(["readelf", *args], check=True, capture_output=True, text=True).stdout


def sections(path):
    return re.findall(r"^\s*\[\s*\d+\]\s+(\S+)", readelf("-S", "-W", path), re.MULTILINE)


def dynamic(path, tag):
    """The values of one dynamic-section tag: NEEDED, RPATH or RUNPATH."""
    values = []
    for line in readelf("-d", "-W", path).splitlines():
        if f"({tag})" in line:
            values += re.search(r"\[(.*)\]", line).group(1).split(":")
    return values


def extension_size(wheel):
    with zipfile.ZipFile(wheel) as zf:
        return next(i.file_size for i in zf.infolist() if EXT.match(i.filename))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel")
    parser.add_argument("--unrepaired", help="the wheel before auditwheel repair")
    parser.add_argument("--forbid", action="append", default=[],
                        help="a build-machine path that must not appear in a shared object")
    args = parser.parse_args()
    failures = []

    def check(ok, message):
        if not ok:
            failures.append(message)
        return ok

    name = os.path.basename(args.wheel)
    print(f"wheel: {name} ({os.path.getsize(args.wheel) / 1e6:.2f} MB)")
    arch = os.uname().machine
    check(re.fullmatch(rf"convx_numpy-[^-]+-cp\d+-cp\d+t?-manylinux_\d+_\d+_{arch}"
                       rf"(\.manylinux[_0-9a-z]+)*\.whl", name),
          f"the filename's platform tag is not manylinux_X_Y_{arch}: {name}")

    with zipfile.ZipFile(args.wheel) as zf:
        names = zf.namelist()
        wheel_file = next((n for n in names if n.endswith(".dist-info/WHEEL")), None)
        tags = re.findall(r"^Tag: (.*)$", zf.read(wheel_file).decode(), re.MULTILINE) if wheel_file else []
        # (with its legacy alias where auditwheel adds one: manylinux2014_x86_64)
        check(tags and all(re.search(rf"-manylinux(_\d+_\d+|1|2010|2014)_{arch}$", t)
                           for t in tags),
              f"the WHEEL file's tags are not all manylinux_X_Y_{arch}: {tags}")
        print(f"  tags: {', '.join(tags)}")

        exts = [n for n in names if EXT.match(n)]
        check(len(exts) == 1, f"expected one convx/_core*.so in the wheel, found {exts}")
        for wanted in ("convx/py.typed", "convx/_core.pyi"):
            check(wanted in names, f"{wanted} is not in the wheel (PEP 561: the typing work "
                                   f"ships it as package data)")
        sources = [n for n in names if n.endswith((".c", ".cpp", ".html"))]
        check(not sources, f"generated C or annotation HTML in the wheel: {sources}")
        libs = [n for n in names if n.startswith("convx_numpy.libs/") and not n.endswith("/")]
        gomp = [GOMP.match(n).group(1) for n in libs if GOMP.match(n)]
        print(f"  vendored: {', '.join(libs) or 'nothing'}")
        check(len(gomp) == 1, f"expected libgomp vendored under convx_numpy.libs/, found {libs}")

        with tempfile.TemporaryDirectory() as tmp:
            zf.extractall(tmp, [n for n in names if n.endswith(".so") or ".so." in n])
            shared = sorted(n for n in names if n.endswith(".so") or ".so." in n)
            if exts:
                ext = os.path.join(tmp, exts[0])
                needed = dynamic(ext, "NEEDED")
                paths = dynamic(ext, "RPATH") + dynamic(ext, "RUNPATH")
                print(f"  {exts[0]}: NEEDED {', '.join(needed)}; RPATH/RUNPATH {paths}")
                check(not gomp or gomp[0] in needed,
                      f"the extension does not load the vendored {gomp}: NEEDED {needed}")
                check(not any(re.fullmatch(r"libgomp\.so[.0-9]*", n) for n in needed),
                      f"the extension still NEEDs the system's libgomp: {needed}")
                check(paths and all(p.startswith("$ORIGIN") for p in paths),
                      f"RPATH/RUNPATH not all $ORIGIN-relative (a build-machine path?): {paths}")
            # (pip's and build's temporary build directories too: the
            # unstripped extension's debug information names them)
            forbidden = [p.encode() for p in args.forbid if p] + [b"/build-env-",
                                                                   b"/build-via-sdist-"]
            for member in shared:
                path = os.path.join(tmp, member)
                secs = sections(path)
                debug = [s for s in secs if s == ".symtab" or s.startswith(".debug")]
                check(not debug, f"{member} is not stripped: it has {debug}")
                with open(path, "rb") as fh:
                    data = fh.read()
                found = [p.decode() for p in forbidden if p in data]
                check(not found, f"{member} holds build-machine paths: {found}")
                print(f"  {member}: {len(data) / 1e3:.0f} KB, "
                      f"{'stripped' if not debug else 'NOT stripped'}")

    if args.unrepaired and exts:
        before, after = extension_size(args.unrepaired), extension_size(args.wheel)
        print(f"  extension size: {before / 1e3:.0f} KB unrepaired, {after / 1e3:.0f} KB "
              f"repaired and stripped ({after / before:.0%})")
        check(after <= before / 2,
              f"the stripped extension ({after} B) is not at most half the unstripped ({before} B)")

    for message in failures:
        print(f".ci/wheel_check.py: {message}", file=sys.stderr)
    print(f"wheel check: {'FAILED' if failures else 'ok'} ({len(failures)} failed checks)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
