#!/usr/bin/env bash
# Arc Reactor orchestrator: runs one run's workflow engine inside its Batch job (or the local stack).
# Decisions live in tested Python (arc_reactor.services.orchestrate and update_status.py); this script
# only sequences them. Reads RUN_ID, PIPELINE, PIPELINE_VERSION, ENGINE, PARAMS_GCS_PATH, CONFIG_GCS_PATH,
# WORK_DIR, IS_RECOVERY, ... (see arc_reactor/core/engine_command.py: env_from) and the database settings.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${RUN_ID:?RUN_ID is required}"
export PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}/opt/arc/functions:${HERE}/../functions"
PYTHON="${ARC_PYTHON:-python3}"
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/arc-run.XXXXXX")"
stage=prepare
terminated=false

log() {  # log SEVERITY MESSAGE: one JSON line on stderr
  local msg="${2//\\/\\\\}" run="${RUN_ID//\\/\\\\}"
  msg="${msg//\"/\\\"}" run="${run//\"/\\\"}"
  printf '{"severity":"%s","message":"%s","run_id":"%s","logger":"entrypoint"}\n' "$1" "$msg" "$run" >&2
}
orch() { "$PYTHON" -m arc_reactor.services.orchestrate "$1" --workdir "$WORKDIR" "${@:2}"; }
mark() { "$PYTHON" "$HERE/update_status.py" "$RUN_ID" "$@" || log WARNING "update_status.py $1 exited $?"; }

# shellcheck disable=SC2317  # report and on_exit run from the EXIT trap
report() {  # report how the run ended; after the Nextflow hooks this is a harmless repeat
  local args=()
  if orch outcome --exit-code "$1" --stage "$stage" >"$WORKDIR/outcome"; then
    mapfile -d '' -t args <"$WORKDIR/outcome"
    mark "${args[@]}"
  else
    log ERROR "could not work out the outcome of the run"
  fi
}

# shellcheck disable=SC2317
on_exit() {
  local rc=$?
  trap - EXIT
  if [[ "$terminated" == true ]]; then  # cancel or preemption: Batch's own state decides the status
    log WARNING "terminated by a signal during ${stage}; leaving the status to Batch reconciliation"
  else
    report "$rc"
  fi
  [[ "${ARC_KEEP_WORKDIR:-false}" == true ]] || rm -rf "$WORKDIR"
  exit "$rc"
}
trap on_exit EXIT
trap 'terminated=true; exit 143' TERM
trap 'terminated=true; exit 130' INT

log INFO "orchestrator starting: ${PIPELINE:-?} ${PIPELINE_VERSION:-?} (${ENGINE:-?}), recovery ${IS_RECOVERY:-false}, attempt ${BATCH_TASK_RETRY_ATTEMPT:-0}"
orch prepare --orchestrator-dir "$HERE"

stage=mark-running
mark running --started_at "$(date -u +%Y-%m-%dT%H:%M:%SZ)"

stage="command"
orch command >"$WORKDIR/argv"
mapfile -d '' -t cmd <"$WORKDIR/argv"

stage=engine
log INFO "running in ${WORKDIR}/run: ${cmd[*]}"
set +e
(cd "$WORKDIR/run" && exec "${cmd[@]}") 2>&1 | tee "$WORKDIR/logs/console.log"
rc=${PIPESTATUS[0]}
set -e
log INFO "engine exited with code ${rc}"
orch finish --exit-code "$rc" || log WARNING "finish exited $?: some logs or results may be missing"
exit "$rc"  # on_exit reports completed or failed through update_status.py
