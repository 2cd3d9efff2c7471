#!/usr/bin/env bash
# Build the orchestrator image from the repository root and push it to Artifact Registry as
#   REGION-docker.pkg.dev/PROJECT/REPOSITORY/arc-orchestrator:VERSION (and :latest).
# Usage: scripts/build-orchestrator.sh [--dry-run] [--no-push]
#   --dry-run   print the commands, run nothing        --no-push   build and tag only (CI on pull requests)
# Environment: PROJECT (or ARC_PROJECT), REGION (or ARC_REGION, default us-central1), REPOSITORY (default
#   arc-orchestrator, the repository infra/registry.tf creates), VERSION (default: git describe --tags
#   --always --dirty); or IMAGE, the whole image name (a tag on it is dropped), e.g. from
#   `terraform -chdir=infra output -raw orchestrator_image`.
# Pushing needs Docker credentials for REGION-docker.pkg.dev (gcloud auth configure-docker, or a token).
set -euo pipefail

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | cut -c3-; }
fail() { echo "build-orchestrator: $*" >&2; exit 2; }

dry_run=false push=true
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=true ;;
    --no-push) push=false ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fail "unknown argument: $arg" ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the build context is the repository root
VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
[[ "$VERSION" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || fail "not an image tag: $VERSION"
if [[ -n "${IMAGE:-}" ]]; then
  [[ "${IMAGE##*/}" != *:* ]] || IMAGE="${IMAGE%:*}"  # drop a tag; a registry host:port stays
  [[ "$IMAGE" =~ ^[a-z0-9.:-]+(/[a-z0-9._-]+)+$ ]] || fail "not an image name: $IMAGE"
else
  PROJECT="${PROJECT:-${ARC_PROJECT:-}}"
  REGION="${REGION:-${ARC_REGION:-us-central1}}"
  REPOSITORY="${REPOSITORY:-arc-orchestrator}"
  [[ -n "$PROJECT" ]] || fail "PROJECT (or ARC_PROJECT) is required"
  [[ "$PROJECT" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || fail "not a project id: $PROJECT"
  [[ "$REGION" =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || fail "not a region: $REGION"
  [[ "$REPOSITORY" =~ ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || fail "not a repository name: $REPOSITORY"
  IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/arc-orchestrator"
fi

run() {  # print the command (shell-quoted); run it unless --dry-run
  local quoted=() word
  for word in "$@"; do quoted+=("$(printf '%q' "$word")"); done
  echo "+ ${quoted[*]}"
  [[ "$dry_run" == true ]] || "$@"
}

# BuildKit reads orchestrator/Dockerfile.orchestrator.dockerignore, which keeps the context small.
run env DOCKER_BUILDKIT=1 docker build --platform linux/amd64 \
  -f orchestrator/Dockerfile.orchestrator \
  -t "${IMAGE}:${VERSION}" -t "${IMAGE}:latest" \
  --label "org.opencontainers.image.version=${VERSION}" .
if [[ "$push" == true ]]; then
  run docker push "${IMAGE}:${VERSION}"
  run docker push "${IMAGE}:latest"
fi
