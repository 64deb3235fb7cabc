"""Fault injection: the engine under damaged files, full disks, read-only shares, rewritten rasters,
bad options, unreadable pixels and signals. What must hold in every case: nothing finished is lost,
nothing is silently wrong (damaged rows are never read), and every failure of the command line is
one line `sketch-search COMMAND: error: ...` with exit code 2 (130 for Ctrl-C).

Real GeoTIFFs, the tiny seeded model, real subprocesses for signals and SIGBUS-prone disks. Tests
that need root (tmpfs, read-only bind mounts) are skipped with the reason elsewhere, except that
a read-only index falls back to file permissions when not root.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.index import list_entries
from engine.index.store import COMMIT_FILE
from engine.raster.rasterio_source import RasterioSource
from engine.search import SearchError, SearchOptions, build_index, run_search

ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
TILES = 35  # the 600 x 800 px test raster at 60 m with 50 % overlap


# -- shared set-up ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, geo, emb, bar_sketch):
    """A raster, its complete index (vectors and tokens) and the reference rankings without index."""
    base = tmp_path_factory.mktemp("faults")
    tif = geo.write_tif(base / "r.tif", geo.pattern(600, 800))
    index = base / "index"
    src = RasterioSource(tif)
    opts = SearchOptions(index_dir=index, tile_sizes_m=(60,), top_k=5, candidates=10, stage2=False)
    build_index(emb, [src], options=SearchOptions(**{**opts.__dict__, "stage2": True}))
    ref1 = _ranking(run_search(emb, bar_sketch, [src], options=SearchOptions(**{**opts.__dict__, "use_index": False})))
    ref2 = _ranking(run_search(emb, bar_sketch, [src], options=SearchOptions(
        **{**opts.__dict__, "use_index": False, "stage2": True})))
    (entry,) = list_entries(index)
    return {"tif": tif, "index": index, "opts": opts, "stage1": ref1, "stage2": ref2,
            "entry": Path(entry["folder"]).name}


def _ranking(result) -> list[tuple[str, float]]:
    return [(m.geometry.wkt, round(m.score, 4)) for m in result.matches]


def _copy_index(world, dest: Path) -> Path:
    shutil.copytree(world["index"], dest)
    return dest / world["entry"]


def _opts(world, index: Path, **kw) -> SearchOptions:
    return SearchOptions(**{**world["opts"].__dict__, "index_dir": index, **kw})


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# -- damaged index files ------------------------------------------------------------------------------
def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _zero_row(path: Path, row: int, row_bytes: int) -> None:
    data = bytearray(path.read_bytes())
    data[row * row_bytes:(row + 1) * row_bytes] = bytes(row_bytes)
    path.write_bytes(bytes(data))


def _other_commit(path: Path) -> None:
    np.savez(path.open("wb"), state=np.ones(7, np.uint8), tokstate=np.zeros(7, np.uint8),
             cls_crc=np.zeros(1, np.uint32), tok_crc=np.zeros(0, np.uint32))


def _unchecked_state(folder: Path) -> None:
    """A state that claims every tile while its checksums are those of an empty entry."""
    with np.load(folder / COMMIT_FILE) as z:
        parts = {k: z[k] for k in z.files}
    parts["cls_crc"] = np.zeros_like(parts["cls_crc"])
    np.savez((folder / COMMIT_FILE).open("wb"), **parts)


def _meta_of_another_entry(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta["key"]["tile_m"] = 61.0
    (folder / "meta.json").write_text(json.dumps(meta))


DAMAGES = {
    "vectors truncated to nothing": lambda f: os.truncate(f / "cls.f32", 0),
    "vectors cut in half": lambda f: os.truncate(f / "cls.f32", os.path.getsize(f / "cls.f32") // 2),
    "vectors one byte too long": lambda f: f.joinpath("cls.f32").open("ab").write(b"\0"),
    "vectors file missing": lambda f: (f / "cls.f32").unlink(),
    "one bit flipped in a vector": lambda f: _flip(f / "cls.f32", 17 * 256 + 9),
    "a vector zeroed": lambda f: _zero_row(f / "cls.f32", 3, 256),
    "commit file empty": lambda f: os.truncate(f / COMMIT_FILE, 0),
    "commit file cut in half": lambda f: os.truncate(f / COMMIT_FILE, os.path.getsize(f / COMMIT_FILE) // 2),
    "commit file garbage": lambda f: (f / COMMIT_FILE).write_bytes(os.urandom(900)),
    "commit file of another entry size": lambda f: _other_commit(f / COMMIT_FILE),
    "commit file missing": lambda f: (f / COMMIT_FILE).unlink(),
    "state claims rows its checksums do not cover": _unchecked_state,
    "meta.json missing": lambda f: (f / "meta.json").unlink(),
    "meta.json garbage": lambda f: (f / "meta.json").write_text("{not json"),
    "meta.json of another entry": _meta_of_another_entry,
    "tokens truncated to nothing": lambda f: os.truncate(f / "tokens.f16", 0),
    "one bit flipped in the tokens": lambda f: _flip(f / "tokens.f16", 1234),
    "tokens zeroed": lambda f: (f / "tokens.f16").write_bytes(bytes(os.path.getsize(f / "tokens.f16"))),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_entry_is_recomputed_never_read(tmp_path, world, emb, bar_sketch, damage, caplog):
    folder = _copy_index(world, tmp_path / "index")
    DAMAGES[damage](folder)
    stage2 = "tokens" in damage
    opts = _opts(world, tmp_path / "index", stage2=stage2)
    src = RasterioSource(world["tif"])
    first = run_search(emb, bar_sketch, [src], options=opts)
    assert _ranking(first) == world["stage2" if stage2 else "stage1"]  # the same as computing from scratch
    if stage2:
        assert first.computed == 0  # damaged tokens cost the tokens only, not the vectors
    assert any(str(folder) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    # repaired: the next search computes nothing and the entry checks out whole
    again = run_search(emb, bar_sketch, [src], options=opts)
    assert again.computed == 0 and _ranking(again) == _ranking(first)
    (entry,) = list_entries(tmp_path / "index")
    assert entry["problems"] == [] and entry["embedded"] + entry["skipped"] == TILES
    assert _leftovers(tmp_path / "index") == []


def test_index_info_names_the_damage_and_calls_healthy_entries_healthy(tmp_path, world, capsys):
    folder = _copy_index(world, tmp_path / "index")
    (tmp_path / "index" / "stray").mkdir()
    _flip(folder / "cls.f32", 5)
    assert main(["index", "info", "--index-dir", str(tmp_path / "index")]) == 0
    out = capsys.readouterr().out
    assert "0 of 35 tiles embedded" in out and "damaged: " in out and "cls.f32: 35 tiles failed their checksum" in out
    assert "stray: not a readable entry" in out
    shutil.rmtree(folder)
    _copy_index(world, tmp_path / "healthy")
    assert main(["index", "info", "--index-dir", str(tmp_path / "healthy")]) == 0
    out = capsys.readouterr().out
    assert "35 of 35 tiles embedded" in out and "damaged" not in out and "unreadable" not in out


def test_temporary_files_are_never_taken_for_finished_work(tmp_path, world, emb, bar_sketch):
    """A run killed while publishing its work leaves temporaries that hold *more* than the committed
    state; a later search must compute what the committed state lacks and clear them away."""
    src = RasterioSource(world["tif"])
    index = tmp_path / "index"
    with pytest.raises(SearchError):  # an entry with nothing committed: cancelled at once
        run_search(emb, bar_sketch, [src], options=_opts(world, index), is_cancelled=lambda: True)
    folder = index / world["entry"]
    committed = np.load(folder / COMMIT_FILE)["state"]
    full = world["index"] / world["entry"]
    shutil.copy(full / COMMIT_FILE, folder / f".{COMMIT_FILE}.4242.tmp")      # killed before the rename
    shutil.copy(full / "cls.f32", folder / ".cls.f32.4242.tmp")
    (folder / ".export-x1y2").mkdir()                                           # killed writing tiles.gpkg
    shutil.copy(full / "tiles.gpkg", folder / ".export-x1y2" / "tiles.gpkg")
    (index / f".{'0' * 24}.999999999.tmp").mkdir()                             # killed creating an entry
    res = run_search(emb, bar_sketch, [src], options=_opts(world, index))
    assert res.computed == TILES - int((committed != 0).sum())
    assert _ranking(res) == world["stage1"]
    assert _leftovers(index) == [] and (folder / "tiles.gpkg").is_file()


def test_a_missing_tile_layer_is_written_again(tmp_path, world, emb, bar_sketch):
    """Killed after the last commit but before tiles.gpkg: the next run writes it, computing nothing."""
    folder = _copy_index(world, tmp_path / "index")
    (folder / "tiles.gpkg").unlink()
    res = run_search(emb, bar_sketch, [RasterioSource(world["tif"])], options=_opts(world, tmp_path / "index"))
    assert res.computed == 0 and (folder / "tiles.gpkg").is_file()


# -- read-only index ------------------------------------------------------------------------------------


from tests.read_only import read_only  # noqa: E402 (shared with the plugin tests)

def _snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", ["whole", "new scale", "damaged", "absent"])
def test_a_read_only_index_is_searched_and_never_written(tmp_path, world, emb, bar_sketch, case, caplog):
    index = tmp_path / "index"
    folder = _copy_index(world, index)
    if case == "damaged":
        _flip(folder / "cls.f32", 100)
    if case == "absent":
        shutil.rmtree(folder)
    sizes = (60.0, 120.0) if case == "new scale" else (60.0,)
    src = RasterioSource(world["tif"])
    expected = _ranking(run_search(emb, bar_sketch, [src], options=_opts(world, index, use_index=False,
                                                                                  tile_sizes_m=sizes)))
    before = _snapshot(index)
    with read_only(index):
        res = run_search(emb, bar_sketch, [src], options=_opts(world, index, tile_sizes_m=sizes))
        assert _ranking(res) == expected
        assert res.computed == {"whole": 0, "new scale": 6, "damaged": TILES, "absent": TILES}[case]
        assert main(["index", "info", "--index-dir", str(index)]) == 0
    assert _snapshot(index) == before
    if case != "whole":
        assert any("cannot be written" in r.getMessage() for r in caplog.records)


# -- full disk --------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only): a disk that really fills up."""
    if not IS_ROOT:
        pytest.skip("a full disk is made with a small tmpfs, which needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("root without the right to mount a tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


FULL_DISK_SCRIPT = """
import io, json, os, shutil, sys
import engine.index.build as build
from engine.cli import main

mnt, argv = sys.argv[1], sys.argv[2:]
build.check_disk_space = lambda *a, **k: None  # the disk fills while the run goes on, after the check
report = []
for keep_free_kb in (0, 12, 64, 768):  # fails creating, committing, writing the output; fits
    shutil.rmtree(os.path.join(mnt, "idx"), ignore_errors=True)
    for name in os.listdir(mnt):
        os.remove(os.path.join(mnt, name))
    with open(os.path.join(mnt, "filler"), "wb") as fh:
        fh.write(bytes(max(0, shutil.disk_usage(mnt).free - keep_free_kb * 1024)))
    err, sys.stderr = sys.stderr, io.StringIO()
    code = main(argv + ["--out", os.path.join(mnt, "out.gpkg")])
    text, sys.stderr = sys.stderr.getvalue(), err
    left = [os.path.join(d, n) for d, ds, fs in os.walk(mnt) for n in ds + fs if n.startswith(".")]
    report.append({"free_kb": keep_free_kb, "code": code, "stderr": text, "leftovers": left})
os.remove(os.path.join(mnt, "filler"))  # space again: the same index completes
report.append({"rerun": main(argv + ["--out", os.path.join(mnt, "again.gpkg")])})
print(json.dumps(report))
"""


def test_a_full_disk_is_one_clear_error_and_leaves_nothing_behind(small_disk, cli, world, tiny_checkpoint, tmp_path,
                                                                  capfd):
    # checked before anything is written: nothing at all is left
    args = ["--index-dir", str(small_disk / "idx")]
    with open(small_disk / "filler", "wb") as fh:
        fh.write(bytes(shutil.disk_usage(small_disk).free - 64 * 1024))
    code, _, err = cli(*args, capfd=capfd)
    _one_line_error(code, err)
    assert "not enough free disk space for the tile index" in err and os.listdir(small_disk) == ["filler"]
    (small_disk / "filler").unlink()
    # the disk fills up during the run, at different moments (a subprocess: a SIGBUS must not kill pytest)
    argv = ["search", "--raster", str(world["tif"]), "--sketch", str(tmp_path / "s.png"), "--checkpoint",
            str(tiny_checkpoint), "--device", "cpu", "--index-dir", str(small_disk / "idx"), "--tile-size", "60",
            "120", "--top-k", "3"]
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(small_disk)] + argv,
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]  # no SIGBUS (135), no traceback
    assert proc.stderr == ""  # nothing from GDAL, fiona or numpy reached the terminal
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report.pop()["rerun"] == 0
    assert [r["code"] for r in report][:2] == [2, 2] and report[-1]["code"] == 0, report
    for r in report:
        assert r["leftovers"] == [], r
        if r["code"] != 0:
            assert r["code"] == 2 and r["stderr"].count("\n") == 1, r
            assert r["stderr"].startswith("sketch-search search: error: ") and "disk is full" in r["stderr"], r


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}
    env.pop("SKETCH_SEARCH_INDEX", None)
    return env


