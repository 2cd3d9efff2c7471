"""Generate the demo FASTQ files: 3 samples of paired reads, deterministic (seeded, gzip mtime 0).

    python examples/data/make_fastq.py [--out examples/data] [--reads 2000] [--length 100]

Each sample has its own GC content and quality profile, and a share of low-quality reads, so the demo
pipeline's figures differ per sample and its `min_quality` filter has something to filter.
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path

# sample -> (GC fraction, mean base quality of good reads, share of low-quality reads)
SAMPLES: dict[str, tuple[float, int, float]] = {
    "sample1": (0.40, 34, 0.05),
    "sample2": (0.50, 30, 0.10),
    "sample3": (0.60, 26, 0.20),
}
SEED = 20240404


def read_sequence(rng: random.Random, length: int, gc: float) -> str:
    """A random read with the given GC fraction."""
    return "".join(rng.choice("GC") if rng.random() < gc else rng.choice("AT") for _ in range(length))


def read_qualities(rng: random.Random, length: int, mean: int) -> str:
    """Phred+33 qualities: a slow walk around `mean` that sags towards the 3' end, like Illumina reads."""
    out, q = [], mean
    for i in range(length):
        target = mean - (6 if i > length * 0.7 else 0)
        q += rng.choice((-1, 0, 0, 0, 1)) + (1 if q < target - 3 else -1 if q > target + 3 else 0)
        out.append(chr(33 + max(2, min(41, q))))
    return "".join(out)


def write_fastq(path: Path, records: list[tuple[str, str, str]]) -> None:
    """Write records as gzip with a fixed mtime and no file name, so the bytes are reproducible."""
    text = "".join(f"@{name}\n{seq}\n+\n{qual}\n" for name, seq, qual in records)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode("ascii"))


def make_sample(out: Path, sample: str, reads: int, length: int, seed: int) -> None:
    """Write <sample>_R1.fastq.gz and <sample>_R2.fastq.gz."""
    gc, mean_q, low_share = SAMPLES[sample]
    rng = random.Random(f"{seed}-{sample}")  # noqa: S311 - reproducible test data, not secrets
    pairs: tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]] = ([], [])
    for i in range(reads):
        q = 12 if rng.random() < low_share else mean_q
        for mate, records in enumerate(pairs, start=1):
            name = f"{sample}:{i + 1} {mate}:N:0:ACGT"
            records.append((name, read_sequence(rng, length, gc), read_qualities(rng, length, q)))
    for mate, records in enumerate(pairs, start=1):
        write_fastq(out / f"{sample}_R{mate}.fastq.gz", records)


def main() -> None:
    """Parse arguments and write every sample."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for sample in SAMPLES:
        make_sample(args.out, sample, args.reads, args.length, args.seed)


if __name__ == "__main__":
    main()
