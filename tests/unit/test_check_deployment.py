"""scripts/check-deployment.sh, the post-apply smoke check. Google Cloud cannot be reached from here, so
`terraform`, `gcloud` and `curl` are stubs on PATH that answer as a deployment would (a healthy one, then
one with each part broken); the test checks what the script concludes and tells the operator."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-deployment.sh"

TERRAFORM = """#!/usr/bin/env bash
case "$*" in
  *runs_api_url*) echo -n https://arc-runs-api-123.us-central1.run.app ;;
  *" region") echo -n us-central1 ;;
  *batch_topic*) echo -n projects/p/topics/arc-batch-notifications ;;
  *orchestrator_image*) echo -n us-central1-docker.pkg.dev/p/arc-orchestrator/arc-orchestrator:latest ;;
  *demo_data_bucket*) echo -n p-arc-demo-data ;;
  *) exit 1 ;;
esac
"""
GCLOUD = """#!/usr/bin/env bash
broken=" $BROKEN "
case "$*" in
  "auth print-identity-token") echo tok ;;
  "eventarc triggers list"*)
    for t in submit-bundle reconcile-batch-event sweep-stale-runs; do
      [[ $broken == *" trigger:$t "* ]] || echo "projects/p/locations/us-central1/triggers/arc-$t-123"
    done ;;
  "pubsub topics describe"*) [[ $broken != *" topic "* ]] ;;
  "scheduler jobs list"*)
    if [[ $broken == *" scheduler "* ]]; then echo "arc-sweep PAUSED"; else echo "arc-sweep ENABLED"; fi ;;
  "artifacts docker images describe"*) [[ $broken != *" image "* ]] ;;
  "storage ls"*) [[ $broken == *" demo "* ]] || echo "gs://p-arc-demo-data/fastq/sample1_R1.fastq.gz" ;;
  *) exit 1 ;;
esac
"""
CURL = """#!/usr/bin/env bash
out="" url=""
while [[ $# -gt 0 ]]; do
  case "$1" in -o) out=$2; shift 2 ;; -w|--max-time|-H) shift 2 ;; -*) shift ;; *) url=$1; shift ;; esac
done
code=200
case "$url" in
  */healthz) [[ " $BROKEN " == *" auth "* ]] && code=403 ;;
  */runs*) [[ " $BROKEN " == *" db "* ]] && code=503 ;;
esac
echo '{"error": {"code": "unavailable", "message": "the database is unavailable"}}' >"$out"
printf '%s' "$code"
"""


def check(tmp_path: Path, broken: str = "") -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("terraform", TERRAFORM), ("gcloud", GCLOUD), ("curl", CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "BROKEN": broken}
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_healthy_deployment_passes_every_check(tmp_path: Path) -> None:
    done = check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[:-1]] == ["OK"] * 8
    assert done.stdout.splitlines()[-1] == "ready: submit the demo run (docs/deploy.md step 5)"


def test_each_broken_part_is_named_with_what_to_do(tmp_path: Path) -> None:
    broken = "auth db trigger:reconcile-batch-event topic scheduler image demo"
    done = check(tmp_path, broken)
    assert done.returncode == 7, done.stdout
    text = done.stdout
    assert "FAIL  runs API\n      answered 403: your account needs roles/run.invoker" in text
    assert 'GET /runs answered 503: {"error"' in text and "arc db upgrade" in text
    assert "missing for: reconcile-batch-event (region us-central1)" in text
    assert "FAIL  Batch notifications topic" in text
    assert "no enabled Cloud Scheduler job for the sweeper in us-central1 (got: arc-sweep PAUSED)" in text
    assert "scripts/build-orchestrator.sh (docs/deploy.md step 3)" in text
    assert "gs://p-arc-demo-data/fastq/ is empty" in text
    assert text.splitlines()[-1] == "7 check(s) failed"
