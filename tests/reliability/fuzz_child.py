"""The fuzz loop, run as a child process under a memory cap (see test_fuzz.py).

``python -m tests.reliability.fuzz_child WORKDIR SEED CASES`` mutates the valid files in WORKDIR (a split file
with its images, a subset file, a run record, a cache, a CMM run's fitted file) at random, feeds each mutant to
the real readers the CLI uses, and prints one JSON line: the number of cases by outcome and every case that
ended in anything but success or a UserError (another exception, a MemoryError, or a case still running after ``CASE_SECONDS``).
"""

from __future__ import annotations

import copy
import io
import json
import random
import re
import shutil
import signal
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

CASE_SECONDS = 10

# values a hostile file might hold where a valid one holds something sensible
ODD_JSON: list[Any] = [None, True, False, -1, 0, 1, 2, 3, 7, 2**31, 2**63, 10**30, -(10**30), 0.5, 0.9, -0.0,
                       1e308, "", "x", "0", "../../etc/passwd", "/abs.png", "a\u0000b", "ü", [], {}, [[]], [0],
                       [0, 0], {"train": []}, [["a.png", 0, "red fox"]]]
ODD_ATTRS: list[Any] = [np.int64(-1), np.int64(0), np.int64(2**62), np.float64("nan"), np.float64("inf"),
                        np.float64(1e30), np.float64(-5), "1", "", "x" * 10_000, b"\xff\xfe", np.array([1, 2]),
                        np.array(["a", "b"], dtype=h5py.string_dtype()), np.float16(7)]


class CaseTimeout(BaseException):
    """A case ran past CASE_SECONDS (raised from SIGALRM): a hang."""


def _alarm(signum, frame):
    raise CaseTimeout()


