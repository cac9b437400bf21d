#!/usr/bin/env bash
# Install the peer frameworks into their own virtual environment, benchmarks/peers/.venv.
#
# The peers are not Rede dependencies: CrewAI pins pydantic<2.13 and openai<3, so they cannot
# share the project's environment. Versions are pinned so that runs are comparable.
# Usage: bash benchmarks/peers/setup.sh [python]   (default: python3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python3}"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
"$venv/bin/python" -m pip freeze > "$venv/freeze.txt"
echo "peers installed in $venv"