# -- rewritten rasters ------------------------------------------------------------------------------------
def _rewrite_keeping_stamp(path: Path, write) -> None:
    st = os.stat(path)
    write()
    assert os.path.getsize(path) == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("kind", ["geotiff", "vrt source", "large geotiff"])
def test_pixels_rewritten_with_size_and_mtime_kept_are_noticed(tmp_path, geo, emb, bar_sketch, kind):
    shape = (1200, 1200) if kind == "large geotiff" else (600, 800)  # 4.3 MB: sampled, not hashed whole
    tif = geo.write_tif(tmp_path / "x.tif", geo.pattern(*shape))
    path = geo.write_vrt(tmp_path / "x.vrt", tif) if kind == "vrt source" else tif
    opts = SearchOptions(index_dir=tmp_path / "idx", tile_sizes_m=(120,), top_k=5, stage2=False)
    first = run_search(emb, bar_sketch, [RasterioSource(path)], options=opts)
    _rewrite_keeping_stamp(tif, lambda: geo.write_tif(tif, geo.pattern(*shape, seed=11)))
    again = run_search(emb, bar_sketch, [RasterioSource(path)], options=opts)
    fresh = run_search(emb, bar_sketch, [RasterioSource(path)], options=SearchOptions(**{**opts.__dict__,
                                                                                       "use_index": False}))
    assert again.computed == first.computed and again.cached == 0
    assert _ranking(again) == _ranking(fresh) != _ranking(first)