# -- JSON mutations ----------------------------------------------------------------------------------
def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to the elements of a JSON value (bounded in width and depth, so huge values cost little)."""
    out = [path]
    if len(path) >= 12:
        return out
    if isinstance(value, dict):
        for key in list(value)[:50]:
            out += _nodes(value[key], path + (key,))
    elif isinstance(value, list):
        for index in range(min(len(value), 20)):
            out += _nodes(value[index], path + (index,))
    return out


def _get(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


def _odd_value(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.75:
        return copy.deepcopy(rng.choice(ODD_JSON))
    if kind < 0.85:
        return [rng.randint(-5, 40) for _ in range(rng.choice([1, 5, 10_000]))]
    if kind < 0.93:
        return "y" * rng.choice([300, 100_000])
    nested: Any = 0
    for _ in range(30):
        nested = [nested]
    return nested


def mutate_json(value: Any, rng: random.Random) -> Any:
    """1-3 random edits: replace, delete, duplicate or retype a node anywhere in the tree."""
    value = copy.deepcopy(value)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_nodes(value))
        if not path:
            value = _odd_value(rng) if rng.random() < 0.3 else value
            continue
        parent, key = _get(value, path[:-1]), path[-1]
        op = rng.random()
        if op < 0.55:
            parent[key] = _odd_value(rng)
        elif op < 0.7:
            del parent[key]
        elif op < 0.8 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op < 0.9 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = rng.choice([parent[key] + 0.5, float(parent[key]), -parent[key] - 1, str(parent[key])])
        else:
            parent[key] = [parent[key]] if rng.random() < 0.5 else {"v": parent[key]}
    return value


def write_mutant(path: Path, valid: Any, rng: random.Random) -> None:
    """A mutated copy of ``valid`` at ``path``; sometimes as broken text rather than broken structure."""
    if rng.random() < 0.15:  # a harmless edit (items reordered, one dropped): must still succeed
        mutant = copy.deepcopy(valid)
        lists = [key for key, value in mutant.items() if isinstance(value, list) and len(value) > 4]
        if lists:
            items = mutant[rng.choice(lists)]
            rng.shuffle(items)
            items.pop()
        path.write_text(json.dumps(mutant))
        return
    text = json.dumps(mutate_json(valid, rng), allow_nan=True)
    roll = rng.random()
    if roll < 0.08:
        text = text[: rng.randint(0, len(text))]
    elif roll < 0.12:
        text = text.replace("1", "1e999", 1) if "1" in text else "NaN"
    elif roll < 0.15:
        path.write_bytes(text.encode() + bytes(rng.randrange(256) for _ in range(20)))
        return
    elif roll < 0.18:  # nesting far deeper than the recursion limit, inside the valid document
        depth = rng.choice([2000, 200_000])
        text = text.replace("[", "[" * depth + "0" + "]" * depth + ", ", 1) if "[" in text else "[" * depth
    path.write_text(text)


# -- targets -----------------------------------------------------------------------------------------
def _all(*calls: Callable[[], object]) -> None:
    """Run every call; any exception but a UserError propagates at once; then the first UserError is raised."""
    from cache.errors import UserError

    first: UserError | None = None
    for call in calls:
        try:
            call()
        except UserError as exc:
            first = first or exc
    if first is not None:
        raise first


def split_case(work: Path, rng: random.Random, case: Path) -> None:
    from stages.extract.datasets import open_dataset
    from stages.shared.sampling import read_split_labels

    valid = json.loads((work / "split.json").read_text())
    path = case / "split.json"
    write_mutant(path, valid, rng)
    _all(lambda: read_split_labels(path),  # pipeline subsets --split-file
         lambda: open_dataset("folder", work / "images", split_file=path).validate())  # pipeline extract


def subset_case(work: Path, rng: random.Random, case: Path) -> None:
    from stages.shared.sampling import read_subset

    valid = json.loads((work / "shots2_seed1.json").read_text())
    path = case / "shots2_seed1.json"
    write_mutant(path, valid, rng)
    read_subset(path, 12, 3)


def record_case(work: Path, rng: random.Random, case: Path) -> None:
    from stages.shared.record import read_record  # what pipeline predict --run reads
    from stages.fit.run import _existing
    from stages.report.build import build_report

    valid_path = next((work / "runs").rglob("shots*_seed*.json"))
    valid = json.loads(valid_path.read_text())
    folder = case / "runs" / valid_path.relative_to(work / "runs").parent
    folder.mkdir(parents=True)
    path = folder / valid_path.name
    write_mutant(path, valid, rng)
    shutil.copy(valid_path.with_suffix(".npz"), path.with_suffix(".npz"))
    if rng.random() < 0.5:  # a second, valid record beside it, so the report has something to build
        second = folder / "shots1_seed2.json"
        second.write_text(json.dumps({**valid, "seed": 2}))
    assert isinstance(_existing(path, valid["cache"]["key"], "coop"), bool)  # pipeline fit: reuse or refit
    _all(lambda: read_record(path),  # pipeline predict --run
         lambda: build_report(case / "runs", case / "report", plots=False, progress=lambda _: None))


# text a crafted record may hold to inject into a report: lines, NULs, formulas, Markdown, LaTeX, mathtext
HOSTILE = ["x\n# Injected", "\r\n## Injected\n| a | b |", "a\x00b", "=1+2", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx",
           "|a|b|", "*b*", "`c`", "<script>", "x\u2028# H", "$\\frac{", "\\input{/etc/passwd}", "\\write18{ls}",
           "[l](javascript:x)", "_u_", "\x1b[31mred", "#", "—"]
REPORT_HEADINGS = ("# Report", "## Headline", "## CMM ablations", "## Method variants", "## Versions", "## Tables",
                   "## Plots")


def _hostile(rng: random.Random) -> str:
    return "".join(rng.choice(HOSTILE) for _ in range(rng.randint(1, 2)))


def _plant(record: dict, rng: random.Random) -> None:
    """Put hostile text where a report shows record text: a name, a hyper-parameter, a version, a shift target."""
    where = rng.choice(["dataset", "model", "weights", "method", "method_label", "template_set", "hyperparameters",
                        "versions", "shift"])
    text = _hostile(rng)
    if where in ("hyperparameters", "versions"):
        key, value = (text, "1") if rng.random() < 0.5 else ("k", text)
        record.setdefault(where, {})[key] = value
    elif where == "shift":
        record["metrics"]["shift"] = {text: 50.0}
    elif where == "method_label":
        record[where] = rng.choice(["", "linear_probe+", "cmm+"]) + text
    else:
        record[where] = rng.choice(["", record.get(where) or ""]) + text


def _check_report(out: Path) -> None:
    """What no record can change: the index's headings, one cell count per Markdown table, no NUL, no CSV cell that
    starts a formula, no TeX command from a record."""
    import csv

    from stages.report.escape import FORMULA_START

    for line in (out / "README.md").read_text(encoding="utf-8").splitlines():
        assert not line.startswith("#") or line in REPORT_HEADINGS or line.startswith("#### "), line
    for path in out.rglob("*"):
        if path.suffix not in (".md", ".csv", ".json", ".tex", ".svg"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "\x00" not in text, path
        if path.suffix == ".md" and path.name != "README.md":
            rows = [line for line in text.splitlines() if line.startswith("|")]
            assert len({len(re.findall(r"(?<!\\)\|", row)) for row in rows}) == 1, (path, rows)
        if path.suffix == ".csv":
            for row in csv.reader(io.StringIO(text, newline="")):
                for cell in row:
                    assert not cell.startswith(FORMULA_START) or re.fullmatch(r"-?[0-9.e+-]+", cell), (path, cell)
        if path.suffix == ".tex":
            assert not re.search(r"(?<!textbackslash\{\})\\(input|write18)", text), path


def report_case(work: Path, rng: random.Random, case: Path) -> None:
    """A record holding hostile text (issue 22 item 7): refused when read, or reported with everything escaped."""
    from stages.report.build import build_report

    valid_path = next((work / "runs").rglob("shots*_seed*.json"))
    valid = json.loads(valid_path.read_text())
    folder = case / "runs" / valid_path.relative_to(work / "runs").parent
    folder.mkdir(parents=True)
    crafted = copy.deepcopy(valid)
    for _ in range(rng.randint(1, 2)):
        _plant(crafted, rng)
    (folder / valid_path.name).write_text(json.dumps(crafted))
    shutil.copy(valid_path.with_suffix(".npz"), folder / valid_path.with_suffix(".npz").name)
    if rng.random() < 0.6:  # a valid record too, so that a refused crafted one still leaves a report
        (folder / "shots1_seed2.json").write_text(json.dumps({**valid, "seed": 2}))
    build_report(case / "runs", case / "report", plots=rng.random() < 0.1, progress=lambda _: None)
    _check_report(case / "report")


def _mutate_cache(f: h5py.File, rng: random.Random) -> None:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.5:  # a root attribute
            attr = rng.choice(list(f.attrs) + ["logit_scale", "key", "schema_version", "format"])
            if rng.random() < 0.2 and attr in f.attrs:
                del f.attrs[attr]
            else:
                f.attrs[attr] = rng.choice(ODD_ATTRS)
        elif roll < 0.7:  # a dataset attribute (block_rows, lead_axes, ...)
            target = f[rng.choice(names)]
            attr = rng.choice(list(target.attrs) or ["block_rows"])
            target.attrs[attr] = rng.choice(ODD_ATTRS)
        else:  # the values of a small integer array: labels, positions, bad flags, done masks
            small = [n for n in names if f[n].dtype.kind in "iu" and f[n].ndim == 1]
            target = f[rng.choice(small)]
            values = target[()]
            if len(values):
                info = np.iinfo(target.dtype)
                odd = rng.choice([-1, 0, 1, len(values), 2**31 - 1, 255])
                values[rng.randrange(len(values))] = min(max(odd, info.min), info.max)
                target[...] = values


def cache_case(work: Path, rng: random.Random, case: Path) -> None:
    from click.testing import CliRunner

    from cache import CacheWriter, FeatureCache
    from cache.errors import UserError
    from pipeline.commands.info import info

    path = case / "c.h5"
    shutil.copy(work / "c.h5", path)
    with h5py.File(path, "r+") as f:
        key_fields = {k[4:]: str(v) for k, v in f.attrs.items() if k.startswith("key.")}
        _mutate_cache(f, rng)
    result = CliRunner().invoke(info, [str(path)])
    if result.exception is not None and not isinstance(result.exception, (UserError, SystemExit)):
        raise result.exception

    def read() -> None:  # what fit and predict read
        cache = FeatureCache(path)
        cache.describe()
        cache.logit_scale
        cache.parent_class_ids
        for split in cache.splits:
            cache.split_labels(split)
            cache.features(split)
            cache.skipped_paths(split)
        for template_set in cache.template_sets:
            cache.text_features(template_set)

    def extend() -> None:  # pipeline extract reopening it to extend it (copy, check arrays, resume blocks)
        with CacheWriter(path, key_fields) as writer:
            for name in ("image/train/features", "text/coop/features"):
                if name in writer:
                    found = writer.file[name]
                    writer.array(name, found.shape, found.dtype, block_rows=4).missing()

    _all(read, extend)


# -- fitted .npz mutations -----------------------------------------------------------------------------
ODD_DESCRS = ["<f8", "<f2", ">f4", "<i8", "|u1", "|b1", "<c16", "|O", "<U7", "|V8", "|S3", "<M8[s]",
              [("a", "<f4")], ("<f4", (2,))]
ODD_AXES = [0, 1, 2, 3, 7, 601, 10**4, 10**7, 2**31, 10**12]


def _npy_parts(content: bytes) -> tuple[dict, bytes] | None:
    """The header dict and the data of a ``.npy`` member (None when it does not parse as one)."""
    import io

    stream = io.BytesIO(content)
    try:
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(stream)
    except (ValueError, EOFError):
        return None
    return ({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape},
            content[stream.tell():])


def _npy_with(header: dict, data: bytes) -> bytes:
    import io

    out = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(out, header)
    except ValueError:  # a header past 1.0's size limit
        out = io.BytesIO()
        np.lib.format.write_array_header_2_0(out, header)
    return out.getvalue() + data


def _mutate_member(member, rng: random.Random):
    """One edit of one member: its header's shape or dtype, its data, its compression, flags or checksum."""
    import zipfile

    from tests.reliability import crafted_npz as npz

    parts = _npy_parts(member.stored if member.method == zipfile.ZIP_STORED else b"")
    roll = rng.random()
    if parts is not None and roll < 0.45:
        header, data = parts
        if roll < 0.25 or not header["shape"]:
            shape = list(header["shape"]) or [1]
            shape[rng.randrange(len(shape))] = rng.choice(ODD_AXES)
            if rng.random() < 0.2:
                shape.append(rng.choice(ODD_AXES[:5]))
            header["shape"] = tuple(shape)
        else:
            header["descr"] = rng.choice(ODD_DESCRS)
            if isinstance(header["descr"], tuple):  # a subarray dtype, which the header can only state as text
                header["descr"] = [("", header["descr"][0], header["descr"][1])]
        if rng.random() < 0.3:
            header["fortran_order"] = not header["fortran_order"]
        content = _npy_with(header, data)
        return npz.stored(member.name, content) if rng.random() < 0.7 else npz.deflated(member.name, content)
    if roll < 0.6:  # the data: cut, grown or garbled
        data = bytearray(member.stored)
        if data and rng.random() < 0.5:
            data[rng.randrange(len(data))] ^= 0xFF
            return npz.Member(member.name, bytes(data), member.size, member.crc, member.method)
        data = data[: rng.randrange(len(data) + 1)] if rng.random() < 0.5 else data + bytes(rng.randrange(1, 64))
        return npz.Member(member.name, bytes(data), rng.choice([member.size, len(data)]), member.crc, member.method)
    if roll < 0.75 and member.method == zipfile.ZIP_STORED:  # the same content, deflated
        return npz.deflated(member.name, member.stored)
    if roll < 0.85:  # what the archive declares: the sizes, the method, the flags
        return npz.Member(member.name, member.stored, rng.choice([0, 1, member.size * 2, 2**31, 2**32 - 1]),
                          member.crc, rng.choice([member.method, zipfile.ZIP_DEFLATED, 12, 14, 99]),
                          rng.choice([0, 0, 1, 8]))
    return npz.Member(member.name, member.stored, member.size, member.crc ^ rng.randrange(1, 2**32), member.method)


