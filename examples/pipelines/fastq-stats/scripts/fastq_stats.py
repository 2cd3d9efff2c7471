"""FASTQ statistics for the fastq-stats demo pipeline (standard library only, no external tools).

Reads plain or gzip FASTQ (Phred+33) and checks the format as it goes: a malformed record fails the
sample with the file and line, instead of producing quietly wrong figures.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

SUMMARY_COLUMNS = (
    "sample",
    "layout",
    "reads",
    "read_pairs",
    "bases",
    "gc_percent",
    "mean_read_length",
    "mean_quality",
    "min_quality",
    "reads_passing_min_quality",
)


@dataclass
class FileStats:
    """Figures of one FASTQ file."""

    reads: int = 0
    bases: int = 0
    gc: int = 0
    quality_sum: int = 0
    reads_passing: int = 0

    def add(self, other: FileStats) -> None:
        """Accumulate another file's figures into this one."""
        for name in ("reads", "bases", "gc", "quality_sum", "reads_passing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="ascii")
    return path.open(encoding="ascii")


def records(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (sequence, qualities) per record; ValueError naming the file and line on a malformed one."""
    with _open(path) as fh:
        line_no = 0
        while True:
            block = [fh.readline() for _ in range(4)]
            if not block[0]:
                return
            line_no += 4
            header, seq, plus, qual = (x.rstrip("\n") for x in block)
            if not header.startswith("@") or not plus.startswith("+") or len(seq) != len(qual) or not seq:
                raise ValueError(f"{path}: malformed FASTQ record ending at line {line_no}")
            yield seq, qual


def file_stats(path: Path, min_quality: int) -> FileStats:
    """Count reads, bases, G+C and quality; a read passes when its mean quality is >= min_quality."""
    st = FileStats()
    for seq, qual in records(path):
        q = sum(qual.encode("ascii")) - 33 * len(qual)
        st.reads += 1
        st.bases += len(seq)
        st.gc += sum(seq.count(c) for c in "GCgc")
        st.quality_sum += q
        st.reads_passing += q >= min_quality * len(qual)
    return st


def _figures(st: FileStats) -> dict[str, Any]:
    return {
        "reads": st.reads,
        "bases": st.bases,
        "gc_percent": round(100.0 * st.gc / st.bases, 2) if st.bases else 0.0,
        "mean_read_length": round(st.bases / st.reads, 2) if st.reads else 0.0,
        "mean_quality": round(st.quality_sum / st.bases, 2) if st.bases else 0.0,
        "reads_passing_min_quality": st.reads_passing,
    }


def sample_stats(sample: str, fastq_1: Path, fastq_2: Path | None, min_quality: int) -> dict[str, Any]:
    """Per-sample figures over both mates; the mates must hold the same number of reads."""
    per_file = {"fastq_1": file_stats(fastq_1, min_quality)}
    if fastq_2 is not None:
        per_file["fastq_2"] = file_stats(fastq_2, min_quality)
        if per_file["fastq_1"].reads != per_file["fastq_2"].reads:
            raise ValueError(
                f"sample {sample}: fastq_1 has {per_file['fastq_1'].reads} reads, "
                f"fastq_2 has {per_file['fastq_2'].reads}"
            )
    total = FileStats()
    for st in per_file.values():
        total.add(st)
    return {
        "sample": sample,
        "layout": "paired" if fastq_2 is not None else "single",
        "read_pairs": per_file["fastq_1"].reads if fastq_2 is not None else None,
        **_figures(total),
        "min_quality": min_quality,
        "files": {
            key: {"path": str(p), **_figures(per_file[key]), "raw": asdict(per_file[key])}
            for key, p in (("fastq_1", fastq_1), ("fastq_2", fastq_2))
            if p is not None
        },
    }


def read_samplesheet(path: Path) -> dict[str, tuple[Path, Path | None]]:
    """sample -> (fastq_1, fastq_2 or None); a sample named twice is an error."""
    out: dict[str, tuple[Path, Path | None]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            sample = (row.get("sample") or "").strip()
            fq1 = (row.get("fastq_1") or "").strip()
            fq2 = (row.get("fastq_2") or "").strip()
            if not sample or not fq1:
                raise ValueError(f"{path}:{line}: sample and fastq_1 are required")
            if sample in out:
                raise ValueError(f"{path}:{line}: sample {sample} is listed twice")
            out[sample] = (Path(fq1), Path(fq2) if fq2 else None)
    if not out:
        raise ValueError(f"{path}: no samples")
    return out


def write_json(stats: dict[str, Any], dest: Path) -> None:
    """Write one sample's figures."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


def write_summary(stat_files: list[Path], dest: Path) -> None:
    """Merge per-sample JSON files into one TSV, one row per sample."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for path in stat_files:
            stats = json.loads(path.read_text(encoding="utf-8"))
            writer.writerow(["" if stats[c] is None else stats[c] for c in SUMMARY_COLUMNS])


def main(argv: list[str] | None = None) -> int:
    """CLI used by the Snakefile's rules: `stats` for one sample, `summary` to merge them."""
    import argparse

    parser = argparse.ArgumentParser(description="FASTQ statistics for the fastq-stats demo pipeline.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stats", help="figures of one sample as JSON")
    st.add_argument("--sample", required=True)
    st.add_argument("--min-quality", type=int, default=20)
    st.add_argument("--fail", action="store_true", help="fail on purpose (the fail_samples parameter)")
    st.add_argument("--pace", type=float, default=0.0, help="seconds to wait first (pace_seconds, 0 to 60)")
    st.add_argument("--out", type=Path, required=True)
    st.add_argument("fastq", type=Path, nargs="+", help="fastq_1 [fastq_2]")
    sm = sub.add_parser("summary", help="merge per-sample JSON files into a TSV")
    sm.add_argument("--out", type=Path, required=True)
    sm.add_argument("stats", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "stats":
        if len(args.fastq) > 2:
            parser.error("stats takes fastq_1 and optionally fastq_2")
        time.sleep(min(max(args.pace, 0.0), 60.0))
        if args.fail:
            raise RuntimeError(f"sample {args.sample}: failing on purpose (listed in fail_samples)")
        fq2 = args.fastq[1] if len(args.fastq) == 2 else None
        write_json(sample_stats(args.sample, args.fastq[0], fq2, args.min_quality), args.out)
    else:
        write_summary(args.stats, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
