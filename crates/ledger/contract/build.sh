#!/usr/bin/env bash
# Compiles PanalLedger.sol with solc from the npm registry (solcjs, pinned)
# and writes the ABI and the deployment bytecode next to it. CI runs this and
# fails when the committed artefacts differ from what the source compiles to.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SOLC_VERSION=0.8.28
tools=${PANAL_SOLC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/panal-solc-$SOLC_VERSION}
if [ ! -x "$tools/node_modules/.bin/solcjs" ]; then
  mkdir -p "$tools"
  npm install --silent --prefix "$tools" "solc@$SOLC_VERSION" >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$here" && "$tools/node_modules/.bin/solcjs" --optimize --optimize-runs 200 --bin --abi \
  --output-dir "$out" PanalLedger.sol >/dev/null)
# solcjs names outputs after the source file and the contract.
python3 -m json.tool --indent 2 "$out/PanalLedger_sol_PanalLedger.abi" >"$here/PanalLedger.abi.json"
tr -d '\n' <"$out/PanalLedger_sol_PanalLedger.bin" >"$here/PanalLedger.bin"
echo "compiled PanalLedger.sol with solc $SOLC_VERSION"
