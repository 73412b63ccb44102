# Shared set-up of tools/sanitize.sh, checked_build.sh and valgrind_quick.sh:
# a private copy of the source tree in a temporary directory, kept on failure.
# Source it after setting TOOL (the script's name, for messages and the
# directory) under `set -euo pipefail`.  Defines PYTHON, REPO, WORK, log,
# status (set it to 0 on success) and copies the tree into $WORK.

PYTHON=${PYTHON:-python3}
# the interpreter itself, not a wrapper (pyenv's shims are shell scripts)
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
REPO=$(git -C "$(dirname "${BASH_SOURCE[0]}")/.." rev-parse --show-toplevel)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xent-$TOOL.XXXXXX")
status=1
cleanup() {
    if [ "$status" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "$TOOL: work directory kept: $WORK" >&2
    fi
}
trap cleanup EXIT

log() { echo "$TOOL: $*" >&2; }
start=$(date +%s)

# the tree as git sees it: tracked files and untracked ones .gitignore does not
# exclude (deleted-but-tracked files skipped); no build product leaks in
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | (cd "$REPO" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
    | tar -C "$REPO" --null -T - -cf - | tar -C "$WORK" -xf -
log "copied $(find "$WORK" -type f | wc -l) files to $WORK"