def test_overview_and_mask_files_are_part_of_the_identity(tmp_path, geo):
    tif = geo.write_tif(tmp_path / "x.tif", geo.pattern(600, 800))
    before = RasterioSource(tif).identity
    Path(str(tif) + ".ovr").write_bytes(b"an overview file")
    with_ovr = RasterioSource(tif).identity
    Path(str(tif) + ".ovr").write_bytes(b"another overview")
    assert len({before, with_ovr, RasterioSource(tif).identity}) == 3


# -- the command line: one line for every failure ---------------------------------------------------------
@pytest.fixture
def cli(tmp_path, world, tiny_checkpoint):
    from PIL import Image

    sketch = np.full((64, 64, 3), 255, np.uint8)
    sketch[10:54, 30:34] = 0
    Image.fromarray(sketch).save(tmp_path / "s.png")

    def run(*extra, command="search", raster=None, capfd=None):
        argv = [command] + (["build"] if command == "index" else [])
        argv += ["--raster", str(raster or world["tif"]), "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                 "--index-dir", str(tmp_path / "idx"), "--tile-size", "60"]
        if command == "search":
            argv += ["--sketch", str(tmp_path / "s.png"), "--out", str(tmp_path / "out.gpkg")]
        try:
            code = main(argv + list(extra))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capfd.readouterr()
        return code, out, err
    return run


def _one_line_error(code, err, command="search"):
    assert code == 2, err
    assert err.startswith(f"sketch-search {command}: error: ") and err.count("\n") == 1, err


BAD_OPTIONS = [
    (["--tile-size", "nan"], "tile size must be a positive number"),
    (["--tile-size", "inf"], "tile size must be a positive number"),
    (["--tile-size", "-60"], "tile size must be a positive number"),
    (["--tile-size", "0"], "tile size must be a positive number"),
    (["--min-valid", "nan"], "min-valid must be a share from 0 to 1"),
    (["--min-valid", "2"], "min-valid must be a share from 0 to 1"),
    (["--min-valid", "-0.1"], "min-valid must be a share from 0 to 1"),
    (["--overlap", "nan"], "overlap must be at least 0 and below 1"),
    (["--overlap", "1"], "overlap must be at least 0 and below 1"),
    (["--top-k", "0"], "top-k must be at least 1"),
    (["--candidates", "0"], "candidates must be a whole number of at least 1"),
    (["--max-tiles", "-1"], "max-tiles must be a whole number of at least 0"),
    (["--top-k", "many"], "invalid int value"),
    (["--no-such-option"], "unrecognized arguments"),
    (["--out-crs", "EPSG:999999"], "unknown CRS"),
    (["--bbox", "1", "1", "0", "0"], "empty bounding box"),
]


@pytest.mark.parametrize("extra,needle", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_options_are_one_line(cli, capfd, tmp_path, extra, needle):
    code, _, err = cli(*extra, capfd=capfd)
    _one_line_error(code, err)
    assert needle in err
    assert not (tmp_path / "out.gpkg").exists() and not (tmp_path / "idx").exists()


NOTHING = {
    "all nodata": (lambda geo, p: geo.write_tif(p, np.zeros((3, 300, 300), np.uint8), nodata=0), [],
                   "every tile of n.tif in the search area (60 m) has less than 50% valid pixels"),
    "one pixel": (lambda geo, p: geo.write_tif(p, np.full((3, 1, 1), 9, np.uint8)), [],
                  "n.tif (1 x 1 px) is smaller than 50% of a 60 m tile"),
    "tile larger than the raster": (lambda geo, p: geo.write_tif(p, geo.pattern(300, 300)),
                                    ["--tile-size", "1e9"], "is smaller than 50% of a 1e+09 m tile"),
    "min-valid 1 over a raster with a nodata edge": (
        lambda geo, p: geo.write_tif(p, geo.pattern(300, 300) * (np.arange(300) < 180), nodata=0),
        ["--min-valid", "1", "--tile-size", "90"], "has less than 100% valid pixels"),
}


@pytest.mark.parametrize("command", ["search", "index"])
@pytest.mark.parametrize("case", list(NOTHING))
def test_nothing_to_search_says_why(cli, capfd, tmp_path, geo, case, command):
    make, extra, needle = NOTHING[case]
    raster = make(geo, tmp_path / "n.tif")
    code, _, err = cli(*extra, command=command, raster=raster, capfd=capfd)
    _one_line_error(code, err, command)
    assert f"nothing to {'search' if command == 'search' else 'index'}: " in err and needle in err
    assert not (tmp_path / "out.gpkg").exists() and _leftovers(tmp_path) == []


def test_unreadable_pixels_are_one_line(cli, capfd, tmp_path, geo, emb, bar_sketch):
    whole = geo.write_tif(tmp_path / "whole.tif", geo.pattern(600, 800))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    code, _, err = cli(raster=cut, capfd=capfd)
    _one_line_error(code, err)
    assert f"cannot read the pixels of {cut}" in err and "truncated or damaged" in err
    # the Python API (and so the plugin's worker) raises a SearchError with the same line
    with pytest.raises(SearchError, match="cannot read the pixels"):
        run_search(emb, bar_sketch, [RasterioSource(cut)],
                   options=SearchOptions(index_dir=tmp_path / "i2", tile_sizes_m=(60,)))
    assert not (tmp_path / "out.gpkg").exists() and _leftovers(tmp_path) == []


def test_a_vrt_whose_source_is_gone_is_one_line(cli, capfd, tmp_path, geo):
    tif = geo.write_tif(tmp_path / "src.tif", geo.pattern(600, 800))
    vrt = geo.write_vrt(tmp_path / "m.vrt", tif)
    tif.unlink()
    code, _, err = cli(raster=vrt, capfd=capfd)
    _one_line_error(code, err)
    assert f"{vrt} refers to a file that does not exist: {tif}" in err


def test_index_build_into_a_read_only_index_is_one_line(tmp_path, world, cli, capfd):
    (tmp_path / "idx").mkdir()
    with read_only(tmp_path / "idx"):
        code, _, err = cli("--tile-size", "120", command="index", capfd=capfd)
    _one_line_error(code, err, "index")
    assert f"cannot build the tile index in {tmp_path / 'idx'}" in err


def test_index_clear_on_a_read_only_index_is_one_line(tmp_path, world, capfd):
    _copy_index(world, tmp_path / "index")
    with read_only(tmp_path / "index"):
        code = main(["index", "clear", "--all", "--index-dir", str(tmp_path / "index")])
    _, err = capfd.readouterr()
    if IS_ROOT:  # permissions do not stop root; the read-only mount does
        _one_line_error(code, err, "index")
        assert str(tmp_path / "index") in err


def test_library_messages_stay_off_the_terminal_unless_verbose(cli, capfd):
    """GDAL/PROJ print "ERROR 1: PROJ: ..." straight to file descriptor 2 for an unknown CRS."""
    code, _, err = cli("--out-crs", "EPSG:999999", capfd=capfd)
    _one_line_error(code, err)
    assert err.startswith("sketch-search search: error: unknown CRS 'EPSG:999999'")
    code, _, err = cli("--out-crs", "EPSG:999999", "-v", capfd=capfd)
    assert code == 2 and "ERROR 1: PROJ" in err and err.count("\n") > 1


# -- signals at random moments ----------------------------------------------------------------------------
SLOW_BUILD = """
import sys, time
sys.argv[0] = "sketch-search"
import engine.cli  # first, as in the console script: from here on Ctrl-C is one line
import engine.index.build as build
build.COMMIT_SECONDS = 0.0      # commit after every batch, so a signal can land anywhere in a commit
real = build.read_tiles
def slow(*a, **k):
    time.sleep(0.2)
    return real(*a, **k)
build.read_tiles = slow
sys.exit(engine.cli.main())
"""


def _interrupt_builds(tmp_path, world, tiny_checkpoint, moments, sig) -> list[tuple[object, int, str, str]]:
    """One build per moment, each continuing the same index, signalled at that moment: a number
    of seconds after the start, or "computing" (once the first tiles are committed)."""
    script = tmp_path / "sketch-search"
    script.write_text(SLOW_BUILD)
    argv = [sys.executable, str(script), "index", "build", "--raster", str(world["tif"]), "--checkpoint",
            str(tiny_checkpoint), "--device", "cpu", "--index-dir", str(tmp_path / "idx"), "--tile-size", "30", "60"]
    results = []
    for moment in moments:
        before = _embedded(tmp_path / "idx")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                                cwd=tmp_path)
        if moment == "computing":
            deadline = time.time() + 120
            while _embedded(tmp_path / "idx") <= before and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
        else:
            time.sleep(moment)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        results.append((moment, proc.returncode, out, err))
    return results


def _embedded(index: Path) -> int:
    try:
        return sum(int((np.load(f / COMMIT_FILE)["state"] != 0).sum())
                   for f in index.iterdir() if not f.name.startswith("."))
    except (OSError, ValueError, KeyError):  # a commit being replaced right now
        return 0


def _assert_resumed_equals_clean(tmp_path, world, emb):
    """Finish the interrupted index, then compare every stored row with a clean build."""
    src = RasterioSource(world["tif"])
    opts = SearchOptions(tile_sizes_m=(30, 60), stage2=False)
    build_index(emb, [src], options=SearchOptions(**{**opts.__dict__, "index_dir": tmp_path / "idx"}))
    build_index(emb, [src], options=SearchOptions(**{**opts.__dict__, "index_dir": tmp_path / "clean"}))
    for resumed, clean in zip(list_entries(tmp_path / "idx"), list_entries(tmp_path / "clean")):
        assert resumed["problems"] == [] and resumed["embedded"] == clean["embedded"] > 0
        a = np.fromfile(Path(resumed["folder"]) / "cls.f32", np.float32)
        b = np.fromfile(Path(clean["folder"]) / "cls.f32", np.float32)
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert _leftovers(tmp_path / "idx") == []


def _ctrl_c_holds(results):
    for moment, code, out, err in results:
        if "index ready" in out:  # the build had finished; Ctrl-C met the interpreter's exit
            assert code in (0, -signal.SIGINT, 130) and "Traceback" not in err, (moment, code, err)
            continue
        assert code == 130 and err == "sketch-search index: interrupted\n", (moment, code, err)


def test_ctrl_c_at_any_moment_is_one_line_and_resumes_exactly(tmp_path, world, tiny_checkpoint, emb):
    # during the heavy imports (before any work), then in the middle of computing; more moments in
    # the slow test below
    results = _interrupt_builds(tmp_path, world, tiny_checkpoint, [0.3, "computing"], signal.SIGINT)
    _ctrl_c_holds(results)
    assert all("index ready" not in out for _, _, out, _ in results)
    _assert_resumed_equals_clean(tmp_path, world, emb)


@pytest.mark.slow
def test_many_random_signals_then_resume_exactly(tmp_path, world, tiny_checkpoint, emb):
    rng = random.Random(9)
    # from 0.1 s on: before that Python itself is starting (its site module), where no program can
    # answer Ctrl-C
    moments = [0.1, 0.5, 1.0, "computing", "computing"] + [rng.uniform(0.1, 6) for _ in range(10)]
    _ctrl_c_holds(_interrupt_builds(tmp_path, world, tiny_checkpoint, moments, signal.SIGINT))
    for moment, code, out, _ in _interrupt_builds(tmp_path, world, tiny_checkpoint,
                                                  [rng.uniform(2, 7) for _ in range(6)], signal.SIGKILL):
        assert code == -signal.SIGKILL or "index ready" in out, (moment, code)
    _assert_resumed_equals_clean(tmp_path, world, emb)


@pytest.mark.slow
def test_two_builds_at_once_share_the_work_and_agree(tmp_path, world, tiny_checkpoint, emb):
    script = tmp_path / "sketch-search"
    script.write_text(SLOW_BUILD)
    argv = [sys.executable, str(script), "index", "build", "--raster", str(world["tif"]), "--checkpoint",
            str(tiny_checkpoint), "--device", "cpu", "--index-dir", str(tmp_path / "idx"), "--tile-size", "30", "60"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
             for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and err == "" and "index ready" in out, err
    _assert_resumed_equals_clean(tmp_path, world, emb)
