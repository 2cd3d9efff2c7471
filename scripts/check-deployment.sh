#!/usr/bin/env bash
# After `terraform apply`: check that a deployment can take a run, and say what is wrong when it cannot.
# Usage: scripts/check-deployment.sh            (from the repository root, where infra/ has its state)
# Needs: terraform (with the state), gcloud (logged in as someone in api_invoker_members), curl.
# Each check prints OK or FAIL with what to do; the exit code is the number of failures (0: ready).
#   1. the runs API answers /healthz with your ID token (deployed, and you may call it)
#   2. GET /runs answers 200: the functions reach Cloud SQL and the schema is migrated
#   3. GET /pipelines lists the registry
#   4. the three event triggers exist (inbox uploads, Batch notifications, the sweeper's schedule)
#   5. the Batch notifications topic exists
#   6. the sweeper's Cloud Scheduler job is enabled
#   7. the orchestrator image is in Artifact Registry
#   8. the demo-data bucket holds the demo's files (when Terraform made it)
set -uo pipefail

failures=0
ok() { printf 'OK    %s\n' "$1"; }
bad() { printf 'FAIL  %s\n      %s\n' "$1" "$2"; failures=$((failures + 1)); }
out() { terraform -chdir=infra output -raw "$1" 2>/dev/null; }

API=$(out runs_api_url) || API=""
if [[ -z "$API" ]]; then
  echo "check-deployment: no terraform outputs: run it from the repository root after terraform apply" >&2
  exit 1
fi
REGION=$(out region)
TOPIC=$(out batch_topic)
IMAGE=$(out orchestrator_image)
DEMO=$(out demo_data_bucket || true)

token=$(gcloud auth print-identity-token 2>/dev/null) || token=""
get() {  # get PATH: prints the HTTP status; the body goes to $body_file
  curl -sS -o "$body_file" -w '%{http_code}' --max-time 30 -H "Authorization: Bearer $token" "$API$1" \
    2>/dev/null || echo 000
}
body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT

if [[ -z "$token" ]]; then
  bad "ID token" "gcloud auth print-identity-token failed: run gcloud auth login"
fi
code=$(get /healthz)
case "$code" in
  200) ok "runs API answers at $API" ;;
  401 | 403) bad "runs API" "answered $code: your account needs roles/run.invoker (api_invoker_members)" ;;
  000) bad "runs API" "no answer from $API: is runs_api deployed (terraform apply)?" ;;
  *) bad "runs API" "/healthz answered $code: see the runs_api function's logs" ;;
esac
code=$(get '/runs?page_size=1')
case "$code" in
  200) ok "database reachable and migrated (GET /runs)" ;;
  503) bad "database" "GET /runs answered 503: $(head -c 300 "$body_file"). Check the VPC connector and Cloud SQL, and that step 4 of docs/deploy.md (roles, arc db upgrade) was done" ;;
  500) bad "database" "GET /runs answered 500: are the migrations applied (arc db upgrade, docs/deploy.md step 4)? See runs_api's logs" ;;
  *) bad "database" "GET /runs answered $code: $(head -c 300 "$body_file")" ;;
esac
code=$(get /pipelines)
if [[ "$code" == 200 ]]; then ok "pipeline registry served"; else bad "pipelines" "GET /pipelines answered $code"; fi

triggers=$(gcloud eventarc triggers list --location "$REGION" --format 'value(name)' 2>/dev/null) || triggers=""
missing=()
for fn in submit-bundle reconcile-batch-event sweep-stale-runs; do
  grep -q -- "$fn" <<<"$triggers" || missing+=("$fn")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  ok "event triggers of submit-bundle, reconcile-batch-event, sweep-stale-runs"
else
  bad "event triggers" "missing for: ${missing[*]} (region $REGION). Run terraform apply again: new IAM grants can take a minute"
fi

if gcloud pubsub topics describe "$TOPIC" >/dev/null 2>&1; then
  ok "Batch notifications topic $TOPIC"
else
  bad "Batch notifications topic" "$TOPIC not found: run terraform apply"
fi

state=$(gcloud scheduler jobs list --location "$REGION" --format 'value(name,state)' 2>/dev/null | grep -- sweep || true)
if grep -q ENABLED <<<"$state"; then
  ok "sweeper schedule enabled"
else
  bad "sweeper schedule" "no enabled Cloud Scheduler job for the sweeper in $REGION (got: ${state:-nothing})"
fi

if gcloud artifacts docker images describe "$IMAGE" >/dev/null 2>&1; then
  ok "orchestrator image $IMAGE"
else
  bad "orchestrator image" "$IMAGE is not in Artifact Registry: IMAGE=\"$IMAGE\" scripts/build-orchestrator.sh (docs/deploy.md step 3)"
fi

if [[ -n "$DEMO" && "$DEMO" != null ]]; then
  if gcloud storage ls "gs://$DEMO/fastq/" 2>/dev/null | grep -q 'fastq.gz'; then
    ok "demo data in gs://$DEMO/fastq/"
  else
    bad "demo data" "gs://$DEMO/fastq/ is empty: run terraform apply"
  fi
fi

if [[ $failures -eq 0 ]]; then
  echo "ready: submit the demo run (docs/deploy.md step 5)"
else
  echo "$failures check(s) failed"
fi
exit "$failures"