def mutate_npz(members: list, rng: random.Random) -> list:
    """1-3 random edits of a fitted file's members: headers, data, compression, names, the set of members,
    the ``__meta__`` JSON (with the JSON mutations above), or a bomb in a member no command reads."""
    from tests.reliability import crafted_npz as npz

    members = list(members)
    for _ in range(rng.randint(1, 3)):
        roll, index = rng.random(), rng.randrange(len(members))
        if roll < 0.45:
            members[index] = _mutate_member(members[index], rng)
        elif roll < 0.6:
            meta = next((m for m in members if m.name == "__meta__"), None)
            parts = _npy_parts(meta.stored) if meta is not None else None
            if parts is not None:
                try:  # the meta member may already be another member's bytes (an earlier edit renamed one)
                    text = np.frombuffer(parts[1], dtype=np.dtype(parts[0]["descr"])).item() if parts[1] else ""
                    value = mutate_json(json.loads(text), rng)
                except (ValueError, TypeError):
                    value = _odd_value(rng)
                members[members.index(meta)] = npz.stored("__meta__", npz.npy_of(np.array(json.dumps(value))))
        elif roll < 0.7:
            del members[index]
            if not members:
                return members
        elif roll < 0.78:
            members.append(members[index])  # the same name twice
        elif roll < 0.86:
            name = rng.choice(["fitted__W", "fitted___x_", "fitted__zz_", "param__steps", "x", "proj_labels",
                               "__meta__"])
            members[index] = npz.Member(name, members[index].stored, members[index].size, members[index].crc,
                                        members[index].method, members[index].flags)
        elif roll < 0.93:
            declared = rng.choice([(rng.choice(ODD_AXES[:8]),), (600, 2), (3, 2), (2**16, 300)])
            members.append(npz.zero_bomb(rng.choice(["unused", "fitted__bomb_", "proj_images_after"]),
                                         rng.choice(["f4", "u1"]), declared))
        else:
            members.append(npz.stored("huge", npz.npy("f8", (10**9, 10**3), bytes(8))))
    return members


