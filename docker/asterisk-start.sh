#!/bin/sh
# Starts Asterisk in the compose deployment (docker/compose.yaml, service asterisk).
# The AMI user's secret comes from the environment (docker/.env), never from a file
# in the repository: manager.conf includes manager_ivrs_secret.conf, written here.
# extensions.conf reads IVRS_API_TOKEN itself, with ${ENV(IVRS_API_TOKEN)}.
set -eu

: "${IVRS_API_TOKEN:?IVRS_API_TOKEN is not set (docker/.env)}"
: "${IVRS_AMI_SECRET:?IVRS_AMI_SECRET is not set (docker/.env)}"

umask 077
printf 'secret = %s\n' "$IVRS_AMI_SECRET" > /etc/asterisk/manager_ivrs_secret.conf

# Foreground (-f), timestamps (-T), verbose 3: the dialplan never passes the API
# token as an application argument, so verbose logs do not carry it.
exec /usr/sbin/asterisk -f -T -vvv
