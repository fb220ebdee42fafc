#!/usr/bin/env bash
# Regenerate the committed gRPC stubs from python/agentdb/server/agentdb.proto (shipped in the
# wheel, so clients in other languages can be generated from an installed package):
#   python/agentdb/server/agentdb_pb2.py       (messages)
#   python/agentdb/server/agentdb_pb2_grpc.py  (service stub/servicer; import made relative)
#
# Usage: bash scripts/generate_proto.sh        (from anywhere; needs python3 and access to PyPI once)
#
# The generator is pinned to grpcio-tools 1.62.3 (protoc 25.1) ON PURPOSE, in a throwaway
# venv: generated code must not be newer than the oldest runtime the 'server' extra allows
# (protobuf>=4.25, grpcio>=1.60). Newer grpcio-tools emit version guards that raise at import
# time on an older runtime (e.g. 1.85 requires protobuf>=7.35.1 and grpcio>=1.85.1), while
# protoc 25.1 output has no guard and loads on protobuf 4.25 through 7.x.
# The exact command it runs:
#   python -m grpc_tools.protoc -I python/agentdb/server --python_out=python/agentdb/server \
#       --grpc_python_out=python/agentdb/server python/agentdb/server/agentdb.proto
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_VERSION=1.62.3
VENV=${AGENTDB_PROTOC_VENV:-${TMPDIR:-/tmp}/agentdb-protoc-venv}
PY=${PYTHON:-python3}
OUT=python/agentdb/server

if ! "$VENV/bin/python" - "$TOOLS_VERSION" 2>/dev/null <<'PYEOF'
import sys
from importlib.metadata import version
sys.exit(version("grpcio-tools") != sys.argv[1])
PYEOF
then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet "grpcio-tools==$TOOLS_VERSION"
fi

"$VENV/bin/python" -m grpc_tools.protoc -I "$OUT" --python_out="$OUT" \
    --grpc_python_out="$OUT" "$OUT/agentdb.proto"

# protoc writes a top-level `import agentdb_pb2`; inside the package it must be relative.
"$VENV/bin/python" - "$OUT/agentdb_pb2_grpc.py" <<'PYEOF'
import re
import sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
fixed, n = re.subn(r"^import agentdb_pb2 as agentdb__pb2$",
                   "from . import agentdb_pb2 as agentdb__pb2", text, flags=re.M)
if n != 1:
    sys.exit(f"{path}: expected one 'import agentdb_pb2' line to make relative, found {n}")
open(path, "w", encoding="utf-8").write(fixed)
PYEOF
echo "regenerated $OUT/agentdb_pb2.py and $OUT/agentdb_pb2_grpc.py (grpcio-tools $TOOLS_VERSION)"