def npz_case(work: Path, rng: random.Random, case: Path) -> None:
    """A mutated fitted file beside a copy of the CMM record: what predict reads after encoding (the run's own
    arrays, bounded by its cache, then its top classes) and the report's gap plot (projection, class names)."""
    from cache import CacheReader, FeatureCache
    from stages.fit.persist import FittedBounds, load_fitted
    from stages.report.groups import group_records
    from stages.report.plot_gap import gap_plots
    from stages.shared.record import read_record
    from tests.reliability import crafted_npz as npz

    valid = next((work / "cmm_runs").rglob("shots*_seed*.json"))
    folder = case / valid.parent.name
    folder.mkdir()
    record_path = folder / valid.name
    shutil.copy(valid, record_path)
    members = mutate_npz(npz.members_of(valid.with_suffix(".npz")), rng)
    path = npz.write_npz(record_path.with_suffix(".npz"), members)
    if rng.random() < 0.05:
        path.write_bytes(path.read_bytes()[: rng.randrange(path.stat().st_size)])
    cache = work / "c.h5"
    features = FeatureCache(cache).features("test")

    def predict() -> None:
        fitted = load_fitted(path, FittedBounds.of_cache(CacheReader(cache)))
        fitted.top_k(features, 3, source=path)

    def report() -> None:
        (family,) = group_records([read_record(record_path)])
        warnings: list[str] = []
        drawn = gap_plots(family, case / "plots", warnings.append)
        assert len(drawn) in (0, 2) and not (drawn and warnings), (drawn, warnings)  # a picture, or one warning
        assert all("\n" not in w for w in warnings), warnings

    _all(predict, report)


