#!/bin/sh
# Write .env for `docker compose` with a random value for every secret of .env.example.
# Refuses to overwrite an existing .env (it holds the passwords your volumes were made with).
set -eu
cd "$(dirname "$0")/.."
if [ -e .env ]; then
    echo ".env exists; remove it first if you really mean to replace its secrets" >&2
    exit 1
fi
umask 077
while IFS= read -r line; do
    case "$line" in
        [A-Z]*=) echo "${line}$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" ;;
        *) echo "$line" ;;
    esac
done < .env.example > .env
echo "wrote .env (mode 600); keep it out of version control"
