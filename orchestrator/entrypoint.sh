#!/usr/bin/env bash
# Arc Reactor orchestrator: runs one run's workflow engine inside its Batch job (or the local stack).
# Decisions live in tested Python (arc_reactor.orchestrator.orchestrate, update_status.py); this script only
# sequences them. Environment: RUN_ID, PIPELINE, PIPELINE_VERSION, ENGINE, PARAMS_GCS_PATH, CONFIG_GCS_PATH,
# WORK_DIR, IS_RECOVERY, PARENT_SESSION_ID, PROFILE, CACHE_DIR, LOGS_DIR, RESULTS_DIR, ARC_RUN_LABELS
# (core/job_env.py), BATCH_TASK_RETRY_ATTEMPT and the database settings (docs/orchestrator.md).
# Exits with the engine's exit code.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${RUN_ID:?RUN_ID is required}"
export PYTHONPATH="${PYTHONPATH:+${PYTHONPATH}:}/opt/arc/functions:${HERE}/../functions"
PYTHON="${ARC_PYTHON:-python3}"
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/arc-run.XXXXXX")"
stage=prepare engine_pid="" watch_pid="" relay_pid=""

log() {  # log SEVERITY MESSAGE: one JSON line on stderr
  local msg="${2//\\/\\\\}" run="${RUN_ID//\\/\\\\}"
  msg="${msg//\"/\\\"}" run="${run//\"/\\\"}"
  printf '{"severity":"%s","message":"%s","run_id":"%s","logger":"entrypoint"}\n' "$1" "$msg" "$run" >&2
}
orch() { "$PYTHON" -m arc_reactor.orchestrator.orchestrate "$1" --workdir "$WORKDIR" "${@:2}"; }
# shellcheck disable=SC2317  # used from the exit trap
mark() { "$PYTHON" "$HERE/update_status.py" "$RUN_ID" "$@" || log WARNING "update_status.py $1 exited $?"; }

# shellcheck disable=SC2317  # the functions below run from traps
report() {  # how the run ended; after the engine's own hooks this is a harmless repeat
  local args=()
  if orch outcome --exit-code "$1" --stage "$stage" >"$WORKDIR/outcome"; then
    mapfile -d '' -t args <"$WORKDIR/outcome"
    mark "${args[@]}"
  else
    log ERROR "could not work out the outcome of the run"
  fi
}
# shellcheck disable=SC2317
terminate() {  # SIGTERM: Batch preemption or cancel. The hooks stand down, Batch's state decides.
  : >"$WORKDIR/terminated"
  log WARNING "terminated by a signal during ${stage}; leaving the status to Batch reconciliation"
  if [[ -n "$engine_pid" ]]; then kill -TERM "$engine_pid" 2>/dev/null || true; else exit 143; fi
}
# shellcheck disable=SC2317
on_exit() {
  local rc=$?
  trap - EXIT TERM INT
  [[ -z "$watch_pid" ]] || kill "$watch_pid" 2>/dev/null || true
  [[ -z "$relay_pid" ]] || kill "$relay_pid" 2>/dev/null || true
  [[ -e "$WORKDIR/terminated" ]] || report "$rc"
  [[ "${ARC_KEEP_WORKDIR:-false}" == true ]] || rm -rf "$WORKDIR"
  exit "$rc"
}
trap on_exit EXIT
trap terminate TERM INT

log INFO "orchestrator starting: ${PIPELINE:-?} ${PIPELINE_VERSION:-?} (${ENGINE:-?}), recovery ${IS_RECOVERY:-false}, attempt ${BATCH_TASK_RETRY_ATTEMPT:-0}"
# A Nextflow run's Tower reports go to runs_api through a loopback relay (orchestrator/relay.py), which
# prepare waits for. Other runs have no token and start no relay.
if [[ "${ENGINE:-}" == nextflow && -n "${TOWER_ACCESS_TOKEN:-}" ]]; then
  "$PYTHON" -m arc_reactor.orchestrator.orchestrate relay --workdir "$WORKDIR" & relay_pid=$!  # its own pid
fi
orch prepare --orchestrator-dir "$HERE"  # also writes $WORKDIR/started and $WORKDIR/argv

stage=mark-running
mapfile -d '' -t started <"$WORKDIR/started"  # NUL-terminated arguments
marked=0; "$PYTHON" "$HERE/update_status.py" "$RUN_ID" "${started[@]}" || marked=$?
if [[ "$marked" -eq 3 ]]; then  # refused: the run was cancelled (or ended) before its job started
  log WARNING "run is already cancelling or finished: not starting the engine"
  : >"$WORKDIR/terminated"; exit 0
fi
[[ "$marked" -eq 0 ]] || log WARNING "update_status.py running exited ${marked}"
mapfile -d '' -t cmd <"$WORKDIR/argv"

stage=engine
log INFO "running in ${WORKDIR}/run: ${cmd[*]}"
exec 3> >(tee "$WORKDIR/logs/console.log")
tee_pid=$!
(cd "$WORKDIR/run" && exec "${cmd[@]}") >&3 2>&1 &
engine_pid=$!
if [[ "${ENGINE:-}" == nextflow ]]; then orch watch --pid "$engine_pid" & watch_pid=$!; fi
while kill -0 "$engine_pid" 2>/dev/null; do wait "$engine_pid" || true; done  # a trap cuts `wait` short
rc=0
wait "$engine_pid" || rc=$?  # bash remembers the exit status of a finished child
exec 3>&-
wait "$tee_pid" || true
log INFO "engine exited with code ${rc}"
orch finish --exit-code "$rc" || log WARNING "finish exited $?: some logs or results may be missing"
exit "$rc"  # on_exit reports completed or failed through update_status.py (unless terminated)