TARGETS: dict[str, Callable[[Path, random.Random, Path], None]] = {
    "split": split_case, "subset": subset_case, "record": record_case, "cache": cache_case, "report": report_case,
    "npz": npz_case}


def archive_case(work: Path, rng: random.Random, case: Path) -> None:
    """The unpacker of `pipeline download` on a random or damaged archive (tests/reliability/fuzz_archives.py)."""
    from tests.reliability.fuzz_archives import archive_case as unpack_case

    unpack_case(rng, case)


NAMED_TARGETS = {**TARGETS, "archive": archive_case}  # run only when named: python -m ... SEED CASES archive


def main(work: Path, seed: int, cases: int, names: list[str] | None = None) -> dict:
    from cache.errors import UserError

    signal.signal(signal.SIGALRM, _alarm)
    outcomes: Counter = Counter()
    failures: list[dict] = []
    names = names or list(TARGETS)
    for index in range(cases):
        target = names[index % len(names)]
        rng = random.Random(f"{seed}-{index}")
        case = work / "cases" / f"{index:04d}"
        case.mkdir(parents=True)
        signal.alarm(CASE_SECONDS)
        try:
            NAMED_TARGETS[target](work, rng, case)
            outcomes[f"{target}: ok"] += 1
        except UserError as exc:
            message = str(exc)
            if "\n" in message or not message:
                failures.append({"case": index, "target": target, "error": "UserError not on one line: " + message})
            outcomes[f"{target}: user error"] += 1
        except CaseTimeout:
            failures.append({"case": index, "target": target, "error": f"still running after {CASE_SECONDS} s"})
        except BaseException as exc:  # noqa: BLE001 - every other outcome is the finding
            failures.append({"case": index, "target": target, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                             "where": traceback.format_exc(limit=-3)[-1200:]})
        finally:
            signal.alarm(0)
        shutil.rmtree(case, ignore_errors=True)
    return {"outcomes": dict(sorted(outcomes.items())), "failures": failures}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] or None)))
