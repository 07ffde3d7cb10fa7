#!/usr/bin/env bash
# gen-docs.sh: writes the man page and the shell completions from haul's flag definitions,
# through the binary itself (haul man, haul completion SHELL):
#   docs/haul.1                  man -l docs/haul.1; install as /usr/share/man/man1/haul.1
#   docs/completions/haul.bash   bash: /etc/bash_completion.d/haul, or source it
#   docs/completions/_haul       zsh: a directory of $fpath
#   docs/completions/haul.fish   fish: ~/.config/fish/completions/haul.fish
#   docs/reference.md            its "Flags" code block: haul --help's options
# Run it after changing a flag; TestE2EDocsUpToDate and TestE2EReferenceFlagsUpToDate (cmd/haul)
# fail until the files match.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
tmp=$(mktemp -d "${TMPDIR:-/tmp}/haul-gen-docs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/haul" ./cmd/haul
mkdir -p docs/completions
"$tmp/haul" man > docs/haul.1
"$tmp/haul" completion bash > docs/completions/haul.bash
"$tmp/haul" completion zsh > docs/completions/_haul
"$tmp/haul" completion fish > docs/completions/haul.fish
"$tmp/haul" --help 2>&1 | sed '1,/^GLOBAL OPTIONS:$/d' > "$tmp/flags"
# the code block after "## Flags" is replaced, the rest of the file kept
awk -v flags="$tmp/flags" '
  st == 0 && /^## Flags$/ { st = 1 }
  st == 1 && /^```$/ { print; while ((getline l < flags) > 0) print l; st = 2; next }
  st == 2 { if (/^```$/) { print; st = 3 } next }
  { print }' docs/reference.md > "$tmp/reference.md"
cp "$tmp/reference.md" docs/reference.md
echo "wrote docs/haul.1 docs/completions/{haul.bash,_haul,haul.fish} and docs/reference.md's flag list"
