#!/usr/bin/env bash
# Writes .env from .env.example with a fresh random secret in every empty *_PASSWORD/*_TOKEN/
# *_SECRET.
# Refuses to overwrite an existing .env (it holds the secrets the data volumes were set up with).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.env}"
if [ -e "$target" ]; then
  echo "make-env: $target already exists; not overwriting it (delete it first to start over)" >&2
  exit 1
fi

secret() {  # 48 hex characters = 192 random bits
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 24
  else
    python3 -c 'import secrets; print(secrets.token_hex(24))'
  fi
}

umask 077
tmp="$(mktemp "$target.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
filled=0
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    [A-Z]*_PASSWORD= | [A-Z]*_TOKEN= | [A-Z]*_SECRET=)
      line="$line$(secret)"
      filled=$((filled + 1))
      ;;
  esac
  printf '%s\n' "$line"
done < .env.example > "$tmp"
mv "$tmp" "$target"
trap - EXIT
echo "make-env: wrote $target with $filled random secrets (mode 600); keep it out of git"
