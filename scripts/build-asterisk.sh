#!/usr/bin/env bash
# Build Asterisk 22 from its release source for the real-Asterisk tests (tests/asterisk/),
# once per machine: the build is cached outside the clone, keyed by the tarball's sha256.
#
#   scripts/build-asterisk.sh            build when missing (make asterisk; make test runs it)
#   scripts/build-asterisk.sh --prefix   print the installed prefix, or one line saying why
#                                        there is none (exit 3: no source, exit 4: not built)
#
# The source: $IVRS_ASTERISK_SOURCE, else ../shared/asterisk/asterisk-22.10.1.tar.xz beside
# the clone (the one place the project names ../shared). No source: one line, and the
# real-Asterisk suite reports itself skipped with that line.
set -euo pipefail

VERSION=22.10.1
SHA256=aa64bbbd413aed11e176bfdb323899b3bcbc7ce037702e2503ca10a397ca8a3f
clone=$(cd "$(dirname "$0")/.." && pwd)
source_tarball=${IVRS_ASTERISK_SOURCE:-$clone/../shared/asterisk/asterisk-$VERSION.tar.xz}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/road-cargo-ivrs
prefix=$cache/asterisk-${SHA256:0:16}

if [[ ! -f "$source_tarball" ]]; then
  echo "no Asterisk $VERSION source at $source_tarball (set IVRS_ASTERISK_SOURCE to the release tarball): real-Asterisk suite skipped"
  exit 3
fi
if [[ "${1:-}" == "--prefix" ]]; then
  if [[ -f "$prefix/.complete" ]]; then echo "$prefix"; exit 0; fi
  echo "Asterisk $VERSION is not built yet: run \`make asterisk\` (builds it into $prefix)"
  exit 4
fi
actual=$(sha256sum "$source_tarball" | cut -d' ' -f1)
if [[ "$actual" != "$SHA256" ]]; then
  echo "$source_tarball is not the Asterisk $VERSION release (sha256 $actual, expected $SHA256)" >&2
  exit 1
fi
[[ -f "$prefix/.complete" ]] && exit 0

# Modules the dialplan and the tests use (docs/deploying-on-asterisk.md lists why), plus every
# codec, format, function and bridge: the categories not listed here are disabled.
modules=(
  res_agi res_speech app_mixmonitor func_periodic_hook app_senddtmf app_playback app_read
  app_readexten pbx_config app_dial app_echo app_verbose app_stack app_exec app_chanspy
  app_originate app_sayunixtime app_system app_transfer app_record app_playtones app_db
  app_waituntil res_musiconhold res_timing_timerfd res_clioriginate res_stasis res_crypto
  res_curl func_curl res_sorcery_config res_sorcery_memory res_sorcery_astdb
)
disabled_categories=(
  MENUSELECT_ADDONS MENUSELECT_APPS MENUSELECT_CDR MENUSELECT_CEL MENUSELECT_CHANNELS
  MENUSELECT_PBX MENUSELECT_RES MENUSELECT_TESTS MENUSELECT_UTILS MENUSELECT_AGIS
  MENUSELECT_CORE_SOUNDS MENUSELECT_MOH MENUSELECT_EXTRA_SOUNDS
)

mkdir -p "$cache"
exec 9>"$cache/asterisk-build.lock"
flock 9  # another `make` building the same source: wait for it
[[ -f "$prefix/.complete" ]] && exit 0

echo "Building Asterisk $VERSION into $prefix (once per machine, a few minutes)"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/build.log
step() {  # run a build step quietly; on failure show its log's end
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "Asterisk build failed at: $* (log above)" >&2
    exit 1
  fi
}
tar -xJf "$source_tarball" -C "$work"
cd "$work/asterisk-$VERSION"
rm -rf "$prefix"
step ./configure --prefix="$prefix" --without-pjproject-bundled --without-pjproject
step make menuselect.makeopts
# Separate invocations: in one, the category disables win over the enables (NOTES).
for category in "${disabled_categories[@]}"; do
  step menuselect/menuselect --disable-category "$category" menuselect.makeopts
done
for module in "${modules[@]}"; do
  step menuselect/menuselect --enable "$module" menuselect.makeopts
done
step make -j"$(nproc)"
step make install
touch "$prefix/.complete"
echo "Asterisk $VERSION built: $prefix"
