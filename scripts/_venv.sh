# Sourced by scripts/run and scripts/test: make .venv and install logkeep into it.
# Usage: set VENV_EXTRAS (e.g. dev) then `. scripts/_venv.sh`; re-installs only when pyproject.toml changes

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "logkeep needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
fi

extras="${VENV_EXTRAS:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi

stamp=".venv/.logkeep-installed-${extras:-base}"
want="$(cat pyproject.toml | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
    echo "$want" > "$stamp"
fi
