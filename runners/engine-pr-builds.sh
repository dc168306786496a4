#!/usr/bin/env bash
# The two builds an engine pull request gate measures (.github/workflows/engine-pr-gate.yml): the pull
# request's head and its merge base with the branch it targets, as `perfci ab` build strings.
#
#   URL=… REF=<head sha> BASE_REF=<branch> ENGINE=vllm|sglang|…|sim [PRECOMPILED=true] [SIM_MODEL=path] \
#     runners/engine-pr-builds.sh DIR
#
# Clones the engine repository into DIR (blobs on demand) and prints three lines, KEY=VALUE, for
# $GITHUB_OUTPUT: base (the merge base commit), baseline and candidate (the builds). A vLLM pull request with
# PRECOMPILED=true builds both sides from git with the merge base's precompiled kernels
# (vllm@git:URL#SHA+precompiled=BASE, docs/builds.md): minutes, and only Python changes count. ENGINE=sim
# (tests, demos) measures the latency model SIM_MODEL as the repository holds it at each commit.
set -euo pipefail

[ $# -eq 1 ] || { sed -n '4,5p' "$0" >&2; exit 2; }
DIR="$1"
: "${URL:?}" "${REF:?}" "${BASE_REF:?}" "${ENGINE:?}"
[[ "$REF" =~ ^[0-9a-f]{40}$ ]] || { echo "REF must be a full commit SHA, got '$REF'" >&2; exit 2; }
[[ "$BASE_REF" =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ ]] || { echo "bad BASE_REF '$BASE_REF'" >&2; exit 2; }

git clone --quiet --filter=blob:none --no-checkout "$URL" "$DIR"
git -C "$DIR" fetch --quiet origin "$REF" "refs/heads/$BASE_REF:refs/remotes/origin/$BASE_REF"
base="$(git -C "$DIR" merge-base "$REF" "origin/$BASE_REF")"

case "$ENGINE" in
  sim)
    : "${SIM_MODEL:?ENGINE=sim needs SIM_MODEL, the latency model file in the repository}"
    git -C "$DIR" worktree add --quiet --detach "$PWD/$DIR-base" "$base"
    git -C "$DIR" worktree add --quiet --detach "$PWD/$DIR-head" "$REF"
    baseline="sim:$DIR-base/$SIM_MODEL" candidate="sim:$DIR-head/$SIM_MODEL"
    ;;
  vllm)
    if [ "${PRECOMPILED:-true}" = true ]; then
      baseline="vllm@git:$URL#$base+precompiled=$base" candidate="vllm@git:$URL#$REF+precompiled=$base"
    else
      baseline="vllm@git:$URL#$base" candidate="vllm@git:$URL#$REF"
    fi
    ;;
  *)
    baseline="$ENGINE@git:$URL#$base" candidate="$ENGINE@git:$URL#$REF"
    ;;
esac
printf 'base=%s\nbaseline=%s\ncandidate=%s\n' "$base" "$baseline" "$candidate"
