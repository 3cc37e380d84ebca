#!/usr/bin/env bash
# deploy/k8s/validate.sh - checks the Kubernetes manifests offline: every *.yaml here (the
# secret/ placeholder too) against the API schemas bundled with kubernetes-validate, strictly
# (an unknown field is an error), for the oldest and the newest Kubernetes they are meant for;
# then references.py, for what a schema cannot see (a selector that matches no pod, a named port
# or a ConfigMap that does not exist). Exits non-zero on any error, and on any warning: the tool
# only warns about a kind or apiVersion it has no schema for, which the API server would refuse.
#
# The tool is installed once into a virtualenv of its own (versions pinned in requirements.txt),
# under target/ by default (K8S_VALIDATE_VENV to put it elsewhere); later runs reuse it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${K8S_VALIDATE_VENV:-$root/target/k8s-validate}"
# The oldest Kubernetes the manifests target, and the newest the tool knows.
versions=(1.30.0 1.37.0)

if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi

mapfile -t files < <(find "$here" -name '*.yaml' | sort)
failed=0
for version in "${versions[@]}"; do
    # --quiet: only warnings and failures are printed.
    if ! out="$("$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${files[@]}" 2>&1)"; then
        failed=1
    fi
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
        failed=1
    fi
done
"$venv/bin/python" "$here/references.py" "${files[@]}" || failed=1

if [ "$failed" -ne 0 ]; then
    echo "deploy/k8s: manifests NOT valid (see above)" >&2
    exit 1
fi
echo "deploy/k8s: ${#files[@]} manifest files valid (strict) against Kubernetes ${versions[*]}; references resolve"
