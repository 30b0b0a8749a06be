#!/bin/sh
# Start Redis with logkeep's ACL users, in every profile: writes the ACL file from the
# environment, then hands over to the official image's entrypoint (which drops root and
# runs redis-server), or runs the command itself outside the image (the tests).
#
#   default  off: no anonymous access
#   logkeep  LOGKEEP_REDIS_PASSWORD; keys and channels under REDIS_APP_KEY_PATTERN
#            (default logkeep:*, the default LOGKEEP_REDIS_KEY_PREFIX); every command but
#            the @dangerous ones (FLUSHALL, KEYS, CONFIG, DEBUG, SHUTDOWN, ACL...), plus
#            INFO, which `logkeep doctor` reads
#   admin    REDIS_ADMIN_PASSWORD; everything (operators, backups, the healthcheck)
#
# The file lives on a tmpfs in the container (REDIS_ACLFILE, /run/redis/users.acl, as
# the configuration's `aclfile` says); the passwords are never written to the data volume.
set -eu

acl_file="${REDIS_ACLFILE:-/run/redis/users.acl}"
pattern="${REDIS_APP_KEY_PATTERN:-logkeep:*}"

check_password() {
    # $1: variable name, $2: value. ACL files split on spaces; URLs need escaping for
    # anything but these characters.
    case "$2" in
        "") echo "$1 must be set (see .env.example)" >&2; exit 1 ;;
        *[!A-Za-z0-9._~-]*)
            echo "$1 may hold only letters, digits and . _ ~ - (it goes into a URL)" >&2
            exit 1 ;;
    esac
    if [ "${#2}" -lt 16 ]; then
        echo "$1 must be at least 16 characters (openssl rand -hex 24)" >&2
        exit 1
    fi
}
check_password LOGKEEP_REDIS_PASSWORD "${LOGKEEP_REDIS_PASSWORD:-}"
check_password REDIS_ADMIN_PASSWORD "${REDIS_ADMIN_PASSWORD:-}"

umask 077
mkdir -p "$(dirname "$acl_file")"
cat > "$acl_file" <<ACL
user default off
user logkeep on >$LOGKEEP_REDIS_PASSWORD ~$pattern resetchannels &$pattern +@all -@dangerous +info
user admin on >$REDIS_ADMIN_PASSWORD ~* &* +@all
ACL
if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
    # The image's entrypoint runs redis-server as the redis user.
    chown redis "$acl_file"
fi

if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    exec docker-entrypoint.sh "$@"
fi
exec "$@"
